// Package localapi is checkpointd's API for supervisors: the status of
// the box, the event log a page at a time, figures per hour or day, signed
// exports, the check of the hash chain, a sync now and the retention
// applied now. It is served on a Unix socket on the box (mode 0660, its
// group's members, root and the daemon's own user may connect; the peer's
// user is taken from the socket) and, when configured, over HTTPS on the
// local network with a self-signed certificate whose fingerprint the
// client pins.
//
// Every request is authenticated (HTTP Basic, Argon2id hashes in the
// configuration) before any work; wrong passwords lock an account for a
// while and are limited per source. Every reading of the log, every sync
// and purge and every refused attempt is itself recorded in the log, as an
// event of kind "audit", so that it is synced to the authority like any
// event. What is served is read-only, but for sync and purge.
//
// internal/daemon serves it (it implements Backend with the running
// checkpoint); checkpointctl is its client (Client), and serves the same
// handlers in-process on a database file opened read-only (NewPipeClient).
package localapi

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	stdsync "sync"
	"time"

	"github.com/checkpointd/checkpoint/internal/clock"
	"github.com/checkpointd/checkpoint/internal/passhash"
	"github.com/checkpointd/checkpoint/store"
	"github.com/checkpointd/checkpoint/sync"
	"github.com/checkpointd/checkpoint/verify"
)

// Backend is the running checkpoint, for what only it knows.
type Backend interface {
	// Now is the checkpoint's time estimate, which audit events carry.
	Now() verify.Instant
	// Describe fills in the parts of the status the store does not hold:
	// the lanes, the sync, the trust list, the clock.
	Describe(st *Status)
	// Sync runs a sync with the authority now and returns how syncing
	// fares; ErrNoSync when there is no authority.
	Sync(ctx context.Context) (sync.Status, error)
}

// ErrNoSync is Backend.Sync's answer when there is no authority to sync
// with.
var ErrNoSync = errors.New("no authority to sync with")

// Supervisor is an account.
type Supervisor struct {
	Name     string
	Password string // passhash.Hash's output
	// BoxKey is the supervisor's X25519 public key: exports for this
	// account leave the box encrypted to it. Nil: in the clear.
	BoxKey *[32]byte
}

// Peer is the process at the other end of the Unix socket.
type Peer struct {
	UID, GID uint32
	PID      int32
	User     string // the user's name; its uid when it has none
}

// Config configures a Server.
type Config struct {
	Checkpoint  string // the checkpoint's name, in audit events and manifests
	Supervisors []Supervisor
	// Group is the group whose members may use the socket, beside root
	// and the daemon's own user.
	Group string
	// Retention is what a purge keeps ([store] retention); 0: 14 days.
	Retention time.Duration
	// LockAfter wrong passwords in a row lock an account for LockFor;
	// 0: 5 and 5 minutes.
	LockAfter int
	LockFor   time.Duration
	// SourceFailures wrong passwords from one source (an HTTPS client's
	// address, an IPv6 /64; a local user) are answered as such, and one
	// more every SourceEvery; beyond, 429 without checking. 0: 10, one a
	// minute.
	SourceFailures int
	SourceEvery    time.Duration
	// MaxConns bounds the connections open at once on each listener;
	// 0: 16.
	MaxConns int
	// DeviceKey signs exports' manifests; nil: exports are refused.
	DeviceKey ed25519.PrivateKey
	// Fingerprint is the HTTPS certificate's, for the status; empty: no
	// HTTPS.
	Fingerprint string
	// Offline serves without accounts and without audit: checkpointctl
	// on a database file opened read-only, in its own process
	// (NewPipeClient). Such a server refuses to listen.
	Offline bool

	// Peer names the process at the other end of a Unix socket
	// connection; nil: SO_PEERCRED and the user database.
	Peer func(net.Conn) (Peer, error)
	// Member reports whether a peer belongs to group; nil: the group
	// database.
	Member func(p Peer, group string) bool
	// UID is the daemon's own user; nil: os.Getuid.
	UID func() uint32
}

// Server serves the API.
type Server struct {
	cfg     Config
	box     *store.Box
	backend Backend
	clock   clock.Clock
	log     *slog.Logger
	guard   *guard
	mux     *http.ServeMux
}

// New returns a server of box's log. It refuses a supervisor without a
// password hash it can check: there is no default password.
func New(cfg Config, box *store.Box, b Backend, clk clock.Clock, log *slog.Logger) (*Server, error) {
	if clk == nil {
		clk = clock.System{}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Retention <= 0 {
		cfg.Retention = 14 * 24 * time.Hour
	}
	if cfg.LockAfter <= 0 {
		cfg.LockAfter = 5
	}
	if cfg.LockFor <= 0 {
		cfg.LockFor = 5 * time.Minute
	}
	if cfg.SourceFailures <= 0 {
		cfg.SourceFailures = 10
	}
	if cfg.SourceEvery <= 0 {
		cfg.SourceEvery = time.Minute
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 16
	}
	if cfg.Peer == nil {
		cfg.Peer = peerCred
	}
	if cfg.Member == nil {
		cfg.Member = memberOf
	}
	if cfg.UID == nil {
		cfg.UID = func() uint32 { return uint32(os.Getuid()) }
	}
	accounts := map[string]*Supervisor{}
	for i := range cfg.Supervisors {
		s := &cfg.Supervisors[i]
		if s.Name == "" {
			return nil, fmt.Errorf("localapi: supervisor %d has no name", i+1)
		}
		if err := passhash.Check(s.Password); err != nil {
			return nil, fmt.Errorf("localapi: supervisor %q: password: %w", s.Name, err)
		}
		if accounts[s.Name] != nil {
			return nil, fmt.Errorf("localapi: supervisor %q twice", s.Name)
		}
		accounts[s.Name] = s
	}
	if !cfg.Offline && len(accounts) == 0 {
		return nil, errors.New("localapi: no supervisor accounts")
	}
	s := &Server{cfg: cfg, box: box, backend: b, clock: clk, log: log.With("component", "localapi")}
	s.guard = newGuard(cfg, accounts, clk)
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("GET /v1/status", s.handleStatus)
	s.mux.HandleFunc("GET /v1/logs", s.handleLogs)
	s.mux.HandleFunc("GET /v1/stats", s.handleStats)
	s.mux.HandleFunc("GET /v1/export", s.handleExport)
	s.mux.HandleFunc("GET /v1/verify-log", s.handleVerifyLog)
	s.mux.HandleFunc("POST /v1/sync", s.handleSync)
	s.mux.HandleFunc("POST /v1/purge", s.handlePurge)
	return s, nil
}

// maxBody bounds a request's body: the API takes none worth the name.
const maxBody = 4 << 10

// Timeouts of a connection. An answer is given writeTimeout to go out;
// an export, longer, as long as it keeps moving; a sync, syncTimeout.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	idleTimeout       = 60 * time.Second
	writeTimeout      = 60 * time.Second
	syncTimeout       = 15 * time.Minute
)

// Handler is the API: every request authenticated first (but on an
// offline server), then served.
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		// A network deadline: real time, not the injected clock.
		http.NewResponseController(w).SetWriteDeadline(time.Now().Add(writeTimeout))
		c := caller{who: "offline", user: "offline"}
		if !s.cfg.Offline {
			var ok bool
			if c, ok = s.authenticate(w, r); !ok {
				return
			}
		}
		s.mux.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, c)))
	})
}

// serve serves on ln until ctx ends, then lets the requests in progress
// finish for a few seconds, closes their connections, and returns once
// their handlers have returned (the store is closed after).
func (s *Server) serve(ctx context.Context, ln net.Listener, what string, connContext func(context.Context, net.Conn) context.Context,
	tlsConfig *tls.Config) error {
	if s.cfg.Offline {
		return errors.New("localapi: an offline server does not listen")
	}
	var inflight tracker
	h := s.Handler()
	srv := &http.Server{ReadHeaderTimeout: readHeaderTimeout, ReadTimeout: readTimeout, IdleTimeout: idleTimeout,
		MaxHeaderBytes: 16 << 10, ConnContext: connContext, ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !inflight.enter() {
				writeError(w, http.StatusServiceUnavailable, "checkpointd is stopping")
				return
			}
			defer inflight.leave()
			h.ServeHTTP(w, r)
		})}
	ln = newLimitListener(ln, s.cfg.MaxConns, s.clock, s.log)
	if tlsConfig != nil {
		ln = tls.NewListener(ln, tlsConfig)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	s.log.Info("serving the supervisors' API", "on", what, "addr", ln.Addr().String())
	select {
	case err := <-errc:
		return fmt.Errorf("localapi: %w", err)
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if srv.Shutdown(sctx) != nil {
			srv.Close() // an export or a sync that goes on: its writes now fail, and it returns
		}
		inflight.closeAndWait()
		return nil
	}
}

// tracker counts the requests being handled, so that a stopping server
// waits for their handlers; once closed it lets no more in.
type tracker struct {
	mu     stdsync.Mutex
	n      int
	closed bool
	idle   chan struct{}
}

func (t *tracker) enter() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.n++
	return true
}

func (t *tracker) leave() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.n--; t.n == 0 && t.idle != nil {
		close(t.idle)
		t.idle = nil
	}
}

func (t *tracker) closeAndWait() {
	t.mu.Lock()
	t.closed = true
	if t.n == 0 {
		t.mu.Unlock()
		return
	}
	idle := make(chan struct{})
	t.idle = idle
	t.mu.Unlock()
	<-idle
}

// caller is who a request comes from, once authenticated.
type caller struct {
	who     string // the account
	user    string // the local user, or the client's address
	account *Supervisor
}

type callerKey struct{}

func callerOf(r *http.Request) caller {
	c, _ := r.Context().Value(callerKey{}).(caller)
	return c
}

// audit records a reading of the log or an action on it, as an event of
// the log itself. An offline server (a database opened read-only) records
// nothing. It records even when the request's context has ended: a
// client that goes away has still asked.
func (s *Server) audit(ctx context.Context, rec store.AuditRecord) error {
	if s.box.ReadOnly() {
		return nil
	}
	now := s.backend.Now()
	_, err := s.box.Record(context.WithoutCancel(ctx), store.Event{Kind: "audit", Time: now.Time,
		ClockUncertainty: now.Uncertainty, Gate: s.cfg.Checkpoint, Audit: &rec})
	if err != nil {
		s.log.Error("audit event not recorded", "action", rec.Action, "who", rec.Who, "err", err)
		return fmt.Errorf("localapi: the audit event: %w", err)
	}
	return nil
}
