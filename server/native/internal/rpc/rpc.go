// Package rpc is the path of one call of our services through grpc-go: the method table
// (services_gen.go, one handler per .proto method, written by python -m tools.gen_schema),
// the Call record, the raw codec that lets a malformed request be answered
// INVALID_ARGUMENT, and the interceptors every call goes through (interceptors.go:
// metrics, tracing, error mapping, deadlines). It imports contract and telemetry; the
// services (predict, kserve) import it.
package rpc

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

	"volspike/server/native/internal/contract"
	"volspike/server/native/internal/telemetry"
)

// rawRequest receives a request's bytes undecoded, so a malformed request becomes
// INVALID_ARGUMENT naming the message type instead of grpc-go's generic INTERNAL.
type rawRequest struct{ data []byte }

// rawCodec passes rawRequest through and delegates everything else to protobuf.
type rawCodec struct{ proto encoding.CodecV2 }

// Codec is the server's codec (grpc.ForceServerCodecV2): grpc-go's protobuf codec, except
// that our method handlers receive a request's bytes undecoded.
func Codec() encoding.CodecV2 { return rawCodec{proto: encoding.GetCodecV2("proto")} }

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
	// unread: the request could not be read or parsed (readFailure, contract.ErrMalformed); the
	// handler is not run and the call ends with this error.
	unread   error
	Span     trace.Span // a no-op span until traceCall starts the call's span
	Artifact string
	Rows     int
	// ShortDeadline: the call had less than contract.ClientDeadlineFloorMs of its deadline left when
	// the server began it; timing out while scoring is then the client's (ClientDeadline).
	ShortDeadline bool
	// Failed: set by mapErrors when the call failed: the code, kind and (cut) message sent.
	Failed *contract.ServiceError
}

// callKey carries a call's *Call in its context, from the method handler to the
// interceptors. A call without one is not of our services (health): they pass it on.
type callKey struct{}

// CallOf is the *Call of a call of our services, nil for any other (health, reflection).
func CallOf(ctx context.Context) *Call {
	c, _ := ctx.Value(callKey{}).(*Call)
	return c
}

// callLogs limits the per-call lines of the interceptors.
var callLogs = telemetry.NewLogLimiter(telemetry.LogInterval)

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
				call.unread = contract.ErrMalformed(typeName, err.Error())
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
	case PastDeadline(ctx), errors.Is(err, context.DeadlineExceeded), code == grpccodes.DeadlineExceeded:
		mapped = contract.ErrDeadlineBefore()
	case ctx.Err() != nil, errors.Is(err, context.Canceled), code == grpccodes.Canceled:
		mapped = contract.ErrCancelledBefore()
	case code == grpccodes.ResourceExhausted: // over the receive size limit
		mapped = contract.ErrRequestUnread(status.Convert(err).Message())
	}
	var se *contract.ServiceError
	if errors.As(mapped, &se) && slog.Default().Enabled(ctx, slog.LevelDebug) {
		callLogs.Log(slog.LevelDebug, "unread "+full+" "+se.Kind, "request not read", "method", full, "code", codeName(se.Code), "error", err)
	}
	return mapped
}

// DeadlineScoring: the deadline passed while the call was served; whose fault it is depends
// on how much of it was left when the server began (proto/contract.toml [limits]).
func DeadlineScoring(call *Call, rows int) error {
	if call.ShortDeadline {
		return contract.ErrClientDeadlineScoring(rows, contract.ClientDeadlineFloorMs)
	}
	return contract.ErrDeadlineScoring(rows)
}

// PastDeadline: the call's deadline has passed. A client whose deadline expires also resets
// the stream, so ctx.Err() may say Canceled first; the deadline decides, as in Python
// (server/predictor.py checks the time remaining before the call's activity).
func PastDeadline(ctx context.Context) bool {
	d, ok := ctx.Deadline()
	return ok && !time.Now().Before(d)
}

// cutMessage bounds a status message to contract.MessageChars characters (code points), the last
// three replaced by "..." when cut (proto/contract.toml [limits]), as the Python server does.
func cutMessage(msg string) string {
	if len(msg) <= contract.MessageChars { // bytes >= code points: nothing to cut
		return msg
	}
	n := 0
	for i := range msg { // i: the byte offset of each code point
		if n == contract.MessageChars-3 {
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
			return contract.Cut(v[0], contract.ModelCharsInError)
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

func newReq[T any, P interface {
	*T
	proto.Message
}]() P {
	return P(new(T))
}
