// Package metrics exposes the checkpoint's state to Prometheus: one small
// collector per source (the store's disk and event log, the revocation
// list, the lanes' cameras, the lanes' devices and gates, the sync with
// the authority), read at scrape time, and the decisions counted as they
// are made. internal/daemon imports it and serves it on [metrics] listen.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

const namespace = "checkpoint"

// Decisions counts decisions by outcome and whether they were recorded.
// It is a collector: register it where it is served.
type Decisions struct {
	*prometheus.CounterVec
}

// NewDecisions returns a decision counter at zero.
func NewDecisions() *Decisions {
	return &Decisions{prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "decisions_total",
		Help: "Decisions made, by outcome (pass, refuse, refer) and whether the event was recorded.",
	}, []string{"decision", "recorded"})}
}

// Add counts one decision.
func (d *Decisions) Add(decision string, recorded bool) {
	d.WithLabelValues(decision, fmt.Sprint(recorded)).Inc()
}

// Server serves /metrics.
type Server struct {
	reg *prometheus.Registry
	log *slog.Logger
}

// NewServer returns a server for reg.
func NewServer(reg *prometheus.Registry, log *slog.Logger) *Server {
	return &Server{reg: reg, log: log.With("component", "metrics")}
}

// Serve serves on ln until ctx ends, then closes it.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	s.log.Info("serving metrics", "addr", ln.Addr().String())
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics: %w", err)
	}
	return nil
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(prometheus.BuildFQName(namespace, "", name), help, labels, nil)
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func unixSeconds(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}
