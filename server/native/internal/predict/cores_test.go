package predict

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	pb "volspike/server/native/gen/volatilitypb"
	"volspike/server/native/internal/contract"
	"volspike/server/native/internal/registry"
	"volspike/server/native/internal/rpc"
	"volspike/server/native/internal/telemetry"
)

// compiledModels is where `make models` writes the artifacts.
var compiledModels = filepath.Join("..", "..", "..", "..", "compiled_models")

// loadBuilt loads a compiled artifact from `make models` and warms it up.
func loadBuilt(t *testing.T, name string) *registry.Model {
	t.Helper()
	folder := filepath.Join(compiledModels, name)
	if _, err := os.Stat(folder); err != nil {
		t.Fatalf("artifact %s is not built: run `make models`", name)
	}
	m, err := registry.LoadModel(folder)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.WarmUp(folder); err != nil {
		t.Fatal(err)
	}
	return m
}

// servingRegistry serves two built artifacts: xgb-v2 active, xgb-v1 servable by name.
func servingRegistry(t *testing.T) *registry.Registry {
	t.Helper()
	r := registry.NewRegistry(compiledModels, telemetry.NewMetrics(prometheus.NewRegistry()))
	if err := r.Configure("xgb-v2", []string{"xgb-v1"}, nil); err != nil {
		t.Fatal(err)
	}
	return r
}

func testCall() *rpc.Call { return &rpc.Call{Span: trace.SpanFromContext(context.Background())} }

// Predictor: the served model name is the active artifact; ModelInfo says the name.
func TestPredictorServesTheModelName(t *testing.T) {
	r := servingRegistry(t)
	metrics := telemetry.NewMetrics(prometheus.NewRegistry())
	s := New(rpc.NewWrapper(metrics, noop.NewTracerProvider().Tracer("t")), metrics, r, 100)
	width := r.Active().NFeatures
	ctx := context.Background()
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

func TestSplitAcrossCoresEqualsOneCall(t *testing.T) {
	m := loadBuilt(t, "xgb-v2")
	saved := cores
	cores = make(chan struct{}, 4) // force a split into up to 4 chunks
	defer func() { cores = saved }()
	rows := 5*minChunkRows + 7
	x := make([]float32, rows*m.NFeatures)
	for i := range x {
		x[i] = float32(math.Sin(float64(i))) * 3
		if i%17 == 0 {
			x[i] = float32(math.NaN())
		}
	}
	want := make([]float32, rows)
	if bad := m.Predict(x, want); bad != -1 {
		t.Fatalf("unexpected infinite row %d", bad)
	}
	got := make([]float32, rows)
	if bad, complete := predictOnCores(context.Background(), m, x, got); bad != -1 || !complete { // checked below
		t.Fatalf("unexpected infinite row %d (complete %v)", bad, complete)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("row %d: split %v, whole %v", i, got[i], want[i])
		}
	}
	if len(cores) != 0 {
		t.Fatalf("%d core slots still taken", len(cores))
	}
	x[(rows-3)*m.NFeatures+2] = float32(math.Inf(-1)) // in the last chunk
	x[(rows-1)*m.NFeatures] = float32(math.Inf(1))
	if bad, _ := predictOnCores(context.Background(), m, x, got); bad != rows-3 {
		t.Fatalf("first infinite row: got %d, want %d", bad, rows-3)
	}
}

func TestACancelledCallStopsScoring(t *testing.T) {
	m := loadBuilt(t, "xgb-v2")
	rows := 40 * contract.StopCheckRows
	x := make([]float32, rows*m.NFeatures)
	out := make([]float32, rows)
	for i := range out {
		out[i] = -1 // untouched rows keep -1
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if bad, complete := predictOnCores(ctx, m, x, out); bad != -1 || complete {
		t.Fatalf("got bad %d, complete %v; want -1, false", bad, complete)
	}
	scored := 0
	for _, p := range out {
		if p != -1 {
			scored++
		}
	}
	if scored == 0 || scored > cap(cores)*contract.StopCheckRows {
		t.Fatalf("%d of %d rows scored after cancellation; want at most one slice per core", scored, rows)
	}
}

// Chunks start on 64-row blocks (the AVX-512 layout's unit), cover every row once, and
// none is empty, whatever the batch and the number of free cores.
func TestChunksStartOnBlocksAndCoverEveryRow(t *testing.T) {
	for n := 1; n <= 64; n++ {
		for rows := n * minChunkRows; rows <= n*minChunkRows+3*blockRows+5; rows++ {
			chunk, used := chunkRows(rows, n)
			if chunk%blockRows != 0 || used < 1 || used > n || (used-1)*chunk >= rows || used*chunk < rows {
				t.Fatalf("rows %d, n %d: chunk %d, used %d", rows, n, chunk, used)
			}
		}
	}
}

// go test -run X -bench PredictOnCores ./internal/predict/ (docs/benchmarks.md)
func BenchmarkPredictOnCores(b *testing.B) {
	folder := filepath.Join(compiledModels, "xgb-v2")
	m, err := registry.LoadModel(folder)
	if err != nil {
		b.Fatal(err)
	}
	for _, rows := range []int{1044, 10_000} {
		x := make([]float32, rows*m.NFeatures)
		for i := range x {
			x[i] = float32(math.Sin(float64(i))) * 3
		}
		out := make([]float32, rows)
		b.Run(fmt.Sprintf("rows=%d", rows), func(b *testing.B) {
			for b.Loop() {
				predictOnCores(context.Background(), m, x, out)
			}
			b.ReportMetric(float64(rows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}
