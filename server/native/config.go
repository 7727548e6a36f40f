package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// settingSpec is one setting of config/settings.toml (settings_gen.go lists the native
// server's). The Python loader (config/settings.py) reads the same schema the same way.
type settingSpec struct {
	Name, Env, Flag, Type, Default, Doc string
}

// errSettings is a setting that cannot be used: exit 2, naming it.
type errSettings struct{ msg string }

func (e errSettings) Error() string { return e.msg }

func settingsErr(format string, args ...any) error {
	return errSettings{fmt.Sprintf(format, args...)}
}

var (
	intRe   = regexp.MustCompile(`^[+-]?[0-9]+$`)
	floatRe = regexp.MustCompile(`^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$`)
	want    = map[string]string{"int": "an integer", "float": "a number", "seconds": "a number of seconds",
		"bool": "true or false", "str": "a string", "path": "a path"}
)

// parseSetting reads raw as the spec's type, accepting exactly what config/settings.py
// accepts; source names where raw came from (a flag, a variable, a file key).
func parseSetting(spec settingSpec, raw, source string) (any, error) {
	bad := settingsErr("%s=%s is not %s", source, jsonQuote(raw), want[spec.Type])
	switch spec.Type {
	case "int":
		if !intRe.MatchString(raw) {
			return nil, bad
		}
		v, err := strconv.Atoi(raw)
		if err != nil {
			return nil, bad
		}
		return v, nil
	case "float", "seconds":
		if !floatRe.MatchString(raw) {
			return nil, bad
		}
		v, err := strconv.ParseFloat(raw, 64)
		if err != nil {
			return nil, bad
		}
		if spec.Type == "seconds" {
			return time.Duration(v * float64(time.Second)), nil
		}
		return v, nil
	case "bool":
		switch strings.ToLower(raw) {
		case "true", "1":
			return true, nil
		case "false", "0":
			return false, nil
		}
		return nil, bad
	case "path":
		if raw == "" && spec.Default != "" {
			return nil, settingsErr("%s is empty; it must name a path", source)
		}
		return raw, nil
	}
	return raw, nil
}

// jsonQuote spells s as Python's json.dumps(s, ensure_ascii=False) does (messages of both
// servers are compared).
func jsonQuote(s string) string { return jsonValue(s) }

func jsonValue(v any) string {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if enc.Encode(v) != nil {
		return fmt.Sprint(v)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// checkEnviron: every VOLSPIKE_* variable must be a setting of the schema (of any
// component: one environment may serve the server and the consumer).
func checkEnviron(environ []string) error {
	var names []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "VOLSPIKE_") && !schemaEnv[name] {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return nil
	}
	sort.Strings(names)
	return settingsErr("%s is not a setting (config/settings.toml)%s", names[0], closest(names[0]))
}

// closest suggests the schema's variable nearest to a misspelt one: the highest share of
// the two names in their longest common subsequence (ties to the first in order), if at
// least 0.6; the Python loader computes the same.
func closest(name string) string {
	known := make([]string, 0, len(schemaEnv))
	for k := range schemaEnv {
		known = append(known, k)
	}
	sort.Strings(known)
	best, score := "", 0.6
	for _, k := range known {
		r := 2 * float64(common(name, k)) / float64(len(name)+len(k))
		if r > score || (r == score && best == "") {
			best, score = k, r
		}
	}
	if best == "" {
		return ""
	}
	return "; did you mean " + best + "?"
}

// common: the length of the longest common subsequence of a and b.
func common(a, b string) int {
	prev := make([]int, len(b)+1)
	for i := range a {
		cur := make([]int, len(b)+1)
		for j := range b {
			if a[i] == b[j] {
				cur[j+1] = prev[j] + 1
			} else {
				cur[j+1] = max(prev[j+1], cur[j])
			}
		}
		prev = cur
	}
	return prev[len(b)]
}

// readSettingsFile: a settings file's values for the native server. A key of another
// component's setting is left to it; a key of no setting, or a value of the wrong TOML
// type, is an error.
func readSettingsFile(path string) (map[string]any, error) {
	var data map[string]any
	if _, err := toml.DecodeFile(path, &data); err != nil {
		return nil, settingsErr("settings file %s: %v", path, err)
	}
	out := map[string]any{}
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, key := range keys {
		if !schemaNames[key] {
			return nil, settingsErr("%s: '%s' is not a setting (config/settings.toml)", path, key)
		}
		i := slices.IndexFunc(nativeSettings, func(s settingSpec) bool { return s.Name == key })
		if i < 0 {
			continue
		}
		spec, value := nativeSettings[i], data[key]
		raw, ok := fileValue(spec.Type, value)
		if !ok {
			return nil, settingsErr("%s: %s = %s is not %s", path, key, jsonValue(value), want[spec.Type])
		}
		v, err := parseSetting(spec, raw, path+": "+key)
		if err != nil {
			return nil, err
		}
		out[key] = v
	}
	return out, nil
}

// fileValue: a TOML value as the flag would spell it, if its TOML type suits the setting's
// type (an integer is a fine number of seconds).
func fileValue(kind string, value any) (string, bool) {
	switch v := value.(type) {
	case string:
		return v, kind == "str" || kind == "path"
	case int64:
		return strconv.FormatInt(v, 10), kind == "int" || kind == "float" || kind == "seconds"
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64), kind == "float" || kind == "seconds"
	case bool:
		return strconv.FormatBool(v), kind == "bool"
	}
	return "", false
}

// rawFlag keeps a flag's text; resolveSettings parses it (one message per bad value).
type rawFlag struct {
	value  string
	isBool bool
}

func (f *rawFlag) String() string     { return f.value }
func (f *rawFlag) Set(v string) error { f.value = v; return nil }
func (f *rawFlag) IsBoolFlag() bool   { return f.isBool }

// resolveSettings: flag > VOLSPIKE_* variable > --config file > default, the precedence of
// config/settings.py; printOnly is --print-settings.
func resolveSettings(args, environ []string, root string, usage io.Writer) (s Settings, printOnly bool, err error) {
	fs := flag.NewFlagSet("volspike-server", flag.ContinueOnError)
	fs.SetOutput(usage)
	config := fs.String("config", "", "TOML settings file (name = value lines)")
	fs.BoolVar(&printOnly, "print-settings", false, "print the effective settings as JSON; exit")
	flags := map[string]*rawFlag{}
	for _, spec := range nativeSettings {
		f := &rawFlag{isBool: spec.Type == "bool"}
		flags[spec.Name] = f
		fs.Var(f, spec.Flag, fmt.Sprintf("%s [%s; default %q]", spec.Doc, spec.Env, spec.Default))
	}
	if err := fs.Parse(args); err != nil {
		return s, false, err
	}
	if fs.NArg() > 0 {
		return s, false, settingsErr("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if err := checkEnviron(environ); err != nil {
		return s, false, err
	}
	env := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	fromFile := map[string]any{}
	if *config != "" {
		if fromFile, err = readSettingsFile(*config); err != nil {
			return s, false, err
		}
	}
	for _, spec := range nativeSettings {
		var v any
		if set[spec.Flag] {
			v, err = parseSetting(spec, flags[spec.Name].value, "--"+spec.Flag)
		} else if raw, ok := env[spec.Env]; ok {
			v, err = parseSetting(spec, raw, spec.Env)
		} else if fv, ok := fromFile[spec.Name]; ok {
			v = fv
		} else {
			v, err = parseSetting(spec, spec.Default, "default of "+spec.Name)
			if spec.Type == "path" && spec.Default != "" {
				v = filepath.Join(root, spec.Default)
			}
		}
		if err != nil {
			return s, false, err
		}
		s.set(spec.Name, v)
	}
	return s, printOnly, nil
}

// loadSettings: the process's settings; a bad one exits 2 naming it, --print-settings
// prints them as JSON (as the Python server does) and exits 0.
func loadSettings() Settings {
	s, printOnly, err := resolveSettings(os.Args[1:], os.Environ(), repoRoot(), os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	var bad errSettings
	if errors.As(err, &bad) {
		fmt.Fprintf(os.Stderr, "settings: %v\n", err)
		os.Exit(2)
	}
	if err != nil { // the flag package has printed the problem and the usage
		os.Exit(2)
	}
	if printOnly {
		out, _ := json.Marshal(s.values()) // map keys sorted, as the Python server's
		fmt.Println(string(out))
		os.Exit(0)
	}
	return s
}

// nullable: an unset path prints as null.
func nullable(path string) any {
	if path == "" {
		return nil
	}
	return path
}

// repoRoot is the checkout the binary was built in (server/native/volspike-server), so the
// default models dir and model config do not depend on the working directory, as the
// Python server's do not (they are relative to its package).
func repoRoot() string {
	exe, err := os.Executable()
	if err != nil {
		return "."
	}
	if real, err := filepath.EvalSymlinks(exe); err == nil {
		exe = real
	}
	return filepath.Clean(filepath.Join(filepath.Dir(exe), "..", ".."))
}

// ModelConfig is the model config file (config/model.toml; .run/model.toml under make).
type ModelConfig struct {
	Artifact string   // the active artifact
	Servable []string // further artifacts loaded and answerable by name
	// The name the service answers under whatever artifact is active (default "volspike").
	ModelName string
}

var modelConfigKeys = []string{"artifact", "servable", "model_name"}

// ReadModelConfig parses the model config; a half-written or wrong file is an error. The
// Python reader (config/model_config.py) gives the same result or message for every case of
// config/testdata/model_config_cases.json (TestModelConfigCases).
func ReadModelConfig(path string) (ModelConfig, error) {
	text, err := os.ReadFile(path)
	if err != nil {
		return ModelConfig{}, err
	}
	return parseModelConfig(string(text), path)
}

func parseModelConfig(text, where string) (ModelConfig, error) {
	var cfg ModelConfig
	var data map[string]any
	if _, err := toml.Decode(text, &data); err != nil {
		return cfg, fmt.Errorf("%s: not TOML: %w", where, err)
	}
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !slices.Contains(modelConfigKeys, k) {
			return cfg, fmt.Errorf("%s: '%s' is not a model config key ['artifact', 'servable', 'model_name']", where, k)
		}
	}
	name, ok := data["artifact"].(string)
	if !ok || name == "" {
		return cfg, fmt.Errorf("%s: 'artifact' must name a compiled artifact", where)
	}
	var servable []string
	if raw, present := data["servable"]; present {
		list, ok := raw.([]any)
		if !ok {
			return cfg, fmt.Errorf("%s: 'servable' must be a list of artifact names", where)
		}
		for _, item := range list {
			s, ok := item.(string)
			if !ok || s == "" {
				return cfg, fmt.Errorf("%s: 'servable' must be a list of artifact names", where)
			}
			if s != name && !slices.Contains(servable, s) {
				servable = append(servable, s)
			}
		}
	}
	modelName := defaultModelName
	if raw, present := data["model_name"]; present {
		if modelName, ok = raw.(string); !ok || modelName == "" {
			return cfg, fmt.Errorf("%s: 'model_name' must be a non-empty string", where)
		}
	}
	if modelName == name || slices.Contains(servable, modelName) {
		return cfg, fmt.Errorf("%s: 'model_name' %s is an artifact of this config: a call by that name could not reach it", where, jsonQuote(modelName))
	}
	return ModelConfig{Artifact: name, Servable: servable, ModelName: modelName}, nil
}

// ActiveArtifact reads the artifact named by the model config file (TOML: artifact = "name").
func ActiveArtifact(path string) (string, error) {
	cfg, err := ReadModelConfig(path)
	return cfg.Artifact, err
}
