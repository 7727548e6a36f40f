package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	"volspike/server/native/internal/config"
	"volspike/server/native/internal/contract"
	"volspike/server/native/internal/kserve"
	"volspike/server/native/internal/predict"
	"volspike/server/native/internal/registry"
	"volspike/server/native/internal/rpc"
	"volspike/server/native/internal/telemetry"
)

// App is the server built and bound, not yet serving: construction apart from running.
type App struct {
	settings config.Settings
	server   *grpc.Server
	health   *health.Server
	metrics  *telemetry.Metrics
	reg      *prometheus.Registry // what /metrics serves
	registry *registry.Registry
	draining chan struct{}
	lis      net.Listener
	mlis     net.Listener
	mux      *http.ServeMux
}

// NewApp registers every service and binds both ports. Health starts NOT_SERVING until
// a model is warm.
//
// Every call of our two services goes through the server's unary interceptor chain: ours
// (metrics, tracing, error mapping, deadlines: internal/rpc/interceptors.go) first, then any passed in
// opts with grpc.ChainUnaryInterceptor (or grpc.UnaryInterceptor, which grpc-go puts before ours).
func NewApp(s config.Settings, tracer trace.Tracer, opts ...grpc.ServerOption) (*App, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})) // CPU, memory, fds
	metrics := telemetry.NewMetrics(reg)
	a := &App{settings: s, metrics: metrics, reg: reg, registry: registry.NewRegistry(s.ModelsDir, metrics), draining: make(chan struct{})}
	w := rpc.NewWrapper(metrics, tracer)
	predictor := predict.New(w, metrics, a.registry, s.MaxRows)
	inference := kserve.New(predictor, a.registry, s.MaxRows)
	a.server = grpc.NewServer(append([]grpc.ServerOption{
		// Reused handler goroutines keep their grown stacks: a fresh goroutine per call
		// spent ~10 % of a one-row call growing its stack (pprof).
		grpc.NumStreamWorkers(uint32(4 * runtime.GOMAXPROCS(0))),
		grpc.ForceServerCodecV2(rpc.Codec()),
		grpc.MaxRecvMsgSize(s.MaxMessageBytes),
		grpc.MaxSendMsgSize(s.MaxMessageBytes),
		grpc.ChainUnaryInterceptor(w.Interceptors()...),
		// replicas: clients reconnect (and re-balance) at least this often; calls on the
		// old connection finish within the drain grace
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionAge: s.MaxConnAge, MaxConnectionAgeGrace: s.Grace}),
	}, opts...)...)
	// rpc/services_gen.go: a method in the .proto without a Go handler does not compile
	a.server.RegisterService(desc(rpc.PredictorName, "proto/volatility/v1/predictor.proto",
		w.Track(rpc.PredictorMethods(predictor))...), predictor)
	a.server.RegisterService(desc(rpc.KserveName, "proto/inference/grpc_predict_v2.proto",
		w.Track(rpc.KserveMethods(inference))...), inference)
	a.health = health.NewServer()
	healthpb.RegisterHealthServer(a.server, &drainableHealth{Server: a.health, draining: a.draining})
	reflection.Register(a.server)
	a.SetServing(false)

	var err error
	if a.lis, err = net.Listen("tcp", net.JoinHostPort(s.Host, strconv.Itoa(s.Port))); err != nil {
		return nil, fmt.Errorf("could not bind %s:%d: %w", s.Host, s.Port, err)
	}
	if a.mlis, err = net.Listen("tcp", net.JoinHostPort(s.Host, strconv.Itoa(s.MetricsPort))); err != nil {
		a.lis.Close()
		return nil, fmt.Errorf("could not bind metrics port %d: %w", s.MetricsPort, err)
	}
	a.mux = http.NewServeMux()
	a.mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{EnableOpenMetrics: true}))
	if s.Pprof {
		a.mux.HandleFunc("/debug/pprof/", pprof.Index)
		a.mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	}
	return a, nil
}

// desc builds a service from unary methods; Metadata names the .proto for reflection.
func desc(name, file string, methods ...grpc.MethodDesc) *grpc.ServiceDesc {
	return &grpc.ServiceDesc{ServiceName: name, HandlerType: (*any)(nil), Methods: methods, Metadata: file}
}

// Start serves gRPC and metrics in the background; the channel reports Serve's end.
func (a *App) Start() chan error {
	go http.Serve(a.mlis, a.mux)
	served := make(chan error, 1)
	go func() { served <- a.server.Serve(a.lis) }()
	slog.Info("listening", "grpc", a.lis.Addr().String(), "metrics", a.mlis.Addr().String())
	return served
}

func (a *App) SetServing(on bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if on {
		st = healthpb.HealthCheckResponse_SERVING
	}
	for _, name := range []string{"", rpc.PredictorName, rpc.KserveName} {
		a.health.SetServingStatus(name, st)
	}
	a.metrics.SetServing(on)
}

// LoadConfigured activates the artifact the model config names; on failure whatever was
// serving keeps serving. Runs off the request goroutines.
func (a *App) LoadConfigured() {
	cfg, err := config.ReadModelConfig(a.settings.ModelConfig)
	if err != nil { // half-written or wrong: counted like a failed load
		a.metrics.RecordReload(contract.ResultFailed)
		slog.Error("model config is unreadable", "config", a.settings.ModelConfig, "error", err)
		return
	}
	a.registry.SetModelName(cfg.ModelName)
	if err := a.registry.Configure(cfg.Artifact, cfg.Servable, cfg.DecisionThreshold); err != nil {
		slog.Error("model switch failed; the previous model keeps serving", "artifact", cfg.Artifact, "error", err)
	}
	if a.registry.Active() != nil {
		a.SetServing(true)
	}
}

// Drain: NOT_SERVING, no new calls, in-flight calls finish (their answers fully sent)
// within the grace period; then whatever is left is cancelled.
func (a *App) Drain(served chan error) error {
	grace := a.settings.Grace
	slog.Info("draining: NOT_SERVING, no new calls", "grace", grace)
	a.health.Shutdown()
	close(a.draining) // health Watch streams end once they have said NOT_SERVING
	a.metrics.SetServing(false)
	done := make(chan struct{})
	go func() { a.server.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		slog.Warn("grace period over; cancelling the remaining calls")
		a.server.Stop()
	}
	if err := <-served; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return err
	}
	slog.Info("stopped")
	return nil
}
