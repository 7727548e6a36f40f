package kserve

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	grpccodes "google.golang.org/grpc/codes"

	v2 "volspike/server/native/gen/inferencepb"
	"volspike/server/native/internal/contract"
	"volspike/server/native/internal/predict"
	"volspike/server/native/internal/registry"
	"volspike/server/native/internal/rpc"
	"volspike/server/native/internal/telemetry"
)

// servingService serves two built artifacts: xgb-v2 active, xgb-v1 servable by name.
func servingService(t *testing.T) *Service {
	t.Helper()
	metrics := telemetry.NewMetrics(prometheus.NewRegistry())
	r := registry.NewRegistry(filepath.Join("..", "..", "..", "..", "compiled_models"), metrics)
	if err := r.Configure("xgb-v2", []string{"xgb-v1"}, nil); err != nil {
		t.Fatal(err)
	}
	scorer := predict.New(rpc.NewWrapper(metrics, noop.NewTracerProvider().Tracer("t")), metrics, r, 100)
	return New(scorer, r, 100)
}

func inferRequest(name, version string, width int, outputs ...string) *v2.ModelInferRequest {
	req := &v2.ModelInferRequest{ModelName: name, ModelVersion: version, Id: "id-1",
		Inputs:           []*v2.ModelInferRequest_InferInputTensor{{Name: "features", Datatype: "FP32", Shape: []int64{1, int64(width)}}},
		RawInputContents: [][]byte{make([]byte, 4*width)}}
	for _, o := range outputs {
		req.Outputs = append(req.Outputs, &v2.ModelInferRequest_InferRequestedOutputTensor{Name: o})
	}
	return req
}

func TestKServeNamesTheModelAndPinsVersions(t *testing.T) {
	s := servingService(t)
	width := s.registry.Active().NFeatures
	ctx := context.Background()
	for _, c := range []struct{ name, version, wantName, wantVersion string }{
		{"", "", "volspike", "xgb-v2"},
		{"volspike", "", "volspike", "xgb-v2"},
		{"volspike", "xgb-v1", "volspike", "xgb-v1"},
		{"", "xgb-v2", "volspike", "xgb-v2"},
		{"xgb-v1", "", "xgb-v1", "xgb-v1"},
		{"xgb-v1", "xgb-v1", "xgb-v1", "xgb-v1"},
		{"xgb-v2", "", "xgb-v2", "xgb-v2"},
	} {
		resp, err := s.ModelInfer(ctx, testCall(), inferRequest(c.name, c.version, width))
		if err != nil {
			t.Errorf("%q/%q: %v", c.name, c.version, err)
			continue
		}
		r := resp.(*v2.ModelInferResponse)
		if r.ModelName != c.wantName || r.ModelVersion != c.wantVersion || r.Id != "id-1" {
			t.Errorf("%q/%q: got %q/%q, want %q/%q", c.name, c.version, r.ModelName, r.ModelVersion, c.wantName, c.wantVersion)
		}
	}
	for _, c := range []struct{ name, version, want string }{
		{"volspike", "xgb-v9", "model 'volspike' has no servable version 'xgb-v9'; servable: ['xgb-v1', 'xgb-v2']"},
		{"xgb-v1", "xgb-v2", "model 'xgb-v1' has no servable version 'xgb-v2'; servable: ['xgb-v1', 'xgb-v2']"},
	} {
		if _, err := s.ModelInfer(ctx, testCall(), inferRequest(c.name, c.version, width)); err == nil || err.Error() != c.want {
			t.Errorf("%q/%q: got %v, want %q", c.name, c.version, err, c.want)
		}
		if resp, _ := s.ModelReady(ctx, testCall(), &v2.ModelReadyRequest{Name: c.name, Version: c.version}); resp.(*v2.ModelReadyResponse).Ready {
			t.Errorf("%q/%q: ready", c.name, c.version)
		}
	}
	for _, c := range []struct{ name, version string }{{"", ""}, {"volspike", "xgb-v1"}, {"xgb-v1", ""}, {"xgb-v2", "xgb-v2"}} {
		if resp, _ := s.ModelReady(ctx, testCall(), &v2.ModelReadyRequest{Name: c.name, Version: c.version}); !resp.(*v2.ModelReadyResponse).Ready {
			t.Errorf("%q/%q: not ready", c.name, c.version)
		}
	}
	for _, c := range []struct{ name, version, wantName, versions string }{
		{"", "", "volspike", "xgb-v2,xgb-v1"}, // every servable version, the active one first
		{"volspike", "", "volspike", "xgb-v2,xgb-v1"},
		{"volspike", "xgb-v1", "volspike", "xgb-v1"},
		{"xgb-v1", "", "xgb-v1", "xgb-v1"},
		{"xgb-v2", "", "xgb-v2", "xgb-v2"},
	} {
		resp, err := s.ModelMetadata(ctx, testCall(), &v2.ModelMetadataRequest{Name: c.name, Version: c.version})
		if err != nil {
			t.Errorf("%q/%q: %v", c.name, c.version, err)
			continue
		}
		r := resp.(*v2.ModelMetadataResponse)
		if r.Name != c.wantName || strings.Join(r.Versions, ",") != c.versions || r.Platform != "tl2cgen" || len(r.Outputs) != 2 {
			t.Errorf("%q/%q: got %q %v", c.name, c.version, r.Name, r.Versions)
		}
	}
}

// Mutation: drop the seen check in decodeInfer and the repeated names pass.
func TestARepeatedOutputIsRefused(t *testing.T) {
	s := &Service{maxRows: 100}
	width := 9
	for _, c := range []struct {
		outputs []string
		want    string
	}{
		{[]string{"probability", "probability"}, "outputs: 'probability' is requested more than once"},
		{[]string{"label", "probability", "label"}, "outputs: 'label' is requested more than once"},
		{[]string{"probability", "bogus", "probability"}, "outputs: unknown output 'bogus'; this model has ['label', 'probability']"},
		{[]string{"probability", "probability", "bogus"}, "outputs: 'probability' is requested more than once"},
	} {
		_, _, err := s.decodeInfer(inferRequest("", "", width, c.outputs...), width)
		var se *contract.ServiceError
		if !errors.As(err, &se) || se.Msg != c.want || se.Code != grpccodes.InvalidArgument {
			t.Errorf("%v: got %v, want %q", c.outputs, err, c.want)
		}
	}
	for _, outputs := range [][]string{nil, {"label"}, {"label", "probability"}} {
		if _, _, err := s.decodeInfer(inferRequest("", "", width, outputs...), width); err != nil {
			t.Errorf("%v: %v", outputs, err)
		}
	}
}

func testCall() *rpc.Call { return &rpc.Call{Span: trace.SpanFromContext(context.Background())} }
