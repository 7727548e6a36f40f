package rpc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc"
	grpccodes "google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "volspike/server/native/gen/volatilitypb"
	"volspike/server/native/internal/contract"
	"volspike/server/native/internal/telemetry"
)

func testWrapper() *Wrapper {
	w, _ := testWrapperOn()
	return w
}

// testWrapperOn: a wrapper and the registry its metrics are registered on.
func testWrapperOn() (*Wrapper, *prometheus.Registry) {
	reg := prometheus.NewRegistry()
	return NewWrapper(telemetry.NewMetrics(reg), noop.NewTracerProvider().Tracer("t")), reg
}

// chain composes interceptors as grpc.ChainUnaryInterceptor does (grpc-go's
// chainUnaryInterceptors, one closure per level), the first outermost.
func chain(ics []grpc.UnaryServerInterceptor) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		return ics[0](ctx, req, info, chained(ics, 0, info, h))
	}
}

func chained(ics []grpc.UnaryServerInterceptor, curr int, info *grpc.UnaryServerInfo, final grpc.UnaryHandler) grpc.UnaryHandler {
	if curr == len(ics)-1 {
		return final
	}
	return func(ctx context.Context, req any) (any, error) {
		return ics[curr+1](ctx, req, info, chained(ics, curr+1, info, final))
	}
}

func call(t *testing.T, h Handler[*pb.ModelInfoRequest], data []byte) error {
	t.Helper()
	dec := func(v any) error { v.(*rawRequest).data = data; return nil }
	return callWith(testWrapper(), context.Background(), dec, h)
}

func TestPanicInAHandlerIsOneInternalError(t *testing.T) {
	err := call(t, func(context.Context, *Call, *pb.ModelInfoRequest) (proto.Message, error) {
		panic("boom")
	}, nil)
	if st, _ := status.FromError(err); st.Code() != grpccodes.Internal || strings.Contains(st.Message(), "boom") {
		t.Fatalf("got %v, want INTERNAL without the panic text", err)
	}
}

func TestMalformedBytesNameTheMessageType(t *testing.T) {
	err := call(t, func(context.Context, *Call, *pb.ModelInfoRequest) (proto.Message, error) {
		t.Fatal("handler called with malformed bytes")
		return nil, nil
	}, []byte{0x0a, 0x05, 'a'})
	st, _ := status.FromError(err)
	if st.Code() != grpccodes.InvalidArgument || !strings.Contains(st.Message(), "not a valid volatility.v1.ModelInfoRequest") {
		t.Fatalf("got %v", err)
	}
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

// callWith runs one ModelInfo call through w with ctx, the request read by dec.
func callWith(w *Wrapper, ctx context.Context, dec func(any) error, h Handler[*pb.ModelInfoRequest]) error {
	m := w.Track([]grpc.MethodDesc{unary("volatility.v1.Predictor", "ModelInfo", newReq[pb.ModelInfoRequest], h)})[0]
	_, err := m.Handler(nil, ctx, dec, chain(w.Interceptors()))
	return err
}

func noHandler(t *testing.T) Handler[*pb.ModelInfoRequest] {
	return func(context.Context, *Call, *pb.ModelInfoRequest) (proto.Message, error) {
		t.Error("handler called for a request that was not read")
		return nil, nil
	}
}

// Mutation: make serve return dec's error unmapped (as before) and every case but the
// decompression one turns INTERNAL.
func TestARequestThatCouldNotBeReadCountsTheClientsCode(t *testing.T) {
	expired, cancel1 := context.WithDeadline(context.Background(), time.Now().Add(-time.Millisecond))
	defer cancel1()
	cancelled, cancel2 := context.WithCancel(context.Background())
	cancel2()
	// The client's deadline passes while the request is read: the transport says Canceled
	// or DeadlineExceeded; the deadline decides, as in Python.
	expiredReset := status.Error(grpccodes.Canceled, "context canceled")
	tooBig := status.Error(grpccodes.ResourceExhausted, "grpc: received message larger than max (70 vs. 64)")
	cases := []struct {
		ctx         context.Context
		err         error
		code        grpccodes.Code
		kind, msg   string
		logsAnError bool
	}{
		{expired, expiredReset, grpccodes.DeadlineExceeded, "ClientDeadline", "deadline expired before the call was served", false},
		{expired, context.DeadlineExceeded, grpccodes.DeadlineExceeded, "ClientDeadline", "deadline expired before the call was served", false},
		{cancelled, status.Error(grpccodes.Canceled, "context canceled"), grpccodes.Canceled, "Cancelled", "the client cancelled the call before it was served", false},
		{cancelled, errors.New("io: read/write on closed pipe"), grpccodes.Canceled, "Cancelled", "the client cancelled the call before it was served", false},
		{context.Background(), tooBig, grpccodes.ResourceExhausted, "ResourceExhausted", "the request could not be read: grpc: received message larger than max (70 vs. 64)", false},
		{context.Background(), status.Error(grpccodes.DeadlineExceeded, "x"), grpccodes.DeadlineExceeded, "ClientDeadline", "deadline expired before the call was served", false},
		{context.Background(), status.Error(grpccodes.Canceled, "y"), grpccodes.Canceled, "Cancelled", "the client cancelled the call before it was served", false},
		{context.Background(), status.Error(grpccodes.Internal, "grpc: failed to decompress the received message: gzip: invalid header"),
			grpccodes.Internal, "Internal", "internal error (logged on the server)", true},
		{context.Background(), errors.New("something else"), grpccodes.Internal, "Internal", "internal error (logged on the server)", true},
	}
	for i, c := range cases {
		w, reg := testWrapperOn()
		logs := captureLogs(t)
		callLogs = telemetry.NewLogLimiter(telemetry.LogInterval)
		err := callWith(w, c.ctx, func(any) error { return c.err }, noHandler(t))
		st, _ := status.FromError(err)
		if st.Code() != c.code || st.Message() != c.msg {
			t.Errorf("%d: got %v, want %v %q", i, err, c.code, c.msg)
		}
		if counter(t, reg, contract.MetricRpcRequests, "ModelInfo", codeName(c.code)) != 1 ||
			counter(t, reg, contract.MetricRpcErrors, "ModelInfo", codeName(c.code), c.kind) != 1 ||
			(c.code != grpccodes.Internal && counter(t, reg, contract.MetricRpcRequests, "ModelInfo", "INTERNAL") != 0) {
			t.Errorf("%d: counted wrong: %v %v %v", i, counter(t, reg, contract.MetricRpcRequests, "ModelInfo", codeName(c.code)),
				counter(t, reg, contract.MetricRpcErrors, "ModelInfo", codeName(c.code), c.kind), counter(t, reg, contract.MetricRpcRequests, "ModelInfo", "INTERNAL"))
		}
		if got := strings.Contains(logs.String(), "level=ERROR"); got != c.logsAnError {
			t.Errorf("%d: logged an error: %v, want %v: %s", i, got, c.logsAnError, logs)
		}
	}
}

func TestAHandlersContextErrorIsTheClientsCode(t *testing.T) {
	expired, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Millisecond))
	defer cancel()
	read := func(v any) error { v.(*rawRequest).data = nil; return nil }
	for _, c := range []struct {
		err       error
		code      grpccodes.Code
		kind, msg string
	}{
		{fmt.Errorf("scoring: %w", context.DeadlineExceeded), grpccodes.DeadlineExceeded, "DeadlineExceeded", "deadline exceeded while scoring 3 rows"},
		{context.Canceled, grpccodes.Canceled, "Cancelled", "the client cancelled the call while 3 rows were being scored"},
		{errors.New("a bug"), grpccodes.Internal, "Internal", "internal error (logged on the server)"},
		{status.Error(grpccodes.Unavailable, "a bug too"), grpccodes.Internal, "Internal", "internal error (logged on the server)"},
	} {
		w, reg := testWrapperOn()
		err := callWith(w, context.Background(), read, func(_ context.Context, call *Call, _ *pb.ModelInfoRequest) (proto.Message, error) {
			call.Rows = 3
			return nil, c.err
		})
		if st, _ := status.FromError(err); st.Code() != c.code || st.Message() != c.msg ||
			counter(t, reg, contract.MetricRpcErrors, "ModelInfo", codeName(c.code), c.kind) != 1 {
			t.Errorf("%v: got %v, want %v %s %q", c.err, err, c.code, c.kind, c.msg)
		}
	}
	// A call whose deadline passed before the handler ran never reaches it.
	err := callWith(testWrapper(), expired, read, noHandler(t))
	if st, _ := status.FromError(err); st.Code() != grpccodes.DeadlineExceeded {
		t.Errorf("got %v", err)
	}
}

// Mutation: drop cutMessage in finish and the 45 KB reason arrives whole.
func TestStatusMessagesAreCutToMessageChars(t *testing.T) {
	for _, c := range []struct {
		in   string
		want string
	}{
		{"", ""},
		{strings.Repeat("a", contract.MessageChars), strings.Repeat("a", contract.MessageChars)},
		{strings.Repeat("a", contract.MessageChars+1), strings.Repeat("a", contract.MessageChars-3) + "..."},
		{strings.Repeat("é", contract.MessageChars), strings.Repeat("é", contract.MessageChars)}, // 2048 bytes, 1024 characters
		{strings.Repeat("é", contract.MessageChars+1), strings.Repeat("é", contract.MessageChars-3) + "..."},
		{strings.Repeat("a", contract.MessageChars-3) + "😀😀😀😀", strings.Repeat("a", contract.MessageChars-3) + "..."},
		{strings.Repeat("a", contract.MessageChars-4) + "😀😀😀😀", strings.Repeat("a", contract.MessageChars-4) + "😀😀😀😀"},
	} {
		if got := cutMessage(c.in); got != c.want {
			t.Errorf("cutMessage(%d chars) = %d chars %q...", utf8.RuneCountInString(c.in), utf8.RuneCountInString(got), got[max(0, len(got)-12):])
		}
	}
	names := make([]string, 3000) // an operator's artifact with 45 KB of feature names
	for i := range names {
		names[i] = fmt.Sprintf("feature_%010d", i)
	}
	reason := "artifact x: features " + contract.Quoted(names) + " differ"
	err := callWith(testWrapper(), context.Background(), func(v any) error { return nil },
		func(context.Context, *Call, *pb.ModelInfoRequest) (proto.Message, error) {
			return nil, contract.ErrArtifactUnavailable("x", reason)
		})
	st, _ := status.FromError(err)
	full := contract.ErrArtifactUnavailable("x", reason).Error()
	if len(full) < 45000 || utf8.RuneCountInString(st.Message()) != contract.MessageChars || st.Code() != grpccodes.Unavailable ||
		st.Message() != full[:contract.MessageChars-3]+"..." {
		t.Fatalf("got %d chars: %.80s", utf8.RuneCountInString(st.Message()), st.Message())
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

// A client that causes a logged failure on every call (a corrupt compressed request) gets
// one log line per interval, not one per call. Mutation: log with slog.Error directly in
// finish and this sees 200 lines.
func TestAStormOfFailingCallsLogsOnce(t *testing.T) {
	logs := captureLogs(t)
	callLogs = telemetry.NewLogLimiter(telemetry.LogInterval)
	w, reg := testWrapperOn()
	corrupt := status.Error(grpccodes.Internal, "grpc: failed to decompress the received message: gzip: invalid header")
	for range 200 {
		_ = callWith(w, context.Background(), func(any) error { return corrupt }, noHandler(t))
	}
	if n := strings.Count(logs.String(), "call failed"); n != 1 {
		t.Fatalf("%d lines logged:\n%.2000s", n, logs)
	}
	if counter(t, reg, contract.MetricRpcRequests, "ModelInfo", "INTERNAL") != 200 {
		t.Fatal("every call is still counted")
	}
}

// BenchmarkTheWrapperAroundACall: what every call pays around its handler (request parse,
// interceptors: metrics, span, error mapping, deadline), for a handler that does nothing.
// docs/benchmarks.md compares it with the hand-built wrapper it replaced.
func BenchmarkTheWrapperAroundACall(b *testing.B) {
	w := testWrapper()
	resp := &pb.ModelInfoResponse{Artifact: "x"}
	m := w.Track([]grpc.MethodDesc{unary("volatility.v1.Predictor", "ModelInfo", newReq[pb.ModelInfoRequest],
		func(context.Context, *Call, *pb.ModelInfoRequest) (proto.Message, error) { return resp, nil })})[0]
	data, _ := proto.Marshal(&pb.ModelInfoRequest{Model: "xgb-v2"})
	dec := func(v any) error { v.(*rawRequest).data = data; return nil }
	ics := chain(w.Interceptors())
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("user-agent", "bench"))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.Handler(nil, ctx, dec, ics); err != nil {
			b.Fatal(err)
		}
	}
}

func TestCodeNamesMatchPython(t *testing.T) {
	for code, want := range map[grpccodes.Code]string{
		grpccodes.OK: "OK", grpccodes.InvalidArgument: "INVALID_ARGUMENT",
		grpccodes.DeadlineExceeded: "DEADLINE_EXCEEDED", grpccodes.Unavailable: "UNAVAILABLE",
		grpccodes.Canceled: "CANCELLED", grpccodes.ResourceExhausted: "RESOURCE_EXHAUSTED",
	} {
		if got := codeName(code); got != want {
			t.Errorf("codeName(%v) = %q, want %q", code, got, want)
		}
	}
}
