package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	grpccodes "google.golang.org/grpc/codes"

	v2 "volspike/server/native/gen/inferencepb"
	pb "volspike/server/native/gen/volatilitypb"
)

// testRegistry: active a, servable b loaded, c failed to load; no library is loaded.
func testRegistry(active bool) *Registry {
	r := NewRegistry(t0Dir, NewMetrics(prometheus.NewRegistry()))
	if active {
		r.active.Store(&Model{Name: "a"})
	}
	r.others.Store(&map[string]*Model{"b": {Name: "b"}})
	r.failed.Store(&map[string]string{"c": "artifact c: broken"})
	return r
}

const t0Dir = "/nonexistent"

// Mutation: drop the loaded-servable lookup of a pinned version in resolve and the
// pinned-version cases fail.
func TestResolve(t *testing.T) {
	long := strings.Repeat("v", 70)
	notServed := "model 'zzz' is not served; servable: ['a', 'b']"
	cases := []struct {
		name, version string
		want          string // the artifact, or the error's message
		code          grpccodes.Code
	}{
		{"", "", "a", grpccodes.OK},
		{"volspike", "", "a", grpccodes.OK},
		{"", "a", "a", grpccodes.OK},
		{"volspike", "b", "b", grpccodes.OK},
		{"", "b", "b", grpccodes.OK},
		{"volspike", "c", "model 'c' is servable but not loaded: artifact c: broken", grpccodes.Unavailable},
		{"", "zzz", "model 'volspike' has no servable version 'zzz'; servable: ['a', 'b']", grpccodes.NotFound},
		{"volspike", long, "model 'volspike' has no servable version '" + long[:64] + "...'; servable: ['a', 'b']", grpccodes.NotFound},
		{"a", "", "a", grpccodes.OK},
		{"b", "", "b", grpccodes.OK},
		{"b", "b", "b", grpccodes.OK},
		{"b", "a", "model 'b' has no servable version 'a'; servable: ['a', 'b']", grpccodes.NotFound},
		{"a", "zzz", "model 'a' has no servable version 'zzz'; servable: ['a', 'b']", grpccodes.NotFound},
		{"c", "", "model 'c' is servable but not loaded: artifact c: broken", grpccodes.Unavailable},
		{"c", "zzz", "model 'c' is servable but not loaded: artifact c: broken", grpccodes.Unavailable},
		{"zzz", "", notServed, grpccodes.NotFound},
		{"zzz", "a", notServed, grpccodes.NotFound}, // the name is checked first
		{"Volspike", "", "model 'Volspike' is not served; servable: ['a', 'b']", grpccodes.NotFound},
		{long, "", "model '" + long[:64] + "...' is not served; servable: ['a', 'b']", grpccodes.NotFound},
	}
	r := testRegistry(true)
	for _, c := range cases {
		m, err := r.Resolve(c.name, c.version)
		got, code := "", grpccodes.OK
		var se *ServiceError
		switch {
		case err == nil:
			got = m.Name
		case errors.As(err, &se):
			got, code = se.Msg, se.Code
		default:
			got = err.Error()
		}
		if got != c.want || code != c.code {
			t.Errorf("Resolve(%.20q, %.20q) = %q %v; want %q %v", c.name, c.version, got, code, c.want, c.code)
		}
	}
	// Another served model name: "volspike" is then nothing but an unknown artifact.
	r.SetModelName("spikes")
	if m, err := r.Resolve("spikes", "b"); err != nil || m.Name != "b" {
		t.Errorf("got %v, %v", m, err)
	}
	if _, err := r.Resolve("volspike", ""); err == nil || err.Error() != "model 'volspike' is not served; servable: ['a', 'b']" {
		t.Errorf("got %v", err)
	}
	if _, err := r.Resolve("", "x"); err == nil || err.Error() != "model 'spikes' has no servable version 'x'; servable: ['a', 'b']" {
		t.Errorf("got %v", err)
	}
	// No active model yet.
	empty := testRegistry(false)
	for _, name := range []string{"", "volspike"} {
		if _, err := empty.Resolve(name, ""); err == nil || err.(*ServiceError).Kind != "NoModel" {
			t.Errorf("%q: got %v, want no_model", name, err)
		}
	}
	if m, err := empty.Resolve("", "b"); err != nil || m.Name != "b" {
		t.Errorf("a pinned servable version is served without an active one: %v, %v", m, err)
	}
}

func TestModelNameIsReadFromTheModelConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "model.toml")
	for text, want := range map[string]string{
		"artifact = \"a\"\n":                          "volspike",
		"artifact = \"a\"\nmodel_name = \"spikes\"\n": "spikes",
	} {
		_ = os.WriteFile(path, []byte(text), 0o644)
		if cfg, err := ReadModelConfig(path); err != nil || cfg.ModelName != want {
			t.Errorf("%q: got %+v, %v; want model_name %q", text, cfg, err, want)
		}
	}
	for _, text := range []string{"artifact = \"a\"\nmodel_name = \"\"\n", "artifact = \"a\"\nmodel_name = 3\n",
		"artifact = \"a\"\nmodel_name = \"a\"\n", "artifact = \"a\"\nservable = [\"b\"]\nmodel_name = \"b\"\n"} {
		_ = os.WriteFile(path, []byte(text), 0o644)
		if _, err := ReadModelConfig(path); err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("%q: got %v, want an error naming the file", text, err)
		}
	}
	// The repository's own config loads (and says which name it serves).
	if cfg, err := ReadModelConfig(filepath.Join("..", "..", "config", "model.toml")); err != nil || cfg.ModelName == "" {
		t.Errorf("config/model.toml: %+v, %v", cfg, err)
	}
}

// servingService serves two built artifacts: xgb-v2 active, xgb-v1 servable by name.
func servingService(t *testing.T) *Service {
	t.Helper()
	v2m, _ := loadBuilt(t, "xgb-v2")
	v1m, _ := loadBuilt(t, "xgb-v1")
	r := NewRegistry(filepath.Join("..", "..", "compiled_models"), NewMetrics(prometheus.NewRegistry()))
	r.active.Store(v2m)
	r.others.Store(&map[string]*Model{"xgb-v1": v1m})
	return &Service{Wrapper: testWrapper(), registry: r, maxRows: 100}
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
	width := s.registry.active.Load().NFeatures
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
	// Predictor: the served model name is the active artifact; ModelInfo says the name.
	resp, err := s.Predict(ctx, testCall(), &pb.PredictRequest{Model: "volspike", Packed: &pb.PackedRows{Float32Le: make([]byte, 4*width), NumFeatures: uint32(width)}})
	if err != nil || resp.(*pb.PredictResponse).Artifact != "xgb-v2" {
		t.Fatalf("got %v, %v", resp, err)
	}
	for model, artifact := range map[string]string{"": "xgb-v2", "volspike": "xgb-v2", "xgb-v1": "xgb-v1"} {
		resp, err := s.ModelInfo(ctx, testCall(), &pb.ModelInfoRequest{Model: model})
		if err != nil || resp.(*pb.ModelInfoResponse).ModelName != "volspike" || resp.(*pb.ModelInfoResponse).Artifact != artifact {
			t.Errorf("%q: got %v, %v", model, resp, err)
		}
	}
}

// Mutation: drop the seen check in decodeInfer and the repeated names pass.
func TestARepeatedOutputIsRefused(t *testing.T) {
	s, _ := testService()
	width := len(testFeatures)
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
		var se *ServiceError
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

func testCall() *Call { return &Call{Span: trace.SpanFromContext(context.Background())} }
