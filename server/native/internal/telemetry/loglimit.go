package telemetry

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// LogLimiter lets at most one log line per cause through per interval; the next line of a
// cause that passes says how many of its lines were suppressed meanwhile. For lines a
// client can cause on every call: a storm of such calls must not flood the log (nor spend
// the server's time writing it). Causes must come from a bounded set (a method name, a fixed
// text), never from the request.
type LogLimiter struct {
	interval time.Duration
	now      func() time.Time

	mu     sync.Mutex
	causes map[string]*logCause
}

type logCause struct {
	last       time.Time // when a line of this cause last went through
	suppressed int       // lines held back since
}

// LogInterval: at most one line per cause per LogInterval.
const LogInterval = 10 * time.Second

// NewLogLimiter lets one line per cause through per interval.
func NewLogLimiter(interval time.Duration) *LogLimiter {
	return &LogLimiter{interval: interval, now: time.Now, causes: map[string]*logCause{}}
}

// allow: whether a line of cause may go through now and, if so, how many lines of it were
// suppressed since the last one that did.
func (l *LogLimiter) allow(cause string) (bool, int) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.causes[cause]
	if c == nil {
		l.causes[cause] = &logCause{last: now}
		return true, 0
	}
	if now.Sub(c.last) < l.interval {
		c.suppressed++
		return false, 0
	}
	n := c.suppressed
	c.last, c.suppressed = now, 0
	return true, n
}

// Log writes msg with args at level unless a line of cause went through less than an
// interval ago; a line that follows suppressed ones carries their count ("suppressed").
func (l *LogLimiter) Log(level slog.Level, cause, msg string, args ...any) {
	ok, n := l.allow(cause)
	if !ok {
		return
	}
	if n > 0 {
		args = append(args, "suppressed", n)
	}
	slog.Log(context.Background(), level, msg, args...)
}
