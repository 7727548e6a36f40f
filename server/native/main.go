// volspike-server: the native front end of the volatility-spike service. Same
// contract, flags, metrics and model config as `python -m server`; one process uses
// every core.
package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"volspike/server/native/internal/config"
	"volspike/server/native/internal/telemetry"
)

func main() {
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, nil)))
	if err := run(config.Load()); err != nil {
		slog.Error("server failed", "error", err)
		os.Exit(1)
	}
}

func run(s config.Settings) error {
	// Signals first: a SIGHUP during the first load must mean "reload", not "terminate".
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	tp, err := telemetry.NewTracerProvider(context.Background())
	if err != nil {
		return err
	}
	defer tp.Shutdown(context.Background())
	app, err := NewApp(s, tp.Tracer("volspike.server"))
	if err != nil {
		return err // e.g. a port taken: the PID file still names the server that holds it
	}
	if s.PidFile != "" { // only once both ports are ours
		if err := os.MkdirAll(filepath.Dir(s.PidFile), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(s.PidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
			return err
		}
	}
	served := app.Start()
	lastMtime := mtime(s.ModelConfig) // before the load: a later edit is seen
	app.LoadConfigured()
	if app.registry.Active() == nil {
		slog.Error("no model could be loaded; serving health NOT_SERVING")
	}

	// Reload on SIGHUP or when the model config file changes; drain on SIGTERM/SIGINT.
	ticker := time.NewTicker(s.ReloadPoll)
	defer ticker.Stop()
	for {
		select {
		case err := <-served:
			return err
		case sig := <-signals:
			if sig != syscall.SIGHUP {
				return app.Drain(served)
			}
			lastMtime = mtime(s.ModelConfig)
			app.LoadConfigured()
		case <-ticker.C:
			if m := mtime(s.ModelConfig); m != lastMtime {
				lastMtime = m
				app.LoadConfigured()
			}
		}
	}
}

func mtime(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return -1
	}
	return st.ModTime().UnixNano()
}
