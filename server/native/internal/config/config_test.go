package config

import (
	"encoding/json"
	"errors"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// The precedence of config/settings.toml: flag > VOLSPIKE_* variable > --config file >
// default (mutation: apply the file after the variables and the second case fails).
func TestSettingsPrecedence(t *testing.T) {
	file := filepath.Join(t.TempDir(), "s.toml")
	os.WriteFile(file, []byte("port = 1\nmetrics_port = 2\nmax_rows = 3\ngrace_seconds = 4\nworkers = 9\n"), 0o644)
	env := []string{"VOLSPIKE_PORT=11", "VOLSPIKE_METRICS_PORT=12", "VOLSPIKE_CONSUMER_MAX_ROWS=7", "HOME=/x"}
	s, _, err := resolveSettings([]string{"--config", file, "--port", "21"}, env, "/root", io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if s.Port != 21 || s.MetricsPort != 12 || s.MaxRows != 3 || s.Grace != 4*time.Second {
		t.Errorf("flag > env > file: %+v", s)
	}
	if s.ReloadPoll != time.Second || s.ModelConfig != "/root/config/model.toml" || s.PidFile != "" {
		t.Errorf("defaults: %+v", s)
	}
}

func TestSettingsErrorsNameTheCulprit(t *testing.T) {
	file := filepath.Join(t.TempDir(), "s.toml")
	for _, c := range []struct {
		args, env  []string
		file, want string
	}{
		{nil, []string{"VOLSPIKE_PROT=1"}, "", "VOLSPIKE_PROT is not a setting (config/settings.toml); did you mean VOLSPIKE_PORT?"},
		{nil, []string{"VOLSPIKE_PORT=12x"}, "", `VOLSPIKE_PORT="12x" is not an integer`},
		{nil, []string{"VOLSPIKE_GRACE_SECONDS=inf"}, "", `VOLSPIKE_GRACE_SECONDS="inf" is not a number of seconds`},
		{nil, []string{"VOLSPIKE_PPROF=yes"}, "", `VOLSPIKE_PPROF="yes" is not true or false`},
		{nil, []string{"VOLSPIKE_MODELS_DIR="}, "", "VOLSPIKE_MODELS_DIR is empty; it must name a path"},
		{[]string{"--max-rows", "1e3"}, nil, "", `--max-rows="1e3" is not an integer`},
		{nil, nil, "prot = 1\n", "'prot' is not a setting (config/settings.toml)"},
		{nil, nil, "port = \"1\"\n", `port = "1" is not an integer`},
		{nil, nil, "host = 1\n", `host = 1 is not a string`},
	} {
		args := c.args
		if c.file != "" {
			os.WriteFile(file, []byte(c.file), 0o644)
			args = append(args, "--config", file)
		}
		_, _, err := resolveSettings(args, c.env, "/root", io.Discard)
		var bad errSettings
		if !errors.As(err, &bad) || !strings.HasSuffix(err.Error(), c.want) {
			t.Errorf("%v %v %q: got %v, want ...%s", c.args, c.env, c.file, err, c.want)
		}
	}
}

// TestModelConfigCases: the Python reader (config/model_config.py, tests/test_settings.py)
// gives the same answers for the same file of cases.
func TestModelConfigCases(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "..", "..", "config", "testdata", "model_config_cases.json"))
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Cases []struct {
			Text string
			Want *struct {
				Artifact  string
				ModelName string `json:"model_name"`
				Servable  []string
				Threshold map[string]float64 `json:"decision_threshold"`
			}
			Error       string
			ErrorStarts string `json:"error_starts"`
		}
	}
	if err := json.Unmarshal(raw, &file); err != nil {
		t.Fatal(err)
	}
	for _, c := range file.Cases {
		cfg, err := parseModelConfig(c.Text, "f.toml")
		switch {
		case c.Want != nil:
			if err != nil || cfg.Artifact != c.Want.Artifact || cfg.ModelName != c.Want.ModelName ||
				!slices.Equal(cfg.Servable, c.Want.Servable) && len(cfg.Servable)+len(c.Want.Servable) > 0 ||
				!maps.Equal(cfg.DecisionThreshold, c.Want.Threshold) {
				t.Errorf("%q: %+v, %v; want %+v", c.Text, cfg, err, *c.Want)
			}
		case c.Error != "":
			if err == nil || err.Error() != "f.toml: "+c.Error {
				t.Errorf("%q: %v; want %s", c.Text, err, c.Error)
			}
		default:
			if err == nil || !strings.HasPrefix(err.Error(), "f.toml: "+c.ErrorStarts) {
				t.Errorf("%q: %v; want %s...", c.Text, err, c.ErrorStarts)
			}
		}
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
	if cfg, err := ReadModelConfig(filepath.Join("..", "..", "..", "..", "config", "model.toml")); err != nil || cfg.ModelName == "" {
		t.Errorf("config/model.toml: %+v, %v", cfg, err)
	}
}

func TestServableListIsRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "model.toml")
	_ = os.WriteFile(path, []byte("artifact = \"a\"\nservable = [\"b\", \"a\", \"b\", \"c\"]\n"), 0o644)
	cfg, err := ReadModelConfig(path)
	if err != nil || cfg.Artifact != "a" || strings.Join(cfg.Servable, ",") != "b,c" {
		t.Fatalf("got %+v, %v", cfg, err)
	}
	_ = os.WriteFile(path, []byte("artifact = \"a\"\nservable = [\"\"]\n"), 0o644)
	if _, err := ReadModelConfig(path); err == nil {
		t.Fatal("an empty servable name must be refused")
	}
}
