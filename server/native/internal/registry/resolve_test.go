package registry

import (
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	grpccodes "google.golang.org/grpc/codes"

	"volspike/server/native/internal/contract"
	"volspike/server/native/internal/telemetry"
)

// testRegistry: active a, servable b loaded, c failed to load; no library is loaded.
func testRegistry(active bool) *Registry {
	r := NewRegistry(t0Dir, telemetry.NewMetrics(prometheus.NewRegistry()))
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
		var se *contract.ServiceError
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
		if _, err := empty.Resolve(name, ""); err == nil || err.(*contract.ServiceError).Kind != "NoModel" {
			t.Errorf("%q: got %v, want no_model", name, err)
		}
	}
	if m, err := empty.Resolve("", "b"); err != nil || m.Name != "b" {
		t.Errorf("a pinned servable version is served without an active one: %v, %v", m, err)
	}
}
