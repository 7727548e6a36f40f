package main

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	grpccodes "google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	v2 "volspike/server/native/gen/inferencepb"
	pb "volspike/server/native/gen/volatilitypb"
	"volspike/server/native/internal/config"
	"volspike/server/native/internal/contract"
	"volspike/server/native/internal/rpc"
)

// startApp serves the real server (no model: NOT_SERVING, Predict answers NoModel) on
// loopback ports with extra server options, and a client connected to it.
func startApp(t *testing.T, opts ...grpc.ServerOption) (*App, *grpc.ClientConn) {
	t.Helper()
	captureLogs(t)
	dir := t.TempDir()
	s := config.Settings{Host: "127.0.0.1", ModelsDir: dir, ModelConfig: filepath.Join(dir, "model.toml"),
		MaxRows: 100, MaxMessageBytes: 1 << 20, Grace: time.Second}
	app, err := NewApp(s, noop.NewTracerProvider().Tracer("t"), opts...)
	if err != nil {
		t.Fatal(err)
	}
	app.Start()
	conn, err := grpc.NewClient(app.lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(); app.server.Stop(); app.mlis.Close() })
	return app, conn
}

func invoke(conn *grpc.ClientConn, method string, req, resp proto.Message) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return conn.Invoke(ctx, method, req, resp)
}

// An interceptor added with grpc.ChainUnaryInterceptor runs for every method of both our
// services, sees the decoded request, and runs inside ours (the call is already recorded).
// Mutation (seen failing): make unary's MethodDesc handler ignore its interceptor argument,
// as the hand-built handlers did, and nothing is seen (and nothing counted).
func TestAnAddedInterceptorRunsForBothServices(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]string{} // full method -> request type, for calls inside ours
	added := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
		if rpc.CallOf(ctx) != nil { // health checks pass through too, outside our services
			mu.Lock()
			seen[info.FullMethod] = string(req.(proto.Message).ProtoReflect().Descriptor().FullName())
			mu.Unlock()
		}
		return next(ctx, req)
	}
	app, conn := startApp(t, grpc.ChainUnaryInterceptor(added))

	err := invoke(conn, "/volatility.v1.Predictor/Predict", &pb.PredictRequest{Packed: &pb.PackedRows{NumFeatures: 1}}, &pb.PredictResponse{})
	if status.Code(err) != grpccodes.Unavailable {
		t.Errorf("Predict with no model: %v", err)
	}
	if err := invoke(conn, "/inference.GRPCInferenceService/ServerLive", &v2.ServerLiveRequest{}, &v2.ServerLiveResponse{}); err != nil {
		t.Fatalf("ServerLive: %v", err)
	}
	err = invoke(conn, "/inference.GRPCInferenceService/ModelInfer", &v2.ModelInferRequest{ModelName: "x"}, &v2.ModelInferResponse{})
	if status.Code(err) == grpccodes.OK {
		t.Error("ModelInfer with no model answered OK")
	}
	want := map[string]string{
		"/volatility.v1.Predictor/Predict":           "volatility.v1.PredictRequest",
		"/inference.GRPCInferenceService/ServerLive": "inference.ServerLiveRequest",
		"/inference.GRPCInferenceService/ModelInfer": "inference.ModelInferRequest",
	}
	mu.Lock()
	defer mu.Unlock()
	for m, typ := range want {
		if seen[m] != typ {
			t.Errorf("%s: the added interceptor saw %q, want %q (all seen: %v)", m, seen[m], typ, seen)
		}
	}
	// ours ran around it: each call counted once, by its own code
	for _, c := range []struct{ method, code string }{{"Predict", "UNAVAILABLE"}, {"ServerLive", "OK"}} {
		if n := counter(t, app.reg, contract.MetricRpcRequests, c.method, c.code); n != 1 {
			t.Errorf("%s %s counted %v times", c.method, c.code, n)
		}
	}
}

// errorInfo is the google.rpc.ErrorInfo in a status's details, or nil.
func errorInfo(err error) *errdetails.ErrorInfo {
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info
		}
	}
	return nil
}

// A failed call carries its kind as a google.rpc.ErrorInfo, through a real server; so does
// an error an added interceptor returns, and a panic's INTERNAL. Mutation (seen failing):
// return status.Error(code, msg) in mapErrors and every reason is missing.
func TestAFailedCallCarriesItsKindAsErrorInfo(t *testing.T) {
	rejectInfo := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
		switch info.FullMethod {
		case "/inference.GRPCInferenceService/ServerMetadata":
			return nil, contract.ErrNotServed("m", "[]")
		case "/inference.GRPCInferenceService/ServerReady":
			panic("boom")
		}
		return next(ctx, req)
	}
	_, conn := startApp(t, grpc.ChainUnaryInterceptor(rejectInfo))
	cases := []struct {
		method    string
		req, resp proto.Message
		code      grpccodes.Code
		kind      string
	}{
		{"/volatility.v1.Predictor/Predict", &pb.PredictRequest{}, &pb.PredictResponse{}, grpccodes.Unavailable, "NoModel"},
		{"/volatility.v1.Predictor/ModelInfo", &pb.ModelInfoRequest{Model: "nope"}, &pb.ModelInfoResponse{}, grpccodes.NotFound, "NotFound"},
		{"/inference.GRPCInferenceService/ServerMetadata", &v2.ServerMetadataRequest{}, &v2.ServerMetadataResponse{}, grpccodes.NotFound, "NotFound"},
		{"/inference.GRPCInferenceService/ServerReady", &v2.ServerReadyRequest{}, &v2.ServerReadyResponse{}, grpccodes.Internal, "Internal"},
	}
	for _, c := range cases {
		err := invoke(conn, c.method, c.req, c.resp)
		info := errorInfo(err)
		if status.Code(err) != c.code || info == nil || info.Reason != c.kind || info.Domain != "volspike" || len(info.Metadata) != 0 {
			t.Errorf("%s: got %v, ErrorInfo %v; want %v with reason %s", c.method, err, info, c.code, c.kind)
		}
	}
}

// captureLogs sends slog's default logger to a buffer for the test.
func captureLogs(t *testing.T) *bytes.Buffer {
	var buf bytes.Buffer
	saved := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&buf, nil)))
	t.Cleanup(func() { slog.SetDefault(saved) })
	return &buf
}

// counter reads the series of a counter family with these label values (in the family's
// label order) from reg; 0 when there is none.
func counter(t *testing.T, reg prometheus.Gatherer, family contract.MetricSpec, values ...string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != family.Name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for i, name := range family.Labels {
				if labels[name] != values[i] {
					continue series
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}
