// Package authority is the reference authority's HTTP server: it enrols
// checkpoints, takes their event logs, serves the trust list and the
// revocations as signed, versioned, chunked downloads, takes revocations
// and colours from its operator, and, when configured, issues holders
// their daily credentials on an operator's request. docs/sync.md specifies
// the protocol. cmd/authority's serve command runs it; its storage is
// behind the Storage interface (store.Authority implements it), so that a
// database server can replace bbolt.
//
// Every client is taken for hostile until it has proved otherwise: a
// device's signed headers are checked before its body is read, bodies and
// connections are bounded, slow clients are dropped, expensive work waits
// for a few slots, and failed tokens and signatures are logged and limited
// per client address (limits.go).
package authority

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/checkpointd/checkpoint/internal/clock"
	"github.com/checkpointd/checkpoint/internal/credential"
	"github.com/checkpointd/checkpoint/internal/protocol"
	"github.com/checkpointd/checkpoint/internal/trust"
	"github.com/checkpointd/checkpoint/store"
)

// Storage is what the server keeps.
type Storage interface {
	AddToken(token, name string, expires time.Time) error
	Enroll(token, name string, key ed25519.PublicKey, now time.Time) (string, error)
	DeviceKey(id string) (ed25519.PublicKey, error)
	StoreEvents(device string, raws [][]byte) (uint64, error)
	Mark(device string) (uint64, error)
	Revoke(entries []store.RevEntry) (uint64, error)
	Expire(now time.Time) (uint64, int, error)
	RevocationState() (uint64, store.SetDigest, error)
	RevocationItems(since uint64) ([]store.RevEntry, bool, uint64, store.SetDigest, error)
	Declare(subject [store.SubjectSize]byte, now time.Time, gap time.Duration) (bool, time.Time, error)
	Colour(subject [store.SubjectSize]byte) (string, error)
	SetColour(subject [store.SubjectSize]byte, colour string, at time.Time) error
	TrustList() ([]byte, error)
	Devices() ([]store.EnrolledDevice, error)
}

// Keys are the authority's online keys.
type Keys struct {
	Issuer     ed25519.PrivateKey // signs holders' credentials
	IssuerCode string             // the credentials' iss
	List       ed25519.PrivateKey // signs manifests and sync answers; named in the trust list
	Pseudonym  []byte             // turns ID numbers into subject pseudonyms
}

// Options tune the server.
type Options struct {
	Clock clock.Clock
	Log   *slog.Logger
	// AdminToken authorises the operator's calls.
	AdminToken string
	// ManifestValidity is how long a signed manifest keeps a list current;
	// 0 means three days.
	ManifestValidity time.Duration
	// ChunkEntries is the number of revocations in a chunk; 0 means 50,000.
	ChunkEntries int
	// Keep is how long after its cut-off a revocation stays on the list:
	// the longest credential validity. 0 means 30 days.
	Keep time.Duration
	// CredentialValidity of the credentials holders get; 0 means 24 hours.
	CredentialValidity time.Duration
	// Region is the issuing region code the credentials carry, e.g. "44".
	Region string
	// Declarations turns on the declaration endpoint, which issues a
	// holder's credential on the operator's request (admin token); off, it
	// is not served.
	Declarations bool
	// Limits bound what clients can make the server spend.
	Limits Limits
}

// Server is the authority's HTTP API.
type Server struct {
	st    Storage
	keys  Keys
	opts  Options
	clock clock.Clock
	log   *slog.Logger

	lim     Limits
	fails   *failures
	seen    *seenRequests
	uploads slots
	hashing slots

	mu         sync.Mutex
	cache      *chunked // the last download prepared
	lastExpire time.Time
}

// chunked is a prepared download: the chunks of one (version, since).
type chunked struct {
	version, since uint64
	snapshot       bool
	set            store.SetDigest
	chunks         [][]byte
	infos          []protocol.ChunkInfo
}

// New returns a server.
func New(st Storage, keys Keys, opts Options) *Server {
	if opts.Clock == nil {
		opts.Clock = clock.System{}
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.ManifestValidity <= 0 {
		opts.ManifestValidity = 72 * time.Hour
	}
	if opts.ChunkEntries <= 0 {
		opts.ChunkEntries = 50000
	}
	if opts.Keep <= 0 {
		opts.Keep = 30 * 24 * time.Hour
	}
	if opts.CredentialValidity <= 0 {
		opts.CredentialValidity = 24 * time.Hour
	}
	lim := opts.Limits.withDefaults()
	log := opts.Log.With("component", "authority")
	return &Server{st: st, keys: keys, opts: opts, clock: opts.Clock, log: log, lim: lim,
		fails: newFailures(lim, opts.Clock, log), seen: newSeenRequests(lim.RequestWindow),
		uploads: make(slots, lim.Uploads), hashing: make(slots, lim.Hashing)}
}

// Handler returns the API.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+protocol.PathEnroll, s.enroll)
	mux.HandleFunc("GET "+protocol.PathStatus, s.status)
	mux.HandleFunc("POST "+protocol.PathEvents, s.events)
	mux.HandleFunc("GET "+protocol.PathTrust, s.trustList)
	mux.HandleFunc("GET "+protocol.PathManifest, s.manifest)
	mux.HandleFunc("GET "+protocol.PathChunk, s.chunk)
	if s.opts.Declarations {
		mux.HandleFunc("POST "+protocol.PathDeclare, s.declare)
	}
	mux.HandleFunc("POST "+protocol.PathAdminRevoke, s.adminRevoke)
	mux.HandleFunc("POST "+protocol.PathAdminToken, s.adminToken)
	mux.HandleFunc("POST "+protocol.PathAdminStatus, s.adminStatus)
	mux.HandleFunc("POST "+protocol.PathAdminColour, s.adminColour)
	return mux
}

// Serve serves on ln until ctx ends, within the Limits: a cap on
// connections in all and per address, and read, write and idle timeouts.
// With tlsConfig it serves HTTPS.
func (s *Server) Serve(ctx context.Context, ln net.Listener, tlsConfig *tls.Config) error {
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: min(10*time.Second, s.lim.ReadTimeout),
		ReadTimeout:       s.lim.ReadTimeout,
		WriteTimeout:      s.lim.WriteTimeout,
		IdleTimeout:       s.lim.IdleTimeout,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	ln = newLimitListener(ln, s.lim, s.clock, s.log)
	if tlsConfig != nil {
		ln = tls.NewListener(ln, tlsConfig)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(shut)
	}
}

// readBody reads a body of at most limit bytes. One that says it is
// larger is refused before any of it is read.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, bool) {
	if r.ContentLength > limit {
		w.Header().Set("Connection", "close")
		http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
		return nil, false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
		return nil, false
	case err != nil:
		http.Error(w, "body unreadable", http.StatusBadRequest)
		return nil, false
	}
	return body, true
}

// tooMany answers a client that has used up its failures.
func (s *Server) tooMany(w http.ResponseWriter) {
	w.Header().Set("Retry-After", strconv.Itoa(int(s.lim.FailureEvery/time.Second)))
	http.Error(w, "too many failed attempts: try again later", http.StatusTooManyRequests)
}

func writeCBOR(w http.ResponseWriter, v any) {
	b, err := protocol.Enc.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", protocol.ContentType)
	w.Write(b)
}

// writeSigned signs v with the list key as an object of type typ.
func (s *Server) writeSigned(w http.ResponseWriter, typ string, v any) {
	payload, err := protocol.Enc.Marshal(v)
	if err == nil {
		var signed []byte
		if signed, err = trust.SignObject(typ, payload, s.keys.List); err == nil {
			w.Header().Set("Content-Type", protocol.ContentType)
			w.Write(signed)
			return
		}
	}
	http.Error(w, err.Error(), http.StatusInternalServerError)
}

// device authenticates a device's request from its headers, before its
// body is read: the signature, the time (within the request window of
// the authority's) and the nonce (not seen before). A request dated
// outside the window is answered with the authority's time, unsigned, so
// that a device whose clock is off can date its next request; it never
// sets the device's clock.
func (s *Server) device(w http.ResponseWriter, r *http.Request) (protocol.SignedRequest, bool) {
	ip := hostOf(r.RemoteAddr)
	if s.fails.blocked(ip) {
		s.tooMany(w)
		return protocol.SignedRequest{}, false
	}
	sr, err := protocol.VerifyRequest(r, s.st.DeviceKey)
	if err != nil {
		s.fails.fail(ip, "device signature")
		http.Error(w, protocol.ErrUnauthenticated.Error(), http.StatusUnauthorized)
		return sr, false
	}
	now := s.clock.Now()
	if off := sr.Time.Sub(now); off > s.lim.RequestWindow || off < -s.lim.RequestWindow {
		w.Header().Set(protocol.HeaderServerTime, strconv.FormatInt(now.Unix(), 10))
		http.Error(w, "request time outside the authority's window", http.StatusUnauthorized)
		return sr, false
	}
	if !s.seen.add(sr.Device, sr.Nonce, sr.Time, now) {
		s.fails.fail(ip, "replayed device request")
		http.Error(w, "request seen before", http.StatusUnauthorized)
		return sr, false
	}
	return sr, true
}

// maxName bounds a checkpoint's or a holder's name.
const maxName = 256

func (s *Server) enroll(w http.ResponseWriter, r *http.Request) {
	ip := hostOf(r.RemoteAddr)
	if s.fails.blocked(ip) {
		s.tooMany(w)
		return
	}
	body, ok := readBody(w, r, maxSmallBody)
	if !ok {
		return
	}
	var req protocol.EnrollRequest
	if err := protocol.Dec.Unmarshal(body, &req); err != nil || len(req.DeviceKey) != ed25519.PublicKeySize ||
		req.Name == "" || len(req.Name) > maxName {
		http.Error(w, "malformed enrolment", http.StatusBadRequest)
		return
	}
	id, err := s.st.Enroll(req.Token, req.Name, req.DeviceKey, s.clock.Now())
	if errors.Is(err, store.ErrBadToken) {
		s.fails.fail(ip, "enrolment token unknown, used or expired")
		http.Error(w, err.Error(), http.StatusForbidden)
		return
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	s.log.Info("checkpoint enrolled", "device", id, "name", req.Name)
	writeCBOR(w, protocol.EnrollResponse{DeviceID: id})
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	sr, ok := s.device(w, r)
	if !ok {
		return
	}
	if err := sr.CheckBody(nil); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	id, nonce := sr.Device, sr.Nonce
	mark, err := s.st.Mark(id)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	rv, _, err := s.st.RevocationState()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	var tv uint64
	if raw, err := s.st.TrustList(); err == nil && len(raw) > 0 {
		// The server's own list: read its version without checking the
		// signature (checkpoints check it).
		tv, _ = trust.PeekVersion(raw)
	}
	s.writeSigned(w, protocol.TypeStatus, protocol.Status{
		ServerTime: s.clock.Now(), Nonce: nonce, DeviceID: id, Mark: mark, TrustVersion: tv, RevocationVersion: rv,
	})
}

func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	sr, ok := s.device(w, r)
	if !ok {
		return
	}
	if r.ContentLength < 0 {
		http.Error(w, "an upload must give its length", http.StatusLengthRequired)
		return
	}
	if !s.uploads.take(r.Context(), s.clock, s.lim.Queue) {
		busy(w)
		return
	}
	defer s.uploads.give()
	// An authenticated device on a slow link gets the time its body needs
	// at the slowest rate waited for, and then the usual time for the
	// answer. (Connection deadlines are on the network's clock, not the
	// injected one.)
	read := time.Now().Add(s.lim.ReadTimeout + s.lim.extraTime(r.ContentLength))
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(read)
	rc.SetWriteDeadline(read.Add(s.lim.WriteTimeout))
	body, ok := readBody(w, r, s.lim.MaxUpload)
	if !ok {
		return
	}
	if err := sr.CheckBody(body); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	id, nonce := sr.Device, sr.Nonce
	var batch protocol.EventBatch
	if err := protocol.Dec.Unmarshal(body, &batch); err != nil || batch.DeviceID != id {
		http.Error(w, "malformed batch", http.StatusBadRequest)
		return
	}
	mark, err := s.st.StoreEvents(id, batch.Events)
	switch {
	case errors.Is(err, store.ErrConflict), errors.Is(err, store.ErrBadEvent), errors.Is(err, store.ErrGap):
		s.log.Error("events refused", "device", id, "from", batch.From, "to", batch.To, "err", err)
		http.Error(w, err.Error(), http.StatusConflict)
		return
	case err != nil:
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	s.writeSigned(w, protocol.TypeAck, protocol.Ack{DeviceID: id, Nonce: nonce, Mark: mark})
}

func (s *Server) trustList(w http.ResponseWriter, r *http.Request) {
	raw, err := s.st.TrustList()
	if err != nil || len(raw) == 0 {
		http.Error(w, "no trust list", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", protocol.ContentType)
	w.Write(raw)
}

// prepare returns the chunks that take a checkpoint from since to the
// current version, preparing them if need be.
func (s *Server) prepare(since uint64) (*chunked, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if now := s.clock.Now(); now.Sub(s.lastExpire) > time.Minute {
		if _, n, err := s.st.Expire(now); err != nil {
			return nil, err
		} else if n > 0 {
			s.log.Info("revocations expired", "entries", n)
		}
		s.lastExpire = now
	}
	version, _, err := s.st.RevocationState()
	if err != nil {
		return nil, err
	}
	if c := s.cache; c != nil && c.version == version && c.since == since {
		return c, nil
	}
	items, snapshot, version, set, err := s.st.RevocationItems(since)
	if err != nil {
		return nil, err
	}
	c := &chunked{version: version, since: since, snapshot: snapshot, set: set}
	for i := 0; i < len(items); i += s.opts.ChunkEntries {
		part := items[i:min(len(items), i+s.opts.ChunkEntries)]
		b, err := protocol.EncodeChunk(part)
		if err != nil {
			return nil, err
		}
		c.chunks = append(c.chunks, b)
		c.infos = append(c.infos, protocol.ChunkInfo{Hash: sha256Sum(b), Entries: len(part)})
	}
	s.cache = c
	return c, nil
}

func (s *Server) manifest(w http.ResponseWriter, r *http.Request) {
	since, err := strconv.ParseUint(r.URL.Query().Get("since"), 10, 64)
	if err != nil {
		http.Error(w, "since must be a version", http.StatusBadRequest)
		return
	}
	c, err := s.prepare(since)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	now := s.clock.Now()
	s.writeSigned(w, protocol.TypeManifest, protocol.Manifest{
		Version: c.version, Since: since, Snapshot: c.snapshot, IssuedAt: now, Expires: now.Add(s.opts.ManifestValidity),
		Set: c.set, Chunks: c.infos,
	})
}

func (s *Server) chunk(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	version, err1 := strconv.ParseUint(q.Get("version"), 10, 64)
	since, err2 := strconv.ParseUint(q.Get("since"), 10, 64)
	index, err3 := strconv.Atoi(q.Get("index"))
	if err1 != nil || err2 != nil || err3 != nil || index < 0 {
		http.Error(w, "version, since and index are required", http.StatusBadRequest)
		return
	}
	c, err := s.prepare(since)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if c.version != version {
		http.Error(w, "that version is no longer current", http.StatusGone)
		return
	}
	if index >= len(c.chunks) {
		http.Error(w, "no such chunk", http.StatusNotFound)
		return
	}
	// A chunk is up to a megabyte: a slow link gets the time it needs.
	http.NewResponseController(w).SetWriteDeadline(time.Now().Add(s.lim.WriteTimeout + s.lim.extraTime(int64(len(c.chunks[index])))))
	w.Header().Set("Content-Type", protocol.ContentType)
	w.Write(c.chunks[index])
}

// declare issues a holder the day's credential, on the request of an
// operator (admin token) who has checked the holder's ID card: the ID
// number must be a valid GB 11643 number, and the colour is the one the
// authority holds for the subject (green when it holds none), never the
// caller's. A holder may declare at most once a day. The ID hash costs an
// Argon2id of 19 MiB, so few are computed at once.
func (s *Server) declare(w http.ResponseWriter, r *http.Request) {
	if !s.admin(w, r) {
		return
	}
	body, ok := readBody(w, r, maxSmallBody)
	if !ok {
		return
	}
	var d protocol.Declaration
	if err := protocol.DecStrict.Unmarshal(body, &d); err != nil {
		http.Error(w, "malformed declaration (it carries an ID number, a name and a holder key, and no colour): "+err.Error(), http.StatusBadRequest)
		return
	}
	if len(d.HolderKey) != ed25519.PublicKeySize || d.Name == "" || len(d.Name) > maxName {
		http.Error(w, "malformed declaration: a holder key and a name are required", http.StatusBadRequest)
		return
	}
	id, err := credential.ParseID(d.IDNumber)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	sub := [store.SubjectSize]byte(credential.Pseudonym(s.keys.Pseudonym, id))
	colour, err := s.st.Colour(sub)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	status := credential.Green
	if colour != "" {
		if status, err = credential.ParseStatus(colour); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
	}
	if !s.hashing.take(r.Context(), s.clock, s.lim.Queue) {
		busy(w)
		return
	}
	defer s.hashing.give()
	now := s.clock.Now().Truncate(time.Second)
	allowed, next, err := s.st.Declare(sub, now, 24*time.Hour)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if !allowed {
		w.Header().Set("Retry-After", strconv.Itoa(int(next.Sub(now)/time.Second)))
		http.Error(w, "already declared in the last 24 hours; the next declaration is allowed at "+next.UTC().Format(time.RFC3339),
			http.StatusTooManyRequests)
		return
	}
	cid := make([]byte, credential.IDSize)
	rand.Read(cid)
	c := &credential.Credential{
		Issuer: s.keys.IssuerCode, ID: cid, Subject: sub[:], Status: status, Region: s.opts.Region,
		MaskedName: credential.MaskName(d.Name), IDHash: credential.IDHash(id, sub[:]),
		IssuedAt: now, Expires: now.Add(s.opts.CredentialValidity), HolderKey: d.HolderKey,
	}
	raw, err := credential.Issue(c, s.keys.Issuer)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	s.log.Info("credential issued on a declaration", "colour", status.String())
	w.Header().Set("Content-Type", protocol.ContentType)
	w.Write(raw)
}

// admin authenticates the operator, before anything of the request is
// read.
func (s *Server) admin(w http.ResponseWriter, r *http.Request) bool {
	ip := hostOf(r.RemoteAddr)
	if s.fails.blocked(ip) {
		s.tooMany(w)
		return false
	}
	want := "Bearer " + s.opts.AdminToken
	if s.opts.AdminToken == "" || subtle.ConstantTimeCompare([]byte(r.Header.Get(protocol.HeaderAdmin)), []byte(want)) != 1 {
		s.fails.fail(ip, "admin token")
		http.Error(w, "admin token required", http.StatusUnauthorized)
		return false
	}
	return true
}

func (s *Server) adminRevoke(w http.ResponseWriter, r *http.Request) {
	if !s.admin(w, r) {
		return
	}
	body, ok := readBody(w, r, maxSmallBody)
	if !ok {
		return
	}
	var req protocol.AdminRevoke
	if err := protocol.Dec.Unmarshal(body, &req); err != nil {
		http.Error(w, "malformed revocation", http.StatusBadRequest)
		return
	}
	id, err := credential.ParseID(req.IDNumber)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	before := req.Before
	if before.IsZero() {
		before = s.clock.Now()
	}
	version, err := s.revoke(id, before)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	s.log.Info("revocation added", "version", version)
	writeCBOR(w, map[string]uint64{"version": version})
}

// revoke revokes the credentials of the holder of ID number id issued at
// or before before.
func (s *Server) revoke(id string, before time.Time) (uint64, error) {
	e := store.RevEntry{Subject: [store.SubjectSize]byte(credential.Pseudonym(s.keys.Pseudonym, id)),
		Before: before.Unix(), DropAfter: before.Add(s.opts.Keep).Unix()}
	return s.st.Revoke([]store.RevEntry{e})
}

// adminColour sets the colour the authority holds for a subject: the
// colour of the credentials it issues on the subject's declarations. A
// change revokes the credentials issued before it, so that no credential
// shows the old colour.
func (s *Server) adminColour(w http.ResponseWriter, r *http.Request) {
	if !s.admin(w, r) {
		return
	}
	body, ok := readBody(w, r, maxSmallBody)
	if !ok {
		return
	}
	var req protocol.AdminColour
	if err := protocol.Dec.Unmarshal(body, &req); err != nil {
		http.Error(w, "malformed request", http.StatusBadRequest)
		return
	}
	id, err := credential.ParseID(req.IDNumber)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	status, err := credential.ParseStatus(req.Colour)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	sub := [store.SubjectSize]byte(credential.Pseudonym(s.keys.Pseudonym, id))
	held, err := s.st.Colour(sub)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if held == "" {
		held = credential.Green.String() // what a subject without a record gets
	}
	changed := held != status.String()
	now := s.clock.Now().Truncate(time.Second)
	if err := s.st.SetColour(sub, status.String(), now); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	var version uint64
	if changed {
		if version, err = s.revoke(id, now); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
	} else if version, _, err = s.st.RevocationState(); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	s.log.Info("colour set", "colour", status.String(), "changed", changed, "revocation_version", version)
	writeCBOR(w, map[string]uint64{"version": version})
}

func (s *Server) adminStatus(w http.ResponseWriter, r *http.Request) {
	if !s.admin(w, r) {
		return
	}
	v, set, err := s.st.RevocationState()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	ds, err := s.st.Devices()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	st := protocol.AdminStatus{RevocationVersion: v, Revocations: set.Count, Devices: []protocol.DeviceInfo{}}
	for _, d := range ds {
		st.Devices = append(st.Devices, protocol.DeviceInfo{ID: d.ID, Name: d.Name, Enrolled: d.Enrolled, Mark: d.Mark})
	}
	writeCBOR(w, st)
}

func (s *Server) adminToken(w http.ResponseWriter, r *http.Request) {
	if !s.admin(w, r) {
		return
	}
	body, ok := readBody(w, r, maxSmallBody)
	if !ok {
		return
	}
	var req protocol.AdminToken
	if err := protocol.Dec.Unmarshal(body, &req); err != nil || req.Name == "" {
		http.Error(w, "malformed request", http.StatusBadRequest)
		return
	}
	var b [16]byte
	rand.Read(b[:])
	token := hex.EncodeToString(b[:])
	if err := s.st.AddToken(token, req.Name, s.clock.Now().Add(7*24*time.Hour)); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	writeCBOR(w, protocol.AdminTokenResponse{Token: token})
}

func sha256Sum(b []byte) [32]byte { return sha256.Sum256(b) }
