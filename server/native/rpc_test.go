package main

import (
	"context"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace/noop"
	grpccodes "google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "volspike/server/native/gen/volatilitypb"
)

func testWrapper() *Wrapper {
	return &Wrapper{metrics: NewMetrics(prometheus.NewRegistry()), tracer: noop.NewTracerProvider().Tracer("t"), prop: propagation.TraceContext{}}
}

func call(t *testing.T, h Handler[*pb.ModelInfoRequest], data []byte) error {
	t.Helper()
	m := unary(testWrapper(), "volatility.v1.Predictor", "ModelInfo", newReq[pb.ModelInfoRequest], h)
	dec := func(v any) error { v.(*rawRequest).data = data; return nil }
	_, err := m.Handler(nil, context.Background(), dec, nil)
	return err
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
