package registry

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// loadBuilt loads a compiled artifact from `make models`; the Python suite checks its
// answers against XGBoost, this one checks the Go side calls it correctly.
func loadBuilt(t *testing.T, name string) (*Model, string) {
	t.Helper()
	folder := filepath.Join("..", "..", "..", "..", "compiled_models", name)
	if _, err := os.Stat(filepath.Join(folder, manifestFile)); err != nil {
		t.Fatalf("artifact %s is not built: run `make models`", name)
	}
	m, err := LoadModel(folder)
	if err != nil {
		t.Fatal(err)
	}
	return m, folder
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
