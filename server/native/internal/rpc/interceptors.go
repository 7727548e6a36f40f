package rpc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	grpccodes "google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"volspike/server/native/internal/contract"
	"volspike/server/native/internal/telemetry"
)

// Wrapper holds what the interceptors every call of our services goes through share: the
// metrics, the tracer and the W3C propagator. Calls of other services (health, reflection)
// carry no *Call and pass through untouched, so health checks never produce spans.
type Wrapper struct {
	metrics *telemetry.Metrics
	tracer  trace.Tracer
	prop    propagation.TextMapPropagator
	// methods: each method's in-flight gauge and span attributes, made once at registration
	// (Track) and only read afterwards.
	methods map[string]*methodState
}

type methodState struct {
	inFlight  prometheus.Gauge
	spanStart []trace.SpanStartOption // server kind and the rpc.* attributes
}

func NewWrapper(metrics *telemetry.Metrics, tracer trace.Tracer) *Wrapper {
	return &Wrapper{metrics: metrics, tracer: tracer, prop: propagation.TraceContext{}, methods: map[string]*methodState{}}
}

// Track makes each method's in-flight gauge (so /metrics lists every method from the start,
// as the Python server does) and span attributes. Before the server serves: not concurrent.
func (w *Wrapper) Track(methods []grpc.MethodDesc) []grpc.MethodDesc {
	for _, m := range methods {
		w.methods[m.MethodName] = &methodState{
			inFlight: w.metrics.InFlight(m.MethodName),
			spanStart: []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindServer),
				trace.WithAttributes(attribute.String("rpc.system", "grpc"), attribute.String("rpc.method", m.MethodName))},
		}
	}
	return methods
}

// Interceptors: the cross-cutting work of every call, outermost first, for
// grpc.ChainUnaryInterceptor. An interceptor chained after them runs inside them: its calls
// are timed, traced and counted, and an error it returns is mapped as a handler's is (a
// contract error, e.g. contract.ErrNotServed, keeps its code and kind; anything else is INTERNAL).
func (w *Wrapper) Interceptors() []grpc.UnaryServerInterceptor {
	return []grpc.UnaryServerInterceptor{w.recordCall, w.traceCall, mapErrors, checkDeadline}
}

// recordCall keeps the in-flight gauge and, once the call has ended, records the request and
// error counters, rows, and the latency (from the method handler's start, so reading the
// request is included) with a trace-id exemplar when the call is sampled.
func (w *Wrapper) recordCall(ctx context.Context, req any, _ *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
	call := CallOf(ctx)
	if call == nil {
		return next(ctx, req)
	}
	g := w.methods[call.Method].inFlight
	g.Inc()
	defer g.Dec()
	resp, err := next(ctx, req)
	elapsed := time.Since(call.start).Seconds()
	code, kind := codeName(grpccodes.OK), ""
	if f := call.Failed; f != nil {
		code, kind = codeName(f.Code), f.Kind
	}
	traceID := ""
	if sc := call.Span.SpanContext(); sc.IsSampled() {
		traceID = sc.TraceID().String()
	}
	w.metrics.RecordCall(call.Method, call.Artifact, code, kind, call.Rows, elapsed, traceID)
	return resp, err
}

// traceCall starts the server span, continuing the caller's W3C trace context (only
// `traceparent`/`tracestate` are read from the metadata), and ends it with the status code,
// the error kind, the artifact and the rows.
func (w *Wrapper) traceCall(ctx context.Context, req any, _ *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
	call := CallOf(ctx)
	if call == nil {
		return next(ctx, req)
	}
	if tp := metadata.ValueFromIncomingContext(ctx, "traceparent"); len(tp) > 0 {
		ctx = w.prop.Extract(ctx, traceHeaders{tp[0], metadata.ValueFromIncomingContext(ctx, "tracestate")})
	}
	ctx, span := w.tracer.Start(ctx, call.Full, w.methods[call.Method].spanStart...)
	defer span.End()
	call.Span = span
	resp, err := next(ctx, req)
	if span.IsRecording() { // an unsampled call's span records nothing: no attributes built
		endAttributes(span, call)
	}
	return resp, err
}

// endAttributes: the status, error kind, artifact and rows of a recorded call's span.
func endAttributes(span trace.Span, call *Call) {
	code := grpccodes.OK
	if f := call.Failed; f != nil {
		code = f.Code
		span.SetStatus(codes.Error, f.Msg)
		span.SetAttributes(attribute.String("error.type", f.Kind))
	}
	span.SetAttributes(attribute.Int("rpc.grpc.status_code", int(code)))
	if call.Artifact != "" {
		span.SetAttributes(attribute.String("volspike.artifact", call.Artifact))
	}
	if call.Rows > 0 {
		span.SetAttributes(attribute.Int("volspike.rows", call.Rows))
	}
}

// mapErrors is the one place an error becomes a gRPC status: a contract error keeps its
// code, kind and message (cut to contract.MessageChars); anything else, a panic included, is a bug:
// logged (at most once per method per interval: a client may cause it on every call, e.g.
// with a corrupt compressed request) and answered INTERNAL, as the Python server does. The
// status carries a google.rpc.ErrorInfo whose reason is the kind. A rejected call is logged
// with who sent it, unless the client gave up.
func mapErrors(ctx context.Context, req any, _ *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
	call := CallOf(ctx)
	if call == nil {
		return next(ctx, req)
	}
	resp, err := recovered(ctx, req, next, call.Full)
	if err == nil {
		return resp, nil
	}
	var se *contract.ServiceError
	if !errors.As(err, &se) {
		callLogs.Log(slog.LevelError, "failed "+call.Method, "call failed", "method", call.Method, "error", cutMessage(err.Error()))
		se = contract.ErrInternal().(*contract.ServiceError)
	}
	f := *se // the catalogue's error, its message cut as sent
	f.Msg = cutMessage(se.Msg)
	call.Failed = &f
	if f.Kind != "Cancelled" && f.Kind != "ClientDeadline" { // the client gave up: no rejection
		logRejected(ctx, call.Method, f.Kind, codeName(f.Code), f.Msg)
	}
	return nil, statusOf(f.Code, f.Kind, f.Msg)
}

// recovered runs next; a panic costs this one call (an error, so INTERNAL), never the server.
func recovered(ctx context.Context, req any, next grpc.UnaryHandler, full string) (resp any, err error) {
	defer func() {
		if p := recover(); p != nil {
			callLogs.Log(slog.LevelError, "panic "+full, "call panicked", "method", full, "panic", p, "stack", string(debug.Stack()))
			resp, err = nil, fmt.Errorf("panic: %v", p)
		}
	}()
	return next(ctx, req)
}

// statusOf is the status a failed call ends with: its code and message, and in its details a
// google.rpc.ErrorInfo with the kind as reason (proto/contract.toml [kinds]) in contract.ErrorDomain,
// so a client can branch on the kind without parsing the message.
func statusOf(code grpccodes.Code, kind, msg string) error {
	st := status.New(code, msg)
	if withInfo, err := st.WithDetails(&errdetails.ErrorInfo{Reason: kind, Domain: contract.ErrorDomain}); err == nil {
		st = withInfo
	}
	return st.Err()
}

// checkDeadline refuses a call whose deadline passed (or that was cancelled) before the
// server began it, notes a short deadline, and maps a handler's context error to the status
// it stands for. A request that was not read keeps its own error (readFailure already weighed
// the deadline), as the Python server checks a malformed request first.
func checkDeadline(ctx context.Context, req any, _ *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
	call := CallOf(ctx)
	if call == nil || call.unread != nil {
		return next(ctx, req)
	}
	if ctx.Err() != nil {
		if PastDeadline(ctx) {
			return nil, contract.ErrDeadlineBefore()
		}
		return nil, contract.ErrCancelledBefore()
	}
	if d, ok := ctx.Deadline(); ok {
		call.ShortDeadline = time.Until(d) < contract.ClientDeadlineFloorMs*time.Millisecond
	}
	resp, err := next(ctx, req)
	if err != nil {
		if se := (*contract.ServiceError)(nil); !errors.As(err, &se) {
			err = handlerFailure(call, err)
		}
	}
	return resp, err
}

// handlerFailure maps a handler's context error to the status it stands for (none does
// today; handlers return ServiceErrors): a deadline that passed or a cancel while the call
// was being served, as score reports them. Any other error is a bug: INTERNAL.
func handlerFailure(call *Call, err error) error {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return DeadlineScoring(call, call.Rows)
	case errors.Is(err, context.Canceled):
		return contract.ErrCancelledScoring(call.Rows)
	}
	return err
}

// ChildSpan starts a child of the call's span only when the call is sampled: unrecorded
// spans would cost more than the tree evaluation of one row.
func (w *Wrapper) ChildSpan(ctx context.Context, call *Call, name string, kv ...attribute.KeyValue) (end func()) {
	if !call.Span.IsRecording() {
		return func() {}
	}
	_, span := w.tracer.Start(ctx, name, trace.WithAttributes(kv...))
	return func() { span.End() }
}
