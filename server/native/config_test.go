package main

import (
	"encoding/json"
	"errors"
	"io"
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
	raw, err := os.ReadFile(filepath.Join("..", "..", "config", "testdata", "model_config_cases.json"))
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
				!slices.Equal(cfg.Servable, c.Want.Servable) && len(cfg.Servable)+len(c.Want.Servable) > 0 {
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
