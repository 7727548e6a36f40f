package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// Settings: defaults < VOLSPIKE_* environment < command line, as in server/config.py.
type Settings struct {
	Host            string
	Port            int
	MetricsPort     int
	ModelsDir       string
	ModelConfig     string
	MaxRows         int
	MaxMessageBytes int
	ReloadPoll      time.Duration
	Grace           time.Duration
	MaxConnAge      time.Duration
	PidFile         string
	Pprof           bool
}

func loadSettings() Settings {
	env := func(name, def string) string {
		if v, ok := os.LookupEnv("VOLSPIKE_" + name); ok {
			return v
		}
		return def
	}
	num := func(name string, def int) int {
		v, err := strconv.Atoi(env(name, strconv.Itoa(def)))
		if err != nil {
			fmt.Fprintf(os.Stderr, "VOLSPIKE_%s: %v\n", name, err)
			os.Exit(2)
		}
		return v
	}
	secs := func(name string, def float64) float64 {
		v, err := strconv.ParseFloat(env(name, strconv.FormatFloat(def, 'f', -1, 64)), 64)
		if err != nil {
			fmt.Fprintf(os.Stderr, "VOLSPIKE_%s: %v\n", name, err)
			os.Exit(2)
		}
		return v
	}
	var s Settings
	root := repoRoot()
	flag.StringVar(&s.Host, "host", env("HOST", "127.0.0.1"), "address the gRPC server binds")
	flag.IntVar(&s.Port, "port", num("PORT", 50051), "gRPC port")
	flag.IntVar(&s.MetricsPort, "metrics-port", num("METRICS_PORT", 8000), "Prometheus /metrics port")
	flag.StringVar(&s.ModelsDir, "models-dir", env("MODELS_DIR", filepath.Join(root, "compiled_models")), "folder of compiled artifacts")
	flag.StringVar(&s.ModelConfig, "model-config", env("MODEL_CONFIG", filepath.Join(root, "config", "model.toml")), "TOML file naming the active artifact; watched")
	flag.IntVar(&s.MaxRows, "max-rows", num("MAX_ROWS", 100_000), "most rows per call")
	flag.IntVar(&s.MaxMessageBytes, "max-message-bytes", num("MAX_MESSAGE_BYTES", 64*1024*1024), "largest request accepted")
	poll := flag.Float64("reload-poll-seconds", secs("RELOAD_POLL_SECONDS", 1.0), "model config mtime check interval")
	grace := flag.Float64("grace-seconds", secs("GRACE_SECONDS", 10.0), "on SIGTERM, time for in-flight calls")
	age := flag.Float64("max-connection-age-seconds", secs("MAX_CONNECTION_AGE_SECONDS", 60.0), "close a client connection (GOAWAY) after this long, so clients re-balance over replicas")
	flag.StringVar(&s.PidFile, "pid-file", env("PID_FILE", ""), "where to write the PID (for make rollback)")
	flag.BoolVar(&s.Pprof, "pprof", false, "serve Go profiles on the metrics port (/debug/pprof/)")
	flag.Parse()
	s.ReloadPoll = time.Duration(*poll * float64(time.Second))
	s.Grace = time.Duration(*grace * float64(time.Second))
	s.MaxConnAge = time.Duration(*age * float64(time.Second))
	return s
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
