package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	grpccodes "google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// ServiceError carries the gRPC status of a failed call; the wrapper maps it once.
type ServiceError struct {
	Code grpccodes.Code
	Kind string // error type label, e.g. InvalidArgument
	Msg  string
}

func (e *ServiceError) Error() string { return e.Msg }

// rawRequest receives a request's bytes undecoded, so a malformed request becomes
// INVALID_ARGUMENT naming the message type instead of grpc-go's generic INTERNAL.
type rawRequest struct{ data []byte }

// rawCodec passes rawRequest through and delegates everything else to protobuf.
type rawCodec struct{ proto encoding.CodecV2 }

func (c rawCodec) Marshal(v any) (mem.BufferSlice, error) { return c.proto.Marshal(v) }
func (c rawCodec) Name() string                           { return "proto" }
func (c rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if r, ok := v.(*rawRequest); ok {
		r.data = data.Materialize()
		return nil
	}
	return c.proto.Unmarshal(data, v)
}

// Call is what a handler tells the wrapper about the call it served.
type Call struct {
	Span     trace.Span
	Artifact string
	Rows     int
}

// Handler serves one decoded request.
type Handler[Req proto.Message] func(ctx context.Context, call *Call, req Req) (proto.Message, error)

// Wrapper: the one place every RPC goes through - server span continuing the caller's
// W3C trace context, error mapping, and the per-call metrics with a trace-id exemplar.
// Only our own services are wrapped, so health checks never produce spans.
type Wrapper struct {
	metrics *Metrics
	tracer  trace.Tracer
	prop    propagation.TextMapPropagator
}

func unary[Req proto.Message](w *Wrapper, service, method string, newReq func() Req, h Handler[Req]) grpc.MethodDesc {
	full := "/" + service + "/" + method
	typeName := string(newReq().ProtoReflect().Descriptor().FullName())
	inFlight := w.metrics.inFlight.WithLabelValues(method)
	attrs := trace.WithAttributes(attribute.String("rpc.system", "grpc"), attribute.String("rpc.method", method))
	return grpc.MethodDesc{
		MethodName: method,
		Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			t0 := time.Now()
			inFlight.Inc()
			defer inFlight.Dec()
			if tp := metadata.ValueFromIncomingContext(ctx, "traceparent"); len(tp) > 0 {
				ctx = w.prop.Extract(ctx, traceHeaders{tp[0], metadata.ValueFromIncomingContext(ctx, "tracestate")})
			}
			ctx, span := w.tracer.Start(ctx, full, trace.WithSpanKind(trace.SpanKindServer), attrs)
			defer span.End()
			call := &Call{Span: span}
			resp, err := serve(ctx, call, dec, typeName, newReq, h, full)
			return resp, w.finish(method, call, err, time.Since(t0).Seconds())
		},
	}
}

// serve decodes the request bytes, checks the call is still wanted and runs the handler.
func serve[Req proto.Message](ctx context.Context, call *Call, dec func(any) error, typeName string,
	newReq func() Req, h Handler[Req], full string) (resp proto.Message, err error) {
	defer func() { // a bug must cost one call (INTERNAL), never the server
		if p := recover(); p != nil {
			slog.Error("call panicked", "method", full, "panic", p, "stack", string(debug.Stack()))
			resp, err = nil, fmt.Errorf("panic: %v", p)
		}
	}()
	var raw rawRequest
	if err := dec(&raw); err != nil {
		return nil, err
	}
	req := newReq()
	if err := proto.Unmarshal(raw.data, req); err != nil {
		return nil, errMalformed(typeName, err.Error())
	}
	if ctx.Err() != nil {
		if pastDeadline(ctx) {
			return nil, errDeadlineBefore()
		}
		return nil, errCancelledBefore()
	}
	return h(ctx, call, req)
}

// pastDeadline: the call's deadline has passed. A client whose deadline expires also resets
// the stream, so ctx.Err() may say Canceled first; the deadline decides, as in Python
// (server/predictor.py checks the time remaining before the call's activity).
func pastDeadline(ctx context.Context) bool {
	d, ok := ctx.Deadline()
	return ok && !time.Now().Before(d)
}

// finish maps the handler's error to a gRPC status and records the call: span attributes,
// error and request counters, rows, and the latency with a trace-id exemplar when sampled.
func (w *Wrapper) finish(method string, call *Call, err error, elapsed float64) error {
	span, code := call.Span, grpccodes.OK
	if err != nil {
		var se *ServiceError
		if !errors.As(err, &se) {
			// A grpc-go status or a bug: logged, answered INTERNAL as the Python server does.
			slog.Error("call failed", "method", method, "error", err)
			se = errInternal().(*ServiceError)
		}
		code = se.Code
		w.metrics.errors.WithLabelValues(method, codeName(code), se.Kind).Inc()
		span.SetStatus(codes.Error, se.Msg)
		span.SetAttributes(attribute.String("error.type", se.Kind))
		err = status.Error(se.Code, se.Msg)
	}
	span.SetAttributes(attribute.Int("rpc.grpc.status_code", int(code)))
	if call.Artifact != "" {
		span.SetAttributes(attribute.String("volspike.artifact", call.Artifact))
	}
	if call.Rows > 0 {
		span.SetAttributes(attribute.Int("volspike.rows", call.Rows))
		w.metrics.rows.WithLabelValues(method).Observe(float64(call.Rows))
	}
	obs := w.metrics.latency.WithLabelValues(method, call.Artifact, codeName(code))
	if sc := span.SpanContext(); sc.IsSampled() {
		obs.(prometheus.ExemplarObserver).ObserveWithExemplar(elapsed, prometheus.Labels{"trace_id": sc.TraceID().String()})
	} else {
		obs.Observe(elapsed)
	}
	w.metrics.requests.WithLabelValues(method, codeName(code)).Inc()
	return err
}

// codeNames spell codes as Python's grpc.StatusCode names do (OK, INVALID_ARGUMENT).
var codeNames = func() [17]string {
	var names [17]string
	for c := range names {
		s := grpccodes.Code(c).String()
		var b strings.Builder
		for i, r := range s {
			if i > 0 && r >= 'A' && r <= 'Z' && s != "OK" {
				b.WriteByte('_')
			}
			b.WriteRune(r)
		}
		names[c] = strings.ToUpper(b.String())
	}
	names[grpccodes.Canceled] = "CANCELLED" // grpc-go spells it Canceled
	return names
}()

func codeName(c grpccodes.Code) string {
	if int(c) < len(codeNames) {
		return codeNames[c]
	}
	return c.String()
}

// childSpan starts a child of the call's span only when the call is sampled: unrecorded
// spans would cost more than the tree evaluation of one row.
func (w *Wrapper) childSpan(ctx context.Context, call *Call, name string, kv ...attribute.KeyValue) (end func()) {
	if !call.Span.IsRecording() {
		return func() {}
	}
	_, span := w.tracer.Start(ctx, name, trace.WithAttributes(kv...))
	return func() { span.End() }
}

// traceHeaders carries the W3C headers of one call. Reading just these two instead of
// copying the whole metadata map (metadata.FromIncomingContext) was 20 % of a one-row call
// when first profiled; re-measured with today's grpc-go it is within noise (docs/benchmarks.md).
type traceHeaders struct {
	parent string
	state  []string
}

func (h traceHeaders) Get(key string) string {
	switch key {
	case "traceparent":
		return h.parent
	case "tracestate":
		if len(h.state) > 0 {
			return h.state[0]
		}
	}
	return ""
}
func (h traceHeaders) Set(string, string) {}
func (h traceHeaders) Keys() []string     { return []string{"traceparent", "tracestate"} }
