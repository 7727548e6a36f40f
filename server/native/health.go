package main

import (
	"context"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// drainableHealth is grpc-go's health server whose Watch streams end cleanly during a
// drain, once they have delivered NOT_SERVING (or after a second). GracefulStop waits for
// every stream, and a Watch stream otherwise never ends; stopping the server outright
// instead could cut off the tail of an answer still being sent.
type drainableHealth struct {
	*health.Server
	draining chan struct{}
}

func (h *drainableHealth) Watch(req *healthpb.HealthCheckRequest, stream healthpb.Health_WatchServer) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	ws := &watchStream{Health_WatchServer: stream, ctx: ctx}
	go func() {
		select {
		case <-h.draining:
		case <-ctx.Done():
			return
		}
		for deadline := time.Now().Add(time.Second); !ws.saidNotServing.Load() && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
	}()
	err := h.Server.Watch(req, ws)
	if stream.Context().Err() == nil && ctx.Err() != nil {
		return nil // ended by the drain: a normal end of stream for the client
	}
	return err
}

type watchStream struct {
	healthpb.Health_WatchServer
	ctx            context.Context
	saidNotServing atomic.Bool
}

func (w *watchStream) Context() context.Context { return w.ctx }

func (w *watchStream) Send(r *healthpb.HealthCheckResponse) error {
	err := w.Health_WatchServer.Send(r)
	if err == nil && r.Status == healthpb.HealthCheckResponse_NOT_SERVING {
		w.saidNotServing.Store(true)
	}
	return err
}
