package telemetry

import (
	"context"
	"os"
	"strings"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
)

const (
	serviceName      = "volspike-server"
	defaultRootRatio = 0.01
)

// otlpConfigured: export only when an endpoint (or the otlp exporter) is asked for, so a
// server without a collector does not log connection errors forever.
func otlpConfigured() bool {
	return os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" ||
		os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "" ||
		strings.EqualFold(os.Getenv("OTEL_TRACES_EXPORTER"), "otlp")
}

// NewTracerProvider reads the standard OTEL_* variables. Unless OTEL_TRACES_SAMPLER is
// set, a caller's sampled trace is always continued and 1 % of root calls start one.
func NewTracerProvider(ctx context.Context) (*sdktrace.TracerProvider, error) {
	name := os.Getenv("OTEL_SERVICE_NAME")
	if name == "" {
		name = serviceName
	}
	opts := []sdktrace.TracerProviderOption{
		sdktrace.WithResource(resource.NewSchemaless(semconv.ServiceName(name))),
	}
	if os.Getenv("OTEL_TRACES_SAMPLER") == "" {
		opts = append(opts, sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(defaultRootRatio))))
	} // else the SDK reads OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG
	if otlpConfigured() {
		exp, err := otlptracegrpc.New(ctx) // endpoint, insecure, headers, timeout from OTEL_*
		if err != nil {
			return nil, err
		}
		opts = append(opts, sdktrace.WithBatcher(exp))
	}
	return sdktrace.NewTracerProvider(opts...), nil
}
