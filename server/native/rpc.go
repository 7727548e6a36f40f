package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	grpccodes "google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// ServiceError carries the gRPC status of a failed call; the wrapper maps it once.
type ServiceError struct {
	Code grpccodes.Code
	Kind string // error type label, e.g. InvalidArgument
	Msg  string
}

func (e *ServiceError) Error() string { return e.Msg }

// rawRequest receives a request's bytes undecoded, so a malformed request becomes
// INVALID_ARGUMENT naming the message type instead of grpc-go's generic INTERNAL.
type rawRequest struct{ data []byte }

// rawCodec passes rawRequest through and delegates everything else to protobuf.
type rawCodec struct{ proto encoding.CodecV2 }

func (c rawCodec) Marshal(v any) (mem.BufferSlice, error) { return c.proto.Marshal(v) }
func (c rawCodec) Name() string                           { return "proto" }
func (c rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if r, ok := v.(*rawRequest); ok {
		r.data = data.Materialize()
		return nil
	}
	return c.proto.Unmarshal(data, v)
}

// Call is what a handler tells the wrapper about the call it served.
type Call struct {
	Span     trace.Span
	Artifact string
	Rows     int
	// ShortDeadline: the call had less than clientDeadlineFloorMs of its deadline left when
	// the server began it; timing out while scoring is then the client's (ClientDeadline).
	ShortDeadline bool
}

// Handler serves one decoded request.
type Handler[Req proto.Message] func(ctx context.Context, call *Call, req Req) (proto.Message, error)

// Wrapper: the one place every RPC goes through - server span continuing the caller's
// W3C trace context, error mapping, and the per-call metrics with a trace-id exemplar.
// Only our own services are wrapped, so health checks never produce spans.
type Wrapper struct {
	metrics *Metrics
	tracer  trace.Tracer
	prop    propagation.TextMapPropagator
}

func unary[Req proto.Message](w *Wrapper, service, method string, newReq func() Req, h Handler[Req]) grpc.MethodDesc {
	full := "/" + service + "/" + method
	typeName := string(newReq().ProtoReflect().Descriptor().FullName())
	inFlight := w.metrics.inFlight.WithLabelValues(method)
	attrs := trace.WithAttributes(attribute.String("rpc.system", "grpc"), attribute.String("rpc.method", method))
	return grpc.MethodDesc{
		MethodName: method,
		Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			t0 := time.Now()
			inFlight.Inc()
			defer inFlight.Dec()
			if tp := metadata.ValueFromIncomingContext(ctx, "traceparent"); len(tp) > 0 {
				ctx = w.prop.Extract(ctx, traceHeaders{tp[0], metadata.ValueFromIncomingContext(ctx, "tracestate")})
			}
			ctx, span := w.tracer.Start(ctx, full, trace.WithSpanKind(trace.SpanKindServer), attrs)
			defer span.End()
			call := &Call{Span: span}
			resp, err := serve(ctx, call, dec, typeName, newReq, h, full)
			return resp, w.finish(ctx, method, call, err, time.Since(t0).Seconds())
		},
	}
}

// serve decodes the request bytes, checks the call is still wanted and runs the handler.
func serve[Req proto.Message](ctx context.Context, call *Call, dec func(any) error, typeName string,
	newReq func() Req, h Handler[Req], full string) (resp proto.Message, err error) {
	defer func() { // a bug must cost one call (INTERNAL), never the server
		if p := recover(); p != nil {
			callLogs.Log(slog.LevelError, "panic "+full, "call panicked", "method", full, "panic", p, "stack", string(debug.Stack()))
			resp, err = nil, fmt.Errorf("panic: %v", p)
		}
	}()
	var raw rawRequest
	if err := dec(&raw); err != nil {
		return nil, readFailure(ctx, err, full)
	}
	req := newReq()
	if err := proto.Unmarshal(raw.data, req); err != nil {
		return nil, errMalformed(typeName, err.Error())
	}
	if ctx.Err() != nil {
		if pastDeadline(ctx) {
			return nil, errDeadlineBefore()
		}
		return nil, errCancelledBefore()
	}
	if d, ok := ctx.Deadline(); ok {
		call.ShortDeadline = time.Until(d) < clientDeadlineFloorMs*time.Millisecond
	}
	resp, err = h(ctx, call, req)
	var se *ServiceError
	if err != nil && !errors.As(err, &se) {
		err = handlerFailure(call, err)
	}
	return resp, err
}

// readFailure maps a request grpc-go could not read to the status the client sees, counted
// as such rather than as the server's INTERNAL: its deadline had passed or it went away
// before the server read the call (ClientDeadline, Cancelled), or the request exceeds the
// receive limit (ResourceExhausted, grpc-go's message). Anything else (a corrupt compressed
// request) stays INTERNAL.
func readFailure(ctx context.Context, err error, full string) error {
	mapped := err
	code := grpccodes.Unknown
	if st, ok := status.FromError(err); ok {
		code = st.Code()
	}
	switch {
	case pastDeadline(ctx), errors.Is(err, context.DeadlineExceeded), code == grpccodes.DeadlineExceeded:
		mapped = errDeadlineBefore()
	case ctx.Err() != nil, errors.Is(err, context.Canceled), code == grpccodes.Canceled:
		mapped = errCancelledBefore()
	case code == grpccodes.ResourceExhausted: // over the receive size limit
		mapped = errRequestUnread(status.Convert(err).Message())
	}
	var se *ServiceError
	if errors.As(mapped, &se) && slog.Default().Enabled(ctx, slog.LevelDebug) {
		callLogs.Log(slog.LevelDebug, "unread "+full+" "+se.Kind, "request not read", "method", full, "code", codeName(se.Code), "error", err)
	}
	return mapped
}

// handlerFailure maps a handler's context error to the status it stands for (none does
// today; handlers return ServiceErrors): a deadline that passed or a cancel while the call
// was being served, as score reports them. Any other error is a bug: INTERNAL.
func handlerFailure(call *Call, err error) error {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return deadlineScoring(call, call.Rows)
	case errors.Is(err, context.Canceled):
		return errCancelledScoring(call.Rows)
	}
	return err
}

// deadlineScoring: the deadline passed while the call was served; whose fault it is depends
// on how much of it was left when the server began (proto/contract.toml [limits]).
func deadlineScoring(call *Call, rows int) error {
	if call.ShortDeadline {
		return errClientDeadlineScoring(rows, clientDeadlineFloorMs)
	}
	return errDeadlineScoring(rows)
}

// pastDeadline: the call's deadline has passed. A client whose deadline expires also resets
// the stream, so ctx.Err() may say Canceled first; the deadline decides, as in Python
// (server/predictor.py checks the time remaining before the call's activity).
func pastDeadline(ctx context.Context) bool {
	d, ok := ctx.Deadline()
	return ok && !time.Now().Before(d)
}

// finish maps the handler's error to a gRPC status and records the call: span attributes,
// error and request counters, rows, and the latency with a trace-id exemplar when sampled.
func (w *Wrapper) finish(ctx context.Context, method string, call *Call, err error, elapsed float64) error {
	span, code := call.Span, grpccodes.OK
	if err != nil {
		var se *ServiceError
		if !errors.As(err, &se) {
			// A bug (or a request grpc-go could not read for another reason than the
			// client's: serve maps those): logged, answered INTERNAL as the Python server
			// does. Logged at most once per method per interval: a client may cause it on
			// every call (a corrupt compressed request).
			callLogs.Log(slog.LevelError, "failed "+method, "call failed", "method", method, "error", cutMessage(err.Error()))
			se = errInternal().(*ServiceError)
		}
		code = se.Code
		msg := cutMessage(se.Msg)
		w.metrics.errors.WithLabelValues(method, codeName(code), se.Kind).Inc()
		if se.Kind != "Cancelled" && se.Kind != "ClientDeadline" { // the client gave up: no rejection
			logRejected(ctx, method, se.Kind, codeName(code), msg)
		}
		span.SetStatus(codes.Error, msg)
		span.SetAttributes(attribute.String("error.type", se.Kind))
		err = status.Error(se.Code, msg)
	}
	span.SetAttributes(attribute.Int("rpc.grpc.status_code", int(code)))
	if call.Artifact != "" {
		span.SetAttributes(attribute.String("volspike.artifact", call.Artifact))
	}
	if call.Rows > 0 {
		span.SetAttributes(attribute.Int("volspike.rows", call.Rows))
		w.metrics.rows.WithLabelValues(method).Observe(float64(call.Rows))
	}
	obs := w.metrics.latency.WithLabelValues(method, call.Artifact, codeName(code))
	if sc := span.SpanContext(); sc.IsSampled() {
		obs.(prometheus.ExemplarObserver).ObserveWithExemplar(elapsed, prometheus.Labels{"trace_id": sc.TraceID().String()})
	} else {
		obs.Observe(elapsed)
	}
	w.metrics.requests.WithLabelValues(method, codeName(code)).Inc()
	return err
}

// cutMessage bounds a status message to messageChars characters (code points), the last
// three replaced by "..." when cut (proto/contract.toml [limits]), as the Python server does.
func cutMessage(msg string) string {
	if len(msg) <= messageChars { // bytes >= code points: nothing to cut
		return msg
	}
	n := 0
	for i := range msg { // i: the byte offset of each code point
		if n == messageChars-3 {
			if utf8.RuneCountInString(msg[i:]) <= 3 {
				return msg
			}
			return msg[:i] + "..."
		}
		n++
	}
	return msg
}

// logRejected writes one line per rejected call (at most one per method and kind per
// interval, then the count suppressed) with who sent it: the peer address and the client's
// name (`x-client-name` metadata, else its user-agent), so "fix the caller" can be acted on.
// Python logs the same fields (server/rpc.py).
func logRejected(ctx context.Context, method, kind, code, msg string) {
	addr := "unknown"
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		addr = p.Addr.String()
	}
	callLogs.Log(slog.LevelWarn, "rejected "+method+" "+kind, "call rejected", "method", method,
		"code", code, "type", kind, "peer", addr, "client", clientName(ctx), "message", msg)
}

// clientName: the caller's `x-client-name` metadata, else its user-agent, cut to 64 characters.
func clientName(ctx context.Context) string {
	for _, key := range []string{"x-client-name", "user-agent"} {
		if v := metadata.ValueFromIncomingContext(ctx, key); len(v) > 0 && v[0] != "" {
			return cut(v[0], modelCharsInError)
		}
	}
	return "unknown"
}

// codeNames spell codes as Python's grpc.StatusCode names do (OK, INVALID_ARGUMENT).
var codeNames = func() [17]string {
	var names [17]string
	for c := range names {
		s := grpccodes.Code(c).String()
		var b strings.Builder
		for i, r := range s {
			if i > 0 && r >= 'A' && r <= 'Z' && s != "OK" {
				b.WriteByte('_')
			}
			b.WriteRune(r)
		}
		names[c] = strings.ToUpper(b.String())
	}
	names[grpccodes.Canceled] = "CANCELLED" // grpc-go spells it Canceled
	return names
}()

func codeName(c grpccodes.Code) string {
	if int(c) < len(codeNames) {
		return codeNames[c]
	}
	return c.String()
}

// childSpan starts a child of the call's span only when the call is sampled: unrecorded
// spans would cost more than the tree evaluation of one row.
func (w *Wrapper) childSpan(ctx context.Context, call *Call, name string, kv ...attribute.KeyValue) (end func()) {
	if !call.Span.IsRecording() {
		return func() {}
	}
	_, span := w.tracer.Start(ctx, name, trace.WithAttributes(kv...))
	return func() { span.End() }
}

// traceHeaders carries the W3C headers of one call. Reading just these two instead of
// copying the whole metadata map (metadata.FromIncomingContext) was 20 % of a one-row call
// when first profiled; re-measured with today's grpc-go it is within noise (docs/benchmarks.md).
type traceHeaders struct {
	parent string
	state  []string
}

func (h traceHeaders) Get(key string) string {
	switch key {
	case "traceparent":
		return h.parent
	case "tracestate":
		if len(h.state) > 0 {
			return h.state[0]
		}
	}
	return ""
}
func (h traceHeaders) Set(string, string) {}
func (h traceHeaders) Keys() []string     { return []string{"traceparent", "tracestate"} }
