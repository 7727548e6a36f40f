// volspike-server: the native front end of the volatility-spike service. Same
// contract, flags, metrics and model config as `python -m server`; one process uses
// every core.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/propagation"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/stats"
	"google.golang.org/protobuf/proto"

	v2 "volspike/server/native/gen/inferencepb"
	pb "volspike/server/native/gen/volatilitypb"
)

// Settings: defaults < VOLSPIKE_* environment < command line, as in server/config.py.
type Settings struct {
	Host            string
	Port            int
	MetricsPort     int
	ModelsDir       string
	ModelConfig     string
	MaxRows         int
	MaxMessageBytes int
	ReloadPoll      time.Duration
	Grace           time.Duration
	PidFile         string
	Pprof           bool
}

func loadSettings() Settings {
	env := func(name, def string) string {
		if v, ok := os.LookupEnv("VOLSPIKE_" + name); ok {
			return v
		}
		return def
	}
	num := func(name string, def int) int {
		v, err := strconv.Atoi(env(name, strconv.Itoa(def)))
		if err != nil {
			fmt.Fprintf(os.Stderr, "VOLSPIKE_%s: %v\n", name, err)
			os.Exit(2)
		}
		return v
	}
	secs := func(name string, def float64) float64 {
		v, err := strconv.ParseFloat(env(name, strconv.FormatFloat(def, 'f', -1, 64)), 64)
		if err != nil {
			fmt.Fprintf(os.Stderr, "VOLSPIKE_%s: %v\n", name, err)
			os.Exit(2)
		}
		return v
	}
	var s Settings
	flag.StringVar(&s.Host, "host", env("HOST", "127.0.0.1"), "address the gRPC server binds")
	flag.IntVar(&s.Port, "port", num("PORT", 50051), "gRPC port")
	flag.IntVar(&s.MetricsPort, "metrics-port", num("METRICS_PORT", 8000), "Prometheus /metrics port")
	flag.StringVar(&s.ModelsDir, "models-dir", env("MODELS_DIR", "compiled_models"), "folder of compiled artifacts")
	flag.StringVar(&s.ModelConfig, "model-config", env("MODEL_CONFIG", "config/model.toml"), "TOML file naming the active artifact; watched")
	flag.IntVar(&s.MaxRows, "max-rows", num("MAX_ROWS", 100_000), "most rows per call")
	flag.IntVar(&s.MaxMessageBytes, "max-message-bytes", num("MAX_MESSAGE_BYTES", 64*1024*1024), "largest request accepted")
	poll := flag.Float64("reload-poll-seconds", secs("RELOAD_POLL_SECONDS", 1.0), "model config mtime check interval")
	grace := flag.Float64("grace-seconds", secs("GRACE_SECONDS", 10.0), "on SIGTERM, time for in-flight calls")
	flag.StringVar(&s.PidFile, "pid-file", env("PID_FILE", ""), "where to write the PID (for make rollback)")
	flag.BoolVar(&s.Pprof, "pprof", false, "serve Go profiles on the metrics port (/debug/pprof/)")
	flag.Parse()
	s.ReloadPoll = time.Duration(*poll * float64(time.Second))
	s.Grace = time.Duration(*grace * float64(time.Second))
	return s
}

// desc builds a service from unary methods; Metadata names the .proto for reflection.
func desc(name, file string, methods ...grpc.MethodDesc) *grpc.ServiceDesc {
	return &grpc.ServiceDesc{ServiceName: name, HandlerType: (*any)(nil), Methods: methods, Metadata: file}
}

func newReq[T any, P interface {
	*T
	proto.Message
}]() P {
	return P(new(T))
}

func main() {
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, nil)))
	s := loadSettings()
	if err := run(s); err != nil {
		slog.Error("server failed", "error", err)
		os.Exit(1)
	}
}

func run(s Settings) error {
	ctx := context.Background()
	if s.PidFile != "" {
		if err := os.MkdirAll(filepath.Dir(s.PidFile), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(s.PidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
			return err
		}
	}
	reg := prometheus.NewRegistry()
	metrics := NewMetrics(reg)
	tp, err := NewTracerProvider(ctx)
	if err != nil {
		return err
	}
	defer tp.Shutdown(context.Background())
	registry := NewRegistry(s.ModelsDir, metrics)
	svc := &Service{
		Wrapper:  &Wrapper{metrics: metrics, tracer: tp.Tracer("volspike.server"), prop: propagation.TraceContext{}},
		registry: registry,
		maxRows:  s.MaxRows,
	}
	predictorName, kserveName := "volatility.v1.Predictor", "inference.GRPCInferenceService"
	w := svc.Wrapper
	calls := &unaryCalls{}
	server := grpc.NewServer(
		grpc.StatsHandler(calls),
		// Reused handler goroutines keep their grown stacks: a fresh goroutine per call
		// spent ~10 % of a one-row call growing its stack (pprof).
		grpc.NumStreamWorkers(uint32(4*runtime.GOMAXPROCS(0))),
		grpc.ForceServerCodecV2(rawCodec{proto: encoding.GetCodecV2("proto")}),
		grpc.MaxRecvMsgSize(s.MaxMessageBytes),
		grpc.MaxSendMsgSize(s.MaxMessageBytes),
	)
	server.RegisterService(desc(predictorName, "proto/volatility/v1/predictor.proto",
		unary(w, predictorName, "Predict", newReq[pb.PredictRequest], svc.Predict),
		unary(w, predictorName, "ModelInfo", newReq[pb.ModelInfoRequest], svc.ModelInfo),
	), svc)
	server.RegisterService(desc(kserveName, "proto/inference/grpc_predict_v2.proto",
		unary(w, kserveName, "ServerLive", newReq[v2.ServerLiveRequest], svc.ServerLive),
		unary(w, kserveName, "ServerReady", newReq[v2.ServerReadyRequest], svc.ServerReady),
		unary(w, kserveName, "ModelReady", newReq[v2.ModelReadyRequest], svc.ModelReady),
		unary(w, kserveName, "ServerMetadata", newReq[v2.ServerMetadataRequest], svc.ServerMetadata),
		unary(w, kserveName, "ModelMetadata", newReq[v2.ModelMetadataRequest], svc.ModelMetadata),
		unary(w, kserveName, "ModelInfer", newReq[v2.ModelInferRequest], svc.ModelInfer),
	), svc)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(server, hs)
	reflection.Register(server)
	setServing := func(on bool) {
		st := healthpb.HealthCheckResponse_NOT_SERVING
		if on {
			st = healthpb.HealthCheckResponse_SERVING
		}
		for _, name := range []string{"", predictorName, kserveName} {
			hs.SetServingStatus(name, st)
		}
		metrics.serving.Set(map[bool]float64{true: 1, false: 0}[on])
	}
	setServing(false)

	lis, err := net.Listen("tcp", net.JoinHostPort(s.Host, strconv.Itoa(s.Port)))
	if err != nil {
		return fmt.Errorf("could not bind %s:%d: %w", s.Host, s.Port, err)
	}
	mlis, err := net.Listen("tcp", net.JoinHostPort(s.Host, strconv.Itoa(s.MetricsPort)))
	if err != nil {
		return fmt.Errorf("could not bind metrics port %d: %w", s.MetricsPort, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{EnableOpenMetrics: true}))
	if s.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	}
	go http.Serve(mlis, mux)
	served := make(chan error, 1)
	go func() { served <- server.Serve(lis) }()
	slog.Info("listening", "grpc", lis.Addr().String(), "metrics", mlis.Addr().String())

	loadConfigured := func() {
		name, err := ActiveArtifact(s.ModelConfig)
		if err != nil {
			slog.Error("model switch failed", "config", s.ModelConfig, "error", err)
			return
		}
		if active := registry.active.Load(); active != nil && active.Name == name {
			return
		}
		if err := registry.Activate(name); err != nil {
			slog.Error("model switch failed; the previous model keeps serving", "artifact", name, "error", err)
			return
		}
		setServing(true)
	}
	loadConfigured()
	if registry.active.Load() == nil {
		slog.Error("no model could be loaded; serving health NOT_SERVING")
	}

	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	ticker := time.NewTicker(s.ReloadPoll)
	defer ticker.Stop()
	lastMtime := mtime(s.ModelConfig)
	for {
		select {
		case err := <-served:
			return err
		case sig := <-signals:
			if sig == syscall.SIGHUP {
				lastMtime = mtime(s.ModelConfig)
				loadConfigured()
				continue
			}
			return drain(server, hs, metrics, calls, s.Grace, served)
		case <-ticker.C:
			if m := mtime(s.ModelConfig); m != lastMtime {
				lastMtime = m
				loadConfigured()
			}
		}
	}
}

// drain: NOT_SERVING, no new calls, in-flight calls finish within the grace period.
func drain(server *grpc.Server, hs *health.Server, metrics *Metrics, calls *unaryCalls, grace time.Duration, served chan error) error {
	slog.Info("draining: NOT_SERVING, no new calls", "grace", grace)
	hs.Shutdown()
	metrics.serving.Set(0)
	done := make(chan struct{})
	go func() { server.GracefulStop(); close(done) }()
	deadline := time.After(grace)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
wait:
	for {
		select {
		case <-done:
			break wait
		case <-tick.C:
			if calls.n.Load() == 0 { // only long-lived streams (health Watch) remain
				server.Stop()
			}
		case <-deadline:
			slog.Warn("grace period over; cancelling the remaining calls")
			server.Stop()
		}
	}
	if err := <-served; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return err
	}
	slog.Info("stopped")
	return nil
}

func mtime(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return -1
	}
	return st.ModTime().UnixNano()
}

// unaryCalls counts the calls of our services from the moment the transport sees them,
// so a drain knows when only long-lived streams (health Watch, reflection) are left.
type unaryCalls struct{ n atomic.Int64 }

type countedKey struct{}

func (u *unaryCalls) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	if strings.HasPrefix(info.FullMethodName, "/volatility.") || strings.HasPrefix(info.FullMethodName, "/inference.") {
		return context.WithValue(ctx, countedKey{}, true)
	}
	return ctx
}

func (u *unaryCalls) HandleRPC(ctx context.Context, s stats.RPCStats) {
	if ctx.Value(countedKey{}) == nil {
		return
	}
	switch s.(type) {
	case *stats.Begin:
		u.n.Add(1)
	case *stats.End:
		u.n.Add(-1)
	}
}

func (u *unaryCalls) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (u *unaryCalls) HandleConn(context.Context, stats.ConnStats)                       {}
