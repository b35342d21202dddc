// Package screen is the guard's screen and the passenger's: a web page
// checkpointd serves (for a kiosk display on the box, or a guard's
// tablet), updated live with server-sent events, with no JavaScript
// framework and nothing fetched from outside the box.
//
// The passenger view of a lane is a full-screen colour with an icon and
// the outcome in large Chinese and English words. The guard view adds the
// reasons, the masked name to compare with the card, the temperatures,
// what the gate did, the last passages and a status line that turns red
// where it needs attention; a guard who signs in (name and PIN, Argon2id
// hashes in the configuration, locked after repeated wrong PINs) can
// enter a temperature, let a person without a phone through on the number
// of their card, confirm an ID check, or override a decision with a
// reason. Actions come from loopback only unless the screen is served
// over TLS.
//
// internal/daemon publishes each lane's passages to it and gives it the
// call that takes the guard's actions.
package screen

import (
	"context"
	"crypto/tls"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/checkpointd/checkpoint/internal/clock"
	"github.com/checkpointd/checkpoint/internal/passhash"
	"github.com/checkpointd/checkpoint/passage"
)

//go:embed web
var web embed.FS

// Config configures the screen.
type Config struct {
	Checkpoint string
	Lanes      []string // in the order the guard view shows them
	Guards     []Guard
	// LockAfter wrong PINs in a row lock signing in for LockFor; 0: 5 and
	// 5 minutes. A session lasts Session; 0: 12 hours (a shift).
	LockAfter int
	LockFor   time.Duration
	Session   time.Duration
	// TLS says the screen is served over TLS: signing in and actions are
	// then accepted from other machines, not only from loopback.
	TLS bool
}

// Actor takes a guard's action for a lane; the daemon is one.
type Actor interface {
	Act(ctx context.Context, lane string, a passage.Action) error
}

// Server serves the screen.
type Server struct {
	cfg    Config
	act    Actor
	status func() Status
	clock  clock.Clock
	log    *slog.Logger
	auth   *signIns

	mu    sync.Mutex
	lanes map[string]Lane
	last  Status
	subs  map[chan event]struct{}
	// watching counts the event streams being served, including those
	// dropped from subs for not keeping up whose last write has not
	// returned yet: it is what maxSubscribers bounds.
	watching int
	static   http.Handler
}

// event is one server-sent event.
type event struct {
	name string
	data []byte
}

// maxSubscribers bounds the pages watching at once.
const maxSubscribers = 32

// New returns a screen. status is read every second while it serves.
func New(cfg Config, act Actor, status func() Status, clk clock.Clock, log *slog.Logger) (*Server, error) {
	if cfg.LockAfter <= 0 {
		cfg.LockAfter = 5
	}
	if cfg.LockFor <= 0 {
		cfg.LockFor = 5 * time.Minute
	}
	if cfg.Session <= 0 {
		cfg.Session = 12 * time.Hour
	}
	guards := map[string]string{}
	for _, g := range cfg.Guards {
		if err := passhash.Check(g.PIN); err != nil {
			return nil, fmt.Errorf("screen: guard %q: %w", g.Name, err)
		}
		guards[g.Name] = g.PIN
	}
	sub, err := fs.Sub(web, "web")
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, act: act, status: status, clock: clk, log: log.With("component", "screen"),
		auth:  &signIns{guards: guards, lockAfter: cfg.LockAfter, lockFor: cfg.LockFor, sessionOf: cfg.Session, sessions: map[string]session{}},
		lanes: map[string]Lane{}, subs: map[chan event]struct{}{}, static: http.FileServerFS(sub)}
	for _, l := range cfg.Lanes {
		s.lanes[l] = Lane{Lane: l, Last: []Passage{}}
	}
	return s, nil
}

// Publish shows a lane's passage gathering (nil for none) and, when
// decided is set, adds a decided passage to its last ones.
func (s *Server) Publish(lane string, current *Passage, decided *Passage) {
	s.mu.Lock()
	l := s.lanes[lane]
	l.Lane, l.Current = lane, current
	if decided != nil {
		l.Last = append([]Passage{*decided}, l.Last...)
		if len(l.Last) > maxLast {
			l.Last = l.Last[:maxLast]
		}
	}
	l.Last = slices.Clip(l.Last)
	s.lanes[lane] = l
	s.mu.Unlock()
	s.broadcast("lane", l)
}

func (s *Server) broadcast(name string, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		s.log.Error("screen update not encoded", "err", err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.subs {
		select {
		case c <- event{name, data}:
		default:
			// A page that does not keep up is dropped; it reconnects and
			// starts again from the whole state.
			delete(s.subs, c)
			close(c)
		}
	}
}

// Handler returns the screen's pages and API.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.page("guard.html"))
	mux.HandleFunc("GET /lane/{lane}", s.page("passenger.html"))
	mux.Handle("GET /static/", http.StripPrefix("/static/", s.static))
	mux.HandleFunc("GET /events", s.events)
	mux.HandleFunc("GET /api/state", s.state)
	mux.HandleFunc("GET /api/me", s.me)
	mux.HandleFunc("POST /api/signin", s.signIn)
	mux.HandleFunc("POST /api/signout", s.signOut)
	mux.HandleFunc("POST /api/act", s.actHandler)
	return securityHeaders(mux)
}

// securityHeaders keeps the pages to the box: nothing loads from
// elsewhere, and no other site frames them.
func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Referrer-Policy", "no-referrer")
		h.ServeHTTP(w, r)
	})
}

func (s *Server) page(name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		b, err := web.ReadFile("web/" + name)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.Write(b)
	}
}

// snapshot is the whole state: the status line and every lane.
type snapshot struct {
	Checkpoint      string   `json:"checkpoint"`
	Status          Status   `json:"status"`
	Lanes           []Lane   `json:"lanes"`
	OverrideReasons []string `json:"override_reasons"`
}

func (s *Server) snapshot() snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	snap := snapshot{Checkpoint: s.cfg.Checkpoint, Status: s.last, OverrideReasons: passage.OverrideReasons}
	for _, name := range s.cfg.Lanes {
		snap.Lanes = append(snap.Lanes, s.lanes[name])
	}
	return snap
}

func (s *Server) state(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.snapshot())
}

// events streams the state: the whole of it first, then each change.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	c := make(chan event, 64)
	s.mu.Lock()
	if s.watching >= maxSubscribers {
		s.mu.Unlock()
		s.log.Warn("event stream refused: too many screens")
		http.Error(w, "too many screens", http.StatusServiceUnavailable)
		return
	}
	s.watching++
	s.subs[c] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.watching--
		if _, ok := s.subs[c]; ok {
			delete(s.subs, c)
			close(c)
		}
		s.mu.Unlock()
	}()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	data, _ := json.Marshal(s.snapshot())
	if err := writeEvent(w, event{"snapshot", data}); err != nil {
		return
	}
	flusher.Flush()
	keepAlive := time.NewTicker(15 * time.Second)
	defer keepAlive.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case ev, ok := <-c:
			if !ok {
				return
			}
			if err := writeEvent(w, ev); err != nil {
				return
			}
		case <-keepAlive.C:
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
				return
			}
		}
		flusher.Flush()
	}
}

func writeEvent(w http.ResponseWriter, ev event) error {
	_, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", ev.name, ev.data)
	return err
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

const sessionCookie = "checkpoint_guard"

// guardOf returns the guard signed in on r's session.
func (s *Server) guardOf(r *http.Request) (string, bool) {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return "", false
	}
	return s.auth.guard(c.Value, s.clock.Now())
}

func (s *Server) me(w http.ResponseWriter, r *http.Request) {
	g, ok := s.guardOf(r)
	if !ok {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "not signed in"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"guard": g})
}

// allowed checks a request that changes something: it must come from the
// page (a header no other site can set without the page's consent) and,
// unless the screen is on TLS, from this machine.
func (s *Server) allowed(w http.ResponseWriter, r *http.Request) bool {
	if r.Header.Get("X-Checkpoint-Screen") != "1" {
		writeJSON(w, http.StatusForbidden, map[string]string{"error": "not from the screen"})
		return false
	}
	if !s.cfg.TLS && !loopback(r.RemoteAddr) {
		writeJSON(w, http.StatusForbidden, map[string]string{"error": "actions are taken from this box only (or over TLS)"})
		return false
	}
	return true
}

func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// readJSON reads a small JSON body into v.
func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "malformed request"})
		return false
	}
	return true
}

func (s *Server) signIn(w http.ResponseWriter, r *http.Request) {
	if !s.allowed(w, r) {
		return
	}
	var req struct {
		Name string `json:"name"`
		PIN  string `json:"pin"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	token, err := s.auth.signIn(req.Name, req.PIN, s.clock.Now())
	switch {
	case errors.Is(err, errLocked):
		s.log.Warn("sign-in refused: locked after wrong PINs")
		writeJSON(w, http.StatusLocked, map[string]string{"error": "locked after wrong PINs: wait, then try again / 密码错误次数过多，请稍后再试"})
		return
	case err != nil:
		s.log.Warn("sign-in refused: wrong name or PIN")
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "wrong name or PIN / 姓名或密码错误"})
		return
	}
	s.log.Info("guard signed in", "guard", req.Name)
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: token, Path: "/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: s.cfg.TLS, MaxAge: int(s.cfg.Session / time.Second)})
	writeJSON(w, http.StatusOK, map[string]string{"guard": req.Name})
}

func (s *Server) signOut(w http.ResponseWriter, r *http.Request) {
	if !s.allowed(w, r) {
		return
	}
	if c, err := r.Cookie(sessionCookie); err == nil {
		if g, ok := s.auth.guard(c.Value, s.clock.Now()); ok {
			s.log.Info("guard signed out", "guard", g)
		}
		s.auth.signOut(c.Value)
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1})
	w.WriteHeader(http.StatusNoContent)
}

// actRequest is a guard's action as the page sends it.
type actRequest struct {
	Lane    string  `json:"lane"`
	Kind    string  `json:"kind"`
	Celsius float64 `json:"celsius"`
	Number  string  `json:"number"`
	Outcome string  `json:"outcome"`
	Reason  string  `json:"reason"`
}

func (s *Server) actHandler(w http.ResponseWriter, r *http.Request) {
	if !s.allowed(w, r) {
		return
	}
	guard, ok := s.guardOf(r)
	if !ok {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "sign in first / 请先登录"})
		return
	}
	var req actRequest
	if !readJSON(w, r, &req) {
		return
	}
	a := passage.Action{Kind: passage.ActionKind(req.Kind), Guard: guard, At: s.clock.Now()}
	switch a.Kind {
	case passage.Temperature:
		if req.Celsius < 25 || req.Celsius > 45 {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "a temperature in °C, 25 to 45"})
			return
		}
		a.Celsius = req.Celsius
	case passage.TypedID:
		a.Number = strings.TrimSpace(req.Number)
		if a.Number == "" {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "an ID number"})
			return
		}
	case passage.ConfirmID:
	case passage.Override:
		if err := a.Outcome.UnmarshalText([]byte(req.Outcome)); err != nil || !slices.Contains(passage.OverrideReasons, req.Reason) {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "an outcome and a reason from the list"})
			return
		}
		a.Reason = req.Reason
	default:
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "unknown action"})
		return
	}
	if err := s.act.Act(r.Context(), req.Lane, a); err != nil {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": err.Error()})
		return
	}
	// The guard's name and what was done; never the number typed.
	s.log.Info("guard action", "guard", guard, "lane", req.Lane, "kind", req.Kind, "reason", a.Reason)
	w.WriteHeader(http.StatusNoContent)
}

// Serve serves the screen on ln until ctx ends, reading the status every
// second. With tlsConfig it serves HTTPS.
func (s *Server) Serve(ctx context.Context, ln net.Listener, tlsConfig *tls.Config) error {
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 60 * time.Second,
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)}
	if tlsConfig != nil {
		ln = tls.NewListener(ln, tlsConfig)
	}
	go s.watchStatus(ctx)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	s.log.Info("serving the screen", "addr", ln.Addr().String(), "tls", tlsConfig != nil)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		srv.Close() // the event streams never end on their own
		return nil
	}
}

// watchStatus publishes the status line when it changes.
func (s *Server) watchStatus(ctx context.Context) {
	for {
		st := s.status()
		s.mu.Lock()
		changed := !reflect.DeepEqual(st, s.last)
		s.last = st
		s.mu.Unlock()
		if changed {
			s.broadcast("status", st)
		}
		select {
		case <-ctx.Done():
			return
		case <-s.clock.After(time.Second):
		}
	}
}
