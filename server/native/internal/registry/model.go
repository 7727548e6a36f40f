package registry

/*
#cgo LDFLAGS: -ldl
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

typedef int32_t (*vs_nf_fn)(void);
typedef int64_t (*vs_batch_fn)(const float*, int64_t, float*);

// Loads verified bytes from an anonymous memory file, so the file on disk cannot be
// swapped between the sha256 check and dlopen. The fd stays open while the library is
// loaded: glibc recognises a loaded object by path, and a reused /proc/self/fd/N would
// hand back the old library.
static void* vs_open(const char* name, const void* data, size_t len, int* fd_out, char* err, size_t errlen) {
  int fd = memfd_create(name, 0);
  if (fd < 0) { snprintf(err, errlen, "memfd_create failed"); return NULL; }
  size_t done = 0;
  while (done < len) {
    ssize_t n = write(fd, (const char*)data + done, len - done);
    if (n <= 0) { close(fd); snprintf(err, errlen, "writing the memory file failed"); return NULL; }
    done += (size_t)n;
  }
  char path[64];
  snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  void* h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!h) { snprintf(err, errlen, "%s", dlerror()); close(fd); return NULL; }
  *fd_out = fd;
  return h;
}

static void* vs_sym(void* h, const char* name) { return dlsym(h, name); }
static int32_t vs_call_nf(void* f) { return ((vs_nf_fn)f)(); }
static int64_t vs_call_batch(void* f, const float* x, int64_t n, float* out) {
  return ((vs_batch_fn)f)(x, n, out);
}
static void vs_close(void* h, int fd) { dlclose(h); close(fd); }
*/
import "C"

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"volspike/server/native/internal/contract"
)

const (
	manifestFile  = "manifest.json"
	referenceFile = "reference.f32" // little-endian float32 rows written by `make models`
)

// Manifest holds the fields the server uses, filled by exact key from the checked document
// (manifest.go: never by json.Unmarshal, whose key matching ignores case); JSON is the whole
// document as written (ModelInfo's manifest_json).
type Manifest struct {
	Name              string
	Description       string
	Created           string
	FeatureNames      []string
	DecisionThreshold float64
	Library           string
	LibrarySha256     string
	// {} or absent: identity; else an isotonic map (calibration.go).
	CalibrationJSON json.RawMessage
	// One sentence saying what the artifact was trained on.
	TrainedOn string
	// What its evaluation rests on (compiled_models/scope.py:sentence).
	Scope string
	JSON  string
}

// ArtifactError: the artifact on disk cannot be trusted or does not fit the schema.
type ArtifactError struct{ msg string }

func (e *ArtifactError) Error() string { return e.msg }

func artifactErr(format string, a ...any) error { return &ArtifactError{fmt.Sprintf(format, a...)} }

// Model is a verified, loaded artifact. Predict is safe from any number of goroutines.
type Model struct {
	Manifest  Manifest
	Name      string
	Sha256    string
	threshold atomic.Uint32 // float32 bits, on the calibrated scale: Threshold, SetThreshold
	// Calibration maps the trees' output before it is returned; nil: identity.
	Calibration *Calibration
	NFeatures   int
	LoadedAt    time.Time

	mu     sync.RWMutex // Predict holds it shared; Close takes it exclusively
	handle unsafe.Pointer
	fd     C.int
	batch  unsafe.Pointer
}

// LoadModel verifies the library's sha256 and the feature schema, then loads it.
func LoadModel(folder string) (*Model, error) {
	name := filepath.Base(folder)
	raw, err := readManifest(filepath.Join(folder, manifestFile))
	if err != nil {
		return nil, artifactErr("artifact %s: %v", name, err)
	}
	doc, err := checkManifest(raw)
	if err != nil {
		return nil, artifactErr("artifact %s: %v", name, err)
	}
	m, err := manifestFromChecked(doc, raw)
	if err != nil {
		return nil, artifactErr("artifact %s: %v", name, err)
	}
	if m.Name != name {
		return nil, artifactErr("artifact %s: manifest names it '%s'; an artifact's name is its folder's", name, m.Name)
	}
	cal, err := parseCalibration(m.CalibrationJSON)
	if err != nil {
		return nil, artifactErr("artifact %s: %v", m.Name, err)
	}
	data, err := readLibrary(folder, m.Library)
	if err != nil {
		return nil, artifactErr("artifact %s: %v", m.Name, err)
	}
	sum := sha256.Sum256(data)
	digest := hex.EncodeToString(sum[:])
	if digest != m.LibrarySha256 {
		return nil, artifactErr("artifact %s: %s sha256 %s does not match manifest %s; refusing to load it",
			m.Name, m.Library, digest, m.LibrarySha256)
	}
	if err := checkELF(data); err != nil {
		return nil, artifactErr("artifact %s: %s is not a loadable library: %v", m.Name, m.Library, err)
	}
	model := &Model{Manifest: m, Name: m.Name, Sha256: digest, Calibration: cal}
	model.SetThreshold(float32(m.DecisionThreshold))
	if err := model.open(data); err != nil {
		return nil, err
	}
	runtime.SetFinalizer(model, (*Model).Close)
	return model, nil
}

// Threshold is the decision threshold in force: the model config's (decision_threshold),
// else the manifest's. A call reads it once and uses that value for its whole answer.
func (m *Model) Threshold() float32 { return math.Float32frombits(m.threshold.Load()) }

// SetThreshold changes the threshold in force (a config reload); calls already running keep
// the value they read.
func (m *Model) SetThreshold(t float32) { m.threshold.Store(math.Float32bits(t)) }

// readManifest reads a manifest file, at most one byte past the limit: a larger one is
// refused by its size (checkManifest) without being read whole.
func readManifest(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("unreadable manifest: %v", err)
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, contract.ManifestMaxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("unreadable manifest: %v", err)
	}
	if len(raw) > contract.ManifestMaxBytes {
		if st, err := f.Stat(); err == nil && st.Mode().IsRegular() && st.Size() > int64(len(raw)) {
			return nil, fmt.Errorf("manifest is %d bytes; the limit is %d", st.Size(), contract.ManifestMaxBytes)
		}
	}
	return raw, nil
}

func (m *Model) open(data []byte) error {
	cname := C.CString("artifact-" + m.Name)
	defer C.free(unsafe.Pointer(cname))
	var errbuf [512]C.char
	var fd C.int
	h := C.vs_open(cname, unsafe.Pointer(&data[0]), C.size_t(len(data)), &fd, &errbuf[0], 512)
	if h == nil {
		return artifactErr("artifact %s: dlopen failed: %s", m.Name, C.GoString(&errbuf[0]))
	}
	sym := func(s string) unsafe.Pointer {
		cs := C.CString(s)
		defer C.free(unsafe.Pointer(cs))
		return C.vs_sym(h, cs)
	}
	nf, batch := sym("vs_num_feature"), sym("vs_predict_batch")
	if nf == nil || batch == nil {
		C.vs_close(h, fd)
		return artifactErr("artifact %s: library lacks vs_num_feature/vs_predict_batch", m.Name)
	}
	m.handle, m.fd, m.batch = h, fd, batch
	m.NFeatures = int(C.vs_call_nf(nf))
	if m.NFeatures != len(m.Manifest.FeatureNames) {
		m.Close()
		return artifactErr("artifact %s: library expects %d features, manifest lists %d",
			m.Name, m.NFeatures, len(m.Manifest.FeatureNames))
	}
	return nil
}

// Close unloads the library once no Predict is running.
func (m *Model) Close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.handle != nil {
		C.vs_close(m.handle, m.fd)
		m.handle = nil
	}
}

// Predict scores row-major rows of NFeatures float32 into out, calibrated (the scale of
// Threshold). NaN means missing; it returns the index of the first row holding an
// infinity, or -1.
func (m *Model) Predict(x []float32, out []float32) int {
	bad := m.PredictRaw(x, out)
	if bad < 0 && m.Calibration != nil {
		m.Calibration.Apply(out)
	}
	return bad
}

// PredictRaw is Predict before calibration: the compiled trees' probabilities.
func (m *Model) PredictRaw(x []float32, out []float32) int {
	rows := len(out)
	if rows == 0 || len(x) != rows*m.NFeatures {
		panic(fmt.Sprintf("%s: %d values for %d rows of %d features", m.Name, len(x), rows, m.NFeatures))
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.handle == nil {
		panic(m.Name + ": predict after close")
	}
	bad := C.vs_call_batch(m.batch, (*C.float)(unsafe.Pointer(&x[0])), C.int64_t(rows),
		(*C.float)(unsafe.Pointer(&out[0])))
	return int(bad)
}

// WarmUp runs the artifact's reference rows through the model and checks the answers.
func (m *Model) WarmUp(folder string) error {
	data, err := os.ReadFile(filepath.Join(folder, referenceFile))
	if err != nil {
		return artifactErr("artifact %s: warm-up sample: %v", m.Name, err)
	}
	rowBytes := 4 * m.NFeatures
	if len(data) == 0 || len(data)%rowBytes != 0 {
		return artifactErr("artifact %s: %s has %d bytes, not whole rows of %d float32",
			m.Name, referenceFile, len(data), m.NFeatures)
	}
	x := Float32View(data)
	out := make([]float32, len(data)/rowBytes)
	if bad := m.Predict(x, out); bad >= 0 {
		return artifactErr("artifact %s: warm-up row %d is infinite", m.Name, bad)
	}
	for _, p := range out {
		if !(p >= 0 && p <= 1) {
			return artifactErr("artifact %s: warm-up produced out-of-range output %v", m.Name, p)
		}
	}
	return nil
}

// Float32View reads little-endian float32 rows in place when aligned (amd64 is
// little-endian), else copies.
func Float32View(data []byte) []float32 {
	n := len(data) / 4
	if uintptr(unsafe.Pointer(&data[0]))%4 == 0 {
		return unsafe.Slice((*float32)(unsafe.Pointer(&data[0])), n)
	}
	out := make([]float32, n)
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&out[0])), 4*n), data)
	return out
}
