// Package registry loads, verifies and hot-swaps the compiled artifacts: the strict
// manifest check (manifest.go), the library checks before dlopen (libcheck.go), the
// calibration map (calibration.go), the loaded Model (model.go) and the Registry that holds
// the active and servable models. It imports contract, config and telemetry; never a
// service (predict, kserve).
package registry

import (
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"volspike/server/native/internal/config"
	"volspike/server/native/internal/contract"
	"volspike/server/native/internal/telemetry"
)

// Registry holds the active model and the servable ones. A call loads the pointer once
// and uses that model for the whole call, so a switch never mixes two artifacts inside
// one response.
//
// Artifacts are loaded only by an operator action (start-up, a config change, SIGHUP): a
// call that names an artifact gets it only if the config lists it as servable and it
// loaded. A library is native code; loading one because a client asked would let any
// client run whatever sits in the models folder.
type Registry struct {
	dir     string
	metrics *telemetry.Metrics
	active  atomic.Pointer[Model]

	mu     sync.Mutex                        // serialises loads and writers of others
	others atomic.Pointer[map[string]*Model] // servable, loaded, not active; copied on write
	failed atomic.Pointer[map[string]string] // servable whose load failed -> why

	schema     []string // the feature list this process serves (guarded by mu)
	schemaFrom string   // the artifact it came from: the first one made active

	modelName atomic.Pointer[string] // the name served whatever the active artifact (config model_name)
	// config decision_threshold: per artifact, the threshold replacing its manifest's
	// (guarded by mu; applied to a model before it serves and to loaded ones in place)
	thresholds map[string]float64
}

func NewRegistry(dir string, metrics *telemetry.Metrics) *Registry {
	r := &Registry{dir: dir, metrics: metrics}
	r.others.Store(&map[string]*Model{})
	r.failed.Store(&map[string]string{})
	name := config.DefaultModelName
	r.modelName.Store(&name)
	return r
}

// ModelName is the served model name (config model_name): a call naming it (or nothing)
// gets the active artifact, whichever it is.
func (r *Registry) ModelName() string { return *r.modelName.Load() }

// SetModelName sets the served model name.
func (r *Registry) SetModelName(name string) { r.modelName.Store(&name) }

// Active is the active model; nil until one loaded.
func (r *Registry) Active() *Model { return r.active.Load() }

// Available lists the artifacts on disk an operator can switch to.
func (r *Registry) Available() []string {
	paths, _ := filepath.Glob(filepath.Join(r.dir, "*", manifestFile))
	names := make([]string, 0, len(paths))
	for _, p := range paths {
		names = append(names, filepath.Base(filepath.Dir(p)))
	}
	sort.Strings(names)
	return names
}

// Servable lists the artifacts a call may name: the active one and the loaded servable.
func (r *Registry) Servable() []string {
	names := slices.Collect(maps.Keys(*r.others.Load()))
	if a := r.active.Load(); a != nil && !slices.Contains(names, a.Name) {
		names = append(names, a.Name)
	}
	sort.Strings(names)
	return names
}

// Get returns the active model for "", else the named servable artifact. Never loads.
func (r *Registry) Get(name string) (*Model, error) {
	active := r.active.Load()
	if name == "" || (active != nil && active.Name == name) {
		if active == nil {
			return nil, contract.ErrNoModel()
		}
		return active, nil
	}
	if m := (*r.others.Load())[name]; m != nil { // no lock on the hot path
		return m, nil
	}
	if why, ok := (*r.failed.Load())[name]; ok {
		return nil, contract.ErrArtifactUnavailable(name, why)
	}
	return nil, contract.ErrNotServed(contract.Cut(name, contract.ModelCharsInError), contract.Quoted(r.Servable()))
}

// Resolve finds the model a call names: name "" or the served model name means the active
// artifact, or with a version the servable artifact of that name; otherwise name is an
// artifact's name (Get), which version may only repeat. Never loads.
func (r *Registry) Resolve(name, version string) (*Model, error) {
	return r.ResolveServed(r.ModelName(), name, version)
}

// ResolveServed is Resolve with the served model name read once by the caller.
func (r *Registry) ResolveServed(served, name, version string) (*Model, error) {
	if name != "" && name != served {
		m, err := r.Get(name)
		if err == nil && version != "" && version != m.Name {
			return nil, contract.ErrVersionNotServed(contract.Cut(name, contract.ModelCharsInError), contract.Cut(version, contract.ModelCharsInError), contract.Quoted(r.Servable()))
		}
		return m, err
	}
	active := r.active.Load()
	if version == "" {
		if active == nil {
			return nil, contract.ErrNoModel()
		}
		return active, nil
	}
	if active != nil && active.Name == version {
		return active, nil
	}
	if m := (*r.others.Load())[version]; m != nil {
		return m, nil
	}
	if why, ok := (*r.failed.Load())[version]; ok {
		return nil, contract.ErrArtifactUnavailable(version, why)
	}
	return nil, contract.ErrVersionNotServed(contract.Cut(served, contract.ModelCharsInError), contract.Cut(version, contract.ModelCharsInError), contract.Quoted(r.Servable()))
}

// Configure makes artifact active (if it is not) and loads the servable ones not loaded
// yet; those no longer listed are dropped. A failed activation leaves the old model
// active; its error is returned after the servable set is settled. thresholds: the
// config's decision thresholds (an artifact not named keeps its manifest's).
func (r *Registry) Configure(artifact string, servable []string, thresholds map[string]float64) error {
	r.mu.Lock()
	r.thresholds = maps.Clone(thresholds)
	r.mu.Unlock()
	var activateErr error
	previous := r.active.Load()
	if previous == nil || previous.Name != artifact {
		activateErr = r.Activate(artifact)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	active := r.active.Load()
	keep := map[string]*Model{}
	for name, m := range *r.others.Load() {
		if slices.Contains(servable, name) {
			keep[name] = m
		}
	}
	if previous != nil && previous != active && slices.Contains(servable, previous.Name) {
		if _, ok := keep[previous.Name]; !ok {
			keep[previous.Name] = previous // still answerable by name (a switch back reloads from disk)
		}
	}
	failed := map[string]string{}
	if activateErr != nil { // asked for by name, it says why it is not served
		failed[artifact] = activateErr.Error()
	}
	for _, name := range servable {
		if _, ok := keep[name]; ok || (active != nil && active.Name == name) {
			continue
		}
		if active == nil {
			failed[name] = contract.NoSchemaYet
			continue
		}
		m, err := r.load(name)
		if err != nil {
			failed[name] = err.Error()
			continue
		}
		keep[name] = m
	}
	r.others.Store(&keep)
	r.failed.Store(&failed)
	for _, m := range keep {
		r.setThreshold(m)
	}
	if active != nil {
		r.setThreshold(active)
	}
	return activateErr
}

// setThreshold gives m the config's threshold, else its manifest's. Called with r.mu held.
func (r *Registry) setThreshold(m *Model) {
	want, ok := r.thresholds[m.Name]
	if !ok {
		want = m.Manifest.DecisionThreshold
	}
	if m.Threshold() != float32(want) {
		m.SetThreshold(float32(want))
		slog.Info("decision threshold of "+m.Name+" is now "+strconv.FormatFloat(want, 'g', -1, 64), "manifest", m.Manifest.DecisionThreshold)
	}
}

// Activate verifies, loads and warms name, then makes it active. On failure the old
// model keeps serving and the error is returned (and counted).
func (r *Registry) Activate(name string) error {
	r.mu.Lock()
	m, err := r.load(name)
	if err != nil {
		r.mu.Unlock()
		r.metrics.RecordReload(contract.ResultFailed)
		return err
	}
	r.active.Store(m)
	if r.schemaFrom == "" {
		r.schemaFrom, r.schema = m.Name, m.Manifest.FeatureNames
	}
	r.mu.Unlock()
	r.metrics.RecordReload(contract.ResultOk)
	r.metrics.SetActive(m.Name, m.Sha256)
	slog.Info("active model is now "+m.Name, "sha256", m.Sha256[:12])
	return nil
}

func (r *Registry) load(name string) (*Model, error) {
	t0 := time.Now()
	folder := filepath.Join(r.dir, name)
	m, err := func() (*Model, error) {
		if strings.Contains(name, "/") || name == "" || name == "." || name == ".." {
			return nil, artifactErr("artifact name '%s' is not a folder name", name)
		}
		if _, err := os.Stat(filepath.Join(folder, manifestFile)); err != nil {
			return nil, artifactErr("artifact %s: no manifest in %s", name, folder)
		}
		m, err := LoadModel(folder)
		if err != nil {
			return nil, err
		}
		if err := r.checkSchema(m); err != nil {
			m.Close()
			return nil, err
		}
		if err := m.WarmUp(folder); err != nil {
			m.Close()
			return nil, err
		}
		r.setThreshold(m)
		return m, nil
	}()
	result := contract.ResultOk
	if err != nil {
		result = contract.ResultFailed
		slog.Error("loading artifact failed", "artifact", name, "error", err)
	}
	r.metrics.RecordLoad(name, result, time.Since(t0).Seconds())
	if m != nil {
		m.LoadedAt = time.Now()
	}
	return m, err
}

// checkSchema: one feature schema per process, its first active artifact's. Packed rows
// carry no names, so a switch to another list of the same width would silently change
// what a running client's columns mean. Called with r.mu held.
func (r *Registry) checkSchema(m *Model) error {
	if r.schemaFrom == "" || slices.Equal(m.Manifest.FeatureNames, r.schema) {
		return nil
	}
	return artifactErr("artifact %s: features %s differ from %s, the schema this server serves (from %s); "+
		"restart the server to serve another schema", m.Name, contract.Quoted(m.Manifest.FeatureNames), contract.Quoted(r.schema), r.schemaFrom)
}
