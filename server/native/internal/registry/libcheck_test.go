package registry

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// copyArtifact copies a built artifact to dir/name, lets change edit the manifest and
// the library bytes, and writes the library's sha256 into the manifest (an attacker who
// writes the manifest chooses the hash).
func copyArtifact(t *testing.T, dir, name string, change func(doc map[string]any, lib []byte) []byte) string {
	t.Helper()
	_, src := loadBuilt(t, "xgb-v1")
	dst := filepath.Join(dir, name)
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(filepath.Join(src, manifestFile))
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	lib, _ := os.ReadFile(filepath.Join(src, "model.so"))
	ref, _ := os.ReadFile(filepath.Join(src, referenceFile))
	doc["name"] = name
	lib = change(doc, lib)
	sum := sha256.Sum256(lib)
	doc["library_sha256"] = hex.EncodeToString(sum[:])
	out, _ := json.Marshal(doc)
	for f, data := range map[string][]byte{manifestFile: out, "model.so": lib, referenceFile: ref} {
		if err := os.WriteFile(filepath.Join(dst, f), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// Mutation check: with checkELF's segment bound removed, LoadModel dlopens the truncated
// library and the test binary dies with SIGBUS.
func TestTruncatedLibraryIsRefusedNotLoaded(t *testing.T) {
	for _, keep := range []int{-2, 4096, 63} { // half, 4 KB, less than an ELF header
		folder := copyArtifact(t, t.TempDir(), "cut", func(_ map[string]any, lib []byte) []byte {
			if keep == -2 {
				return lib[:len(lib)/2]
			}
			return lib[:keep]
		})
		_, err := LoadModel(folder)
		if err == nil || !strings.Contains(err.Error(), "is not a loadable library") {
			t.Fatalf("keep %d: got %v", keep, err)
		}
	}
}

func TestLibraryPathStaysInsideTheArtifact(t *testing.T) {
	dir := t.TempDir()
	outside := filepath.Join(dir, "elsewhere.so")
	for lib, want := range map[string]string{
		"../../elsewhere/lib.so": "must be a relative path inside the folder",
		"sub/../../x.so":         "must be a relative path inside the folder",
		outside:                  "must be a relative path inside the folder",
		"link.so":                "resolves outside the artifact folder",
	} {
		folder := copyArtifact(t, t.TempDir(), "esc", func(doc map[string]any, b []byte) []byte {
			doc["library"] = lib
			return b
		})
		if err := os.WriteFile(outside, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		_ = os.Symlink(outside, filepath.Join(folder, "link.so"))
		if _, err := LoadModel(folder); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("library %q: got %v, want %q", lib, err, want)
		}
	}
}

func TestManifestNameMustBeTheFolders(t *testing.T) {
	folder := copyArtifact(t, t.TempDir(), "evil", func(doc map[string]any, b []byte) []byte {
		return b
	})
	raw, _ := os.ReadFile(filepath.Join(folder, manifestFile))
	_ = os.WriteFile(filepath.Join(folder, manifestFile),
		[]byte(strings.Replace(string(raw), `"name":"evil"`, `"name":"xgb-v2"`, 1)), 0o644)
	if _, err := LoadModel(folder); err == nil || !strings.Contains(err.Error(), "an artifact's name is its folder's") {
		t.Fatalf("got %v", err)
	}
}
