package main

import (
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/BurntSushi/toml"
	"google.golang.org/grpc/codes"
)

// Registry holds the active model. A call loads the pointer once and uses that model
// for the whole call, so a switch never mixes two artifacts inside one response.
type Registry struct {
	dir     string
	metrics *Metrics
	active  atomic.Pointer[Model]

	mu     sync.Mutex                        // serialises loads and writers of others
	others atomic.Pointer[map[string]*Model] // loaded, not active; copied on write
}

func NewRegistry(dir string, metrics *Metrics) *Registry {
	r := &Registry{dir: dir, metrics: metrics}
	r.others.Store(&map[string]*Model{})
	return r
}

// updateOthers publishes a changed copy of others (readers never lock). Callers hold mu.
func (r *Registry) updateOthers(change func(map[string]*Model)) {
	next := maps.Clone(*r.others.Load())
	change(next)
	r.others.Store(&next)
}

// Available lists the artifacts this server can switch to.
func (r *Registry) Available() []string {
	paths, _ := filepath.Glob(filepath.Join(r.dir, "*", manifestFile))
	names := make([]string, 0, len(paths))
	for _, p := range paths {
		names = append(names, filepath.Base(filepath.Dir(p)))
	}
	sort.Strings(names)
	return names
}

// Get returns the active model for "", else the named artifact (loaded on first use).
func (r *Registry) Get(name string) (*Model, error) {
	active := r.active.Load()
	if name == "" || (active != nil && active.Name == name) {
		if active == nil {
			return nil, statusErr(codes.Unavailable, "NoModel", "no model is loaded yet; retry when health is SERVING")
		}
		return active, nil
	}
	if m := (*r.others.Load())[name]; m != nil { // no lock on the hot path
		return m, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if m := (*r.others.Load())[name]; m != nil {
		return m, nil
	}
	available := r.Available()
	if !slices.Contains(available, name) {
		return nil, statusErr(codes.NotFound, "NotFound", fmt.Sprintf("model '%s' not found; available: %s", name, quoted(available)))
	}
	m, err := r.load(name)
	if err != nil {
		return nil, statusErr(codes.Unavailable, "ArtifactError", err.Error())
	}
	r.updateOthers(func(others map[string]*Model) { others[name] = m })
	return m, nil
}

// Activate verifies, loads and warms name, then makes it active. On failure the old
// model keeps serving and the error is returned (and counted).
func (r *Registry) Activate(name string) error {
	r.mu.Lock()
	m, err := r.load(name)
	if err != nil {
		r.mu.Unlock()
		r.metrics.reloads.WithLabelValues("failed").Inc()
		return err
	}
	old := r.active.Swap(m)
	r.updateOthers(func(others map[string]*Model) {
		delete(others, name)
		if old != nil && old.Name != name {
			others[old.Name] = old // stays warm for a quick switch back
		}
	})
	r.mu.Unlock()
	r.metrics.reloads.WithLabelValues("ok").Inc()
	r.metrics.SetActive(m.Name, m.Sha256)
	slog.Info("active model is now "+m.Name, "sha256", m.Sha256[:12])
	return nil
}

func (r *Registry) load(name string) (*Model, error) {
	t0 := time.Now()
	folder := filepath.Join(r.dir, name)
	m, err := func() (*Model, error) {
		if _, err := os.Stat(filepath.Join(folder, manifestFile)); err != nil {
			return nil, artifactErr("artifact %s: no manifest in %s", name, folder)
		}
		m, err := LoadModel(folder)
		if err != nil {
			return nil, err
		}
		if err := m.WarmUp(folder); err != nil {
			m.Close()
			return nil, err
		}
		return m, nil
	}()
	result := "ok"
	if err != nil {
		result = "failed"
		slog.Error("loading artifact failed", "artifact", name, "error", err)
	}
	r.metrics.modelLoad.WithLabelValues(name, result).Observe(time.Since(t0).Seconds())
	if m != nil {
		m.LoadedAt = time.Now()
	}
	return m, err
}

// ActiveArtifact reads the artifact named by the model config file (TOML: artifact = "name").
func ActiveArtifact(path string) (string, error) {
	var cfg struct {
		Artifact string `toml:"artifact"`
	}
	if _, err := toml.DecodeFile(path, &cfg); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	if cfg.Artifact == "" {
		return "", fmt.Errorf("%s: 'artifact' must name a compiled artifact", path)
	}
	return cfg.Artifact, nil
}

// quoted spells names as ['a', 'b'], as the Python server does.
func quoted(names []string) string {
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = "'" + n + "'"
	}
	return "[" + strings.Join(parts, ", ") + "]"
}
