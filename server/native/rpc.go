package main

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

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

// Call is the record of one call of our services: the method handler makes it, the
// handler fills in what it served, and the interceptors (interceptors.go) read and complete it.
type Call struct {
	Method string // short name, e.g. Predict: the metric label
	Full   string // /service/method: the span name
	start  time.Time
	// unread: the request could not be read or parsed (readFailure, errMalformed); the
	// handler is not run and the call ends with this error.
	unread   error
	Span     trace.Span // a no-op span until traceCall starts the call's span
	Artifact string
	Rows     int
	// ShortDeadline: the call had less than clientDeadlineFloorMs of its deadline left when
	// the server began it; timing out while scoring is then the client's (ClientDeadline).
	ShortDeadline bool
	// Failed: set by mapErrors when the call failed: the code, kind and (cut) message sent.
	Failed *ServiceError
}

// callKey carries a call's *Call in its context, from the method handler to the
// interceptors. A call without one is not of our services (health): they pass it on.
type callKey struct{}

func callOf(ctx context.Context) *Call {
	c, _ := ctx.Value(callKey{}).(*Call)
	return c
}

// Handler serves one decoded request.
type Handler[Req proto.Message] func(ctx context.Context, call *Call, req Req) (proto.Message, error)

// unary is one method as grpc-go's generated code builds it, with two differences: the
// request bytes are parsed here (so malformed bytes are INVALID_ARGUMENT naming the message
// type, not grpc-go's generic INTERNAL), and a request that could not be read still goes
// through the interceptor chain, its error returned by the final handler, so it is counted,
// traced and mapped like any other failed call. The interceptor grpc-go passes is the
// server's whole chain (grpc.ChainUnaryInterceptor): ours (Wrapper.Interceptors) first.
func unary[Req proto.Message](service, method string, newReq func() Req, h Handler[Req]) grpc.MethodDesc {
	full := "/" + service + "/" + method
	typeName := string(newReq().ProtoReflect().Descriptor().FullName())
	noSpan := trace.SpanFromContext(context.Background())
	var info atomic.Pointer[grpc.UnaryServerInfo] // one per method: the service it is registered with
	return grpc.MethodDesc{
		MethodName: method,
		Handler: func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
			call := &Call{Method: method, Full: full, start: time.Now(), Span: noSpan}
			req := newReq()
			var raw rawRequest
			if err := dec(&raw); err != nil {
				call.unread = readFailure(ctx, err, full)
			} else if err := proto.Unmarshal(raw.data, req); err != nil {
				call.unread = errMalformed(typeName, err.Error())
			}
			handler := func(ctx context.Context, req any) (any, error) {
				if call.unread != nil {
					return nil, call.unread
				}
				return h(ctx, call, req.(Req))
			}
			if interceptor == nil {
				return handler(ctx, req)
			}
			in := info.Load()
			if in == nil {
				in = &grpc.UnaryServerInfo{Server: srv, FullMethod: full}
				info.Store(in)
			}
			return interceptor(context.WithValue(ctx, callKey{}, call), req, in, handler)
		},
	}
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
