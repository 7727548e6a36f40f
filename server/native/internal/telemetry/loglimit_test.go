package telemetry

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// captureLogs sends slog's default logger to a buffer for the test.
func captureLogs(t *testing.T) *bytes.Buffer {
	var buf bytes.Buffer
	saved := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&buf, nil)))
	t.Cleanup(func() { slog.SetDefault(saved) })
	return &buf
}

func TestLogLimiterLetsOneLinePerCausePerInterval(t *testing.T) {
	now := time.Unix(1000, 0)
	l := NewLogLimiter(10 * time.Second)
	l.now = func() time.Time { return now }
	logs := captureLogs(t)
	for range 5 {
		l.Log(slog.LevelError, "a", "line a", "n", 1)
	}
	l.Log(slog.LevelError, "b", "line b") // another cause is not held back by a's
	now = now.Add(9 * time.Second)
	l.Log(slog.LevelError, "a", "line a")
	now = now.Add(time.Second)
	l.Log(slog.LevelError, "a", "line a")
	l.Log(slog.LevelError, "a", "line a")
	now = now.Add(11 * time.Second)
	l.Log(slog.LevelError, "a", "line a")
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	want := []string{"msg=\"line a\" n=1", "msg=\"line b\"", "msg=\"line a\" suppressed=5", "msg=\"line a\" suppressed=1"}
	if len(lines) != len(want) {
		t.Fatalf("got %d lines:\n%s", len(lines), logs)
	}
	for i, w := range want {
		if !strings.HasSuffix(lines[i], w) {
			t.Errorf("line %d: %q, want ...%q", i, lines[i], w)
		}
	}
}
