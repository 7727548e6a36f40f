package main

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// loadBuilt loads a compiled artifact from `make models`; the Python suite checks its
// answers against XGBoost, this one checks the Go side calls it correctly.
func loadBuilt(t *testing.T, name string) (*Model, string) {
	t.Helper()
	folder := filepath.Join("..", "..", "compiled_models", name)
	if _, err := os.Stat(filepath.Join(folder, manifestFile)); err != nil {
		t.Fatalf("artifact %s is not built: run `make models`", name)
	}
	m, err := LoadModel(folder)
	if err != nil {
		t.Fatal(err)
	}
	return m, folder
}

func TestSplitAcrossCoresEqualsOneCall(t *testing.T) {
	m, folder := loadBuilt(t, "xgb-v2")
	if err := m.WarmUp(folder); err != nil {
		t.Fatal(err)
	}
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

func TestTamperedLibraryIsRefused(t *testing.T) {
	_, folder := loadBuilt(t, "xgb-v1")
	tmp := filepath.Join(t.TempDir(), "xgb-v1")
	if err := os.Mkdir(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{manifestFile, "model.so", referenceFile} {
		data, err := os.ReadFile(filepath.Join(folder, f))
		if err != nil {
			t.Fatal(err)
		}
		if f == "model.so" {
			data[len(data)/2] ^= 0xff
		}
		if err := os.WriteFile(filepath.Join(tmp, f), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := LoadModel(tmp); err == nil || !strings.Contains(err.Error(), "refusing to load it") {
		t.Fatalf("tampered library: got %v", err)
	}
}

func TestModelConfigIsReadAsTOML(t *testing.T) {
	dir := t.TempDir()
	for text, want := range map[string]string{
		"# comment\nartifact = \"xgb-v1\"\n":    "xgb-v1",
		"artifact='baseline-rv60' # rollback\n": "baseline-rv60",
	} {
		path := filepath.Join(dir, "model.toml")
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		if got, err := ActiveArtifact(path); err != nil || got != want {
			t.Errorf("%q: got %q, %v; want %q", text, got, err, want)
		}
	}
	for _, text := range []string{"", "artifact = \"\"\n", "artifact = [\n"} {
		path := filepath.Join(dir, "bad.toml")
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := ActiveArtifact(path); err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("%q: want an error naming the file, got %v", text, err)
		}
	}
}

func TestACancelledCallStopsScoring(t *testing.T) {
	m, _ := loadBuilt(t, "xgb-v2")
	rows := 40 * stopCheckRows
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
	if scored == 0 || scored > cap(cores)*stopCheckRows {
		t.Fatalf("%d of %d rows scored after cancellation; want at most one slice per core", scored, rows)
	}
}
