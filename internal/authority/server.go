// Package authority is the reference authority's HTTP server: it enrols
// checkpoints, takes their event logs, serves the trust list and the
// revocations as signed, versioned, chunked downloads, and takes
// revocations from its operator (docs/sync.md); it registers holders'
// phones on a proof of who they are, takes their signed declarations,
// takes the health departments' signed risk feeds, and decides each
// holder's colour by its rules (internal/rules), issuing credentials to
// the registered holder key only (docs/authority.md). cmd/authority's
// serve command runs it; its storage is behind the Storage interface,
// which store.Authority implements in bbolt and store/postgres on a
// database server.
//
// Every client is taken for hostile until it has proved otherwise: a
// device's or a holder's signed headers are checked before its body is
// read, bodies and connections are bounded, slow clients are dropped,
// expensive work waits for a few slots, and failed tokens, signatures and
// registration proofs are logged and limited per client (limits.go).
package authority

import (
	"context"
	"crypto/ed25519"
	"crypto/hmac"
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

	"golang.org/x/time/rate"

	"github.com/checkpointd/checkpoint/internal/clock"
	"github.com/checkpointd/checkpoint/internal/credential"
	"github.com/checkpointd/checkpoint/internal/protocol"
	"github.com/checkpointd/checkpoint/internal/rules"
	"github.com/checkpointd/checkpoint/internal/trust"
	"github.com/checkpointd/checkpoint/store"
)

// Storage is what the server keeps. store.Authority's doc comments give
// each method's exact contract.
type Storage interface {
	AddToken(token, name string, expires time.Time) error
	Enroll(token, name string, key ed25519.PublicKey, now time.Time) (string, error)
	DeviceKey(id string) (ed25519.PublicKey, error)
	StoreEvents(device string, raws [][]byte) (uint64, error)
	DeclarePurged(device string, g store.ForcedPurge) (uint64, error)
	Mark(device string) (uint64, error)
	Revoke(entries []store.RevEntry) (uint64, error)
	// RevokeNow is Revoke of one entry with its cut-off decided in the
	// transaction: no earlier than the second after the subject's held
	// (store.RevEntry.AfterCutoff). For an operator's revocation without
	// a time.
	RevokeNow(e store.RevEntry) (uint64, error)
	Expire(now time.Time) (uint64, int, error)
	RevocationState() (uint64, store.SetDigest, error)
	RevocationItems(since uint64) ([]store.RevEntry, bool, uint64, store.SetDigest, error)
	TrustList() ([]byte, error)
	Devices() ([]store.EnrolledDevice, error)

	// Holders, proofs and risk data (docs/authority.md).
	AddRegistrationCode(c store.RegistrationCode) error
	Register(r store.Registration) (store.Registered, error)
	ExpireProofs(now time.Time) (int, error)
	Holder(subject [store.SubjectSize]byte) (store.Holder, error)
	UpdateHolder(subject [store.SubjectSize]byte, fn func(store.Holder) (*store.HolderUpdate, error)) (uint64, error)
	ColourHistory(subject [store.SubjectSize]byte, limit int) ([]store.ColourChange, error)
	RiskAreas(regions []string) ([]store.RiskArea, error)
	ApplyFeed(f store.FeedUpdate, reassess func(store.Holder) (*store.HolderUpdate, error)) (store.FeedResult, error)
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
	// Without one, declarations are refused (503): no credential can be
	// issued.
	Region string
	// Rules decide holders' colours; nil means rules.Default().
	Rules *rules.Rules
	// RealnameKeys are the real-name services whose assertions register
	// holders; none: registration codes only.
	RealnameKeys []ed25519.PublicKey
	// FeedKeys are the health departments' feed keys; none: every feed is
	// refused.
	FeedKeys []ed25519.PublicKey
	// FeedKinds names, by a feed key's id (hex, credential.KeyIDOf), the
	// only kinds of feed it may send (feed.Kinds): a department that
	// traces close contacts cannot declare cases. A key it does not name
	// may send every kind.
	FeedKinds map[string][]string
	// CodeValidity is how long a registration code lasts; 0 means 15
	// minutes.
	CodeValidity time.Duration
	// MaxFeedAge refuses feeds issued longer ago than this; 0 means 7
	// days.
	MaxFeedAge time.Duration
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

	lim       Limits
	fails     *failures
	seen      *seenRequests // the devices' signed requests
	bodies    *byteBudget
	storing   slots
	hashing   slots
	preparing slots

	mu        sync.Mutex
	uploading map[string]bool // devices with an upload in progress

	dl downloads

	rules   rules.Rules
	codeKey []byte        // keys the registration codes' hashes
	codes   *rate.Limiter // registration codes issued
	// holderSeen are the holders' signed requests, apart from the
	// devices': holders, who are anyone with a proof, cannot crowd
	// checkpoints out of theirs.
	holderSeen *seenRequests
	// assertions are the real-name assertion ids this process saw used.
	assertions *usedAssertions
}

// chunked is a prepared download: the chunks that take a checkpoint to
// version from a version before it (all of them, for a snapshot).
type chunked struct {
	version  uint64
	snapshot bool
	set      store.SetDigest
	chunks   [][]byte
	infos    []protocol.ChunkInfo
}

// downloads are the prepared downloads of the current revocation version:
// its snapshot, and the deltas from the versions asked for last.
type downloads struct {
	mu         sync.Mutex
	version    uint64
	snapshot   *chunked
	deltas     []delta // most recently used first
	lastExpire time.Time
}

// delta is the download for a checkpoint at since: a delta, or the
// snapshot when that is smaller.
type delta struct {
	since uint64
	c     *chunked
}

// maxDeltas bounds the deltas kept prepared: checkpoints syncing every
// 30 s are at one of the last few versions.
const maxDeltas = 8

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
	if opts.CodeValidity <= 0 {
		opts.CodeValidity = 15 * time.Minute
	}
	if opts.MaxFeedAge <= 0 {
		opts.MaxFeedAge = 7 * 24 * time.Hour
	}
	r := rules.Default()
	if opts.Rules != nil {
		r = *opts.Rules
	}
	lim := opts.Limits.withDefaults()
	log := opts.Log.With("component", "authority")
	codeKey := hmac.New(sha256.New, keys.Pseudonym)
	codeKey.Write([]byte("checkpoint registration code key v1"))
	return &Server{st: st, keys: keys, opts: opts, clock: opts.Clock, log: log, lim: lim,
		fails: newFailures(lim, opts.Clock, log), seen: newSeenRequests(lim.RequestWindow, maxSeenPerDevice),
		holderSeen: newSeenRequests(lim.RequestWindow, maxSeenPerHolder), assertions: newUsedAssertions(),
		bodies: newByteBudget(lim.UploadBytes), storing: make(slots, lim.Storing), hashing: make(slots, lim.Hashing),
		preparing: make(slots, lim.Preparing), uploading: map[string]bool{},
		rules: r, codeKey: codeKey.Sum(nil), codes: rate.NewLimiter(rate.Every(lim.CodeEvery), lim.CodeBurst)}
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
	mux.HandleFunc("POST "+protocol.PathRegister, s.register)
	mux.HandleFunc("POST "+protocol.PathDeclare, s.declare)
	mux.HandleFunc("GET "+protocol.PathHolderStatus, s.holderStatus)
	mux.HandleFunc("POST "+protocol.PathAdminRevoke, s.adminRevoke)
	mux.HandleFunc("POST "+protocol.PathAdminToken, s.adminToken)
	mux.HandleFunc("POST "+protocol.PathAdminStatus, s.adminStatus)
	mux.HandleFunc("POST "+protocol.PathAdminRegistrationCode, s.adminRegistrationCode)
	mux.HandleFunc("POST "+protocol.PathAdminFeed, s.adminFeed)
	return mux
}

// Serve serves on ln until ctx ends, within the Limits: a cap on
// connections in all and per client, and read, write and idle timeouts.
// With tlsConfig it serves HTTPS. When ctx ends it lets the requests in
// progress finish for ShutdownGrace, then closes the connections left and
// returns nil.
func (s *Server) Serve(ctx context.Context, ln net.Listener, tlsConfig *tls.Config) error {
	ll := newLimitListener(ln, s.lim, s.clock, s.log)
	srv := &http.Server{
		Handler:           s.Handler(),
		ConnState:         ll.connState,
		ReadHeaderTimeout: min(10*time.Second, s.lim.ReadTimeout),
		ReadTimeout:       s.lim.ReadTimeout,
		WriteTimeout:      s.lim.WriteTimeout,
		IdleTimeout:       s.lim.IdleTimeout,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	ln = ll
	if tlsConfig != nil {
		ln = tls.NewListener(ln, tlsConfig)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		// The grace is on the network's clock, not the injected one.
		shut, cancel := context.WithTimeout(context.Background(), s.lim.ShutdownGrace)
		defer cancel()
		if err := srv.Shutdown(shut); err != nil {
			s.log.Warn("requests still in progress after the shutdown grace: closing their connections",
				"grace", s.lim.ShutdownGrace)
			srv.Close()
		}
		return nil
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

// tooMany answers a failing request of a client that has used up its
// allowance of failures.
func (s *Server) tooMany(w http.ResponseWriter) {
	w.Header().Set("Retry-After", strconv.Itoa(int(s.lim.FailureEvery/time.Second)))
	http.Error(w, "too many failed attempts: try again later", http.StatusTooManyRequests)
}

// internalError answers a request that failed on the authority's side (a
// storage error, mostly) with a bare "internal error" 500, and logs the
// error with the request's method and path: its text (SQL, time limits,
// file names) is for the operator, not for clients. Nothing personal
// reaches it: the storage holds pseudonyms, hashes and masked names, and
// its errors name no ID number, name or code.
func (s *Server) internalError(w http.ResponseWriter, r *http.Request, err error) {
	s.log.Error("internal error", "method", r.Method, "path", r.URL.Path, "err", err)
	http.Error(w, "internal error", http.StatusInternalServerError)
}

func (s *Server) writeCBOR(w http.ResponseWriter, r *http.Request, v any) {
	b, err := protocol.Enc.Marshal(v)
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", protocol.ContentType)
	w.Write(b)
}

// writeSigned signs v with the list key as an object of type typ.
func (s *Server) writeSigned(w http.ResponseWriter, r *http.Request, typ string, v any) {
	payload, err := protocol.Enc.Marshal(v)
	if err == nil {
		var signed []byte
		if signed, err = trust.SignObject(typ, payload, s.keys.List); err == nil {
			w.Header().Set("Content-Type", protocol.ContentType)
			w.Write(signed)
			return
		}
	}
	s.internalError(w, r, err)
}

// device authenticates a device's request from its headers, before its
// body is read: the signature, the time (within the request window of
// the authority's) and the nonce (not seen before). A request dated
// outside the window is answered with the authority's time, unsigned, so
// that a device whose clock is off can date its next request; it never
// sets the device's clock, and it is not counted as a failure.
func (s *Server) device(w http.ResponseWriter, r *http.Request) (protocol.SignedRequest, bool) {
	key := clientKey(r.RemoteAddr)
	var dbErr error
	sr, err := protocol.VerifyRequest(r, func(id string) (ed25519.PublicKey, error) {
		if !deviceID(id) {
			return nil, store.ErrUnknownDevice // not worth a database's look
		}
		k, err := s.st.DeviceKey(id)
		if err != nil && !errors.Is(err, store.ErrUnknownDevice) {
			dbErr = err
		}
		return k, err
	})
	switch {
	case dbErr != nil:
		// The database failing is no failure of the device's: it is not
		// counted against the client.
		s.internalError(w, r, dbErr)
		return sr, false
	case err != nil:
		s.failed(w, key, "device signature", protocol.ErrUnauthenticated.Error(), http.StatusUnauthorized)
		return sr, false
	}
	if !s.fresh(w, key, s.seen, sr.Device, sr, "device") {
		return sr, false
	}
	s.fails.ok(key)
	return sr, true
}

// deviceID reports whether id has the form of the ids enrollment gives:
// 16 lower-case hex digits (8 random bytes).
func deviceID(id string) bool {
	if len(id) != 16 {
		return false
	}
	for _, c := range id {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// fresh checks a signed request's time (within the request window of the
// authority's) and nonce (not seen before from signer in seen; with no
// seen, the nonce is not checked), answering the request if either fails.
// A request dated outside the window is answered with the authority's
// time, unsigned, and not counted as a failure.
func (s *Server) fresh(w http.ResponseWriter, client string, seen *seenRequests, signer string, sr protocol.SignedRequest, who string) bool {
	now := s.clock.Now()
	if off := sr.Time.Sub(now); off > s.lim.RequestWindow || off < -s.lim.RequestWindow {
		w.Header().Set(protocol.HeaderServerTime, strconv.FormatInt(now.Unix(), 10))
		http.Error(w, "request time outside the authority's window", http.StatusUnauthorized)
		return false
	}
	if seen == nil {
		return true
	}
	switch seen.add(signer, sr.Nonce, sr.Time, now) {
	case nonceReplayed:
		s.failed(w, client, "replayed "+who+" request", "request seen before", http.StatusUnauthorized)
		return false
	case nonceFull:
		w.Header().Set("Retry-After", strconv.Itoa(int(s.lim.RequestWindow/time.Second)))
		http.Error(w, "too many requests from this "+who+" within the request window", http.StatusTooManyRequests)
		return false
	}
	return true
}

// failed answers a request that failed to authenticate: with code and msg
// while the client has allowance of failures left (the failure is
// logged), 429 beyond it.
func (s *Server) failed(w http.ResponseWriter, key, what, msg string, code int) {
	if s.fails.fail(key, what) {
		s.tooMany(w)
		return
	}
	http.Error(w, msg, code)
}

// maxName bounds a checkpoint's or a holder's name.
const maxName = 256

func (s *Server) enroll(w http.ResponseWriter, r *http.Request) {
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
		s.failed(w, clientKey(r.RemoteAddr), "enrolment token unknown, used or expired", err.Error(), http.StatusForbidden)
		return
	}
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	s.log.Info("checkpoint enrolled", "device", id, "name", req.Name)
	s.writeCBOR(w, r, protocol.EnrollResponse{DeviceID: id})
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
		s.internalError(w, r, err)
		return
	}
	rv, _, err := s.st.RevocationState()
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	var tv uint64
	if raw, err := s.st.TrustList(); err == nil && len(raw) > 0 {
		// The server's own list: read its version without checking the
		// signature (checkpoints check it).
		tv, _ = trust.PeekVersion(raw)
	}
	s.writeSigned(w, r, protocol.TypeStatus, protocol.Status{
		ServerTime: s.clock.Now(), Nonce: nonce, DeviceID: id, Mark: mark, TrustVersion: tv, RevocationVersion: rv,
	})
}

// events takes a device's upload: one at a time from each device, within
// a budget of body bytes for all uploads in flight (taken by the stated
// length before a byte is read), and stored a few at a time.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	sr, ok := s.device(w, r)
	if !ok {
		return
	}
	n := r.ContentLength
	switch {
	case n < 0:
		http.Error(w, "an upload must give its length", http.StatusLengthRequired)
		return
	case n > s.lim.MaxUpload:
		w.Header().Set("Connection", "close")
		http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
		return
	}
	id, nonce := sr.Device, sr.Nonce
	if !s.startUpload(id) {
		// The device's earlier upload is still being received (it gave up
		// waiting for the answer and tried again): it is answered first.
		w.Header().Set("Retry-After", "30")
		http.Error(w, "an upload from this device is in progress", http.StatusTooManyRequests)
		return
	}
	defer s.endUpload(id)
	if !s.bodies.take(r.Context(), s.clock, s.lim.Queue, n) {
		busy(w)
		return
	}
	defer s.bodies.give(n)
	// An authenticated device on a slow link gets the time its body needs
	// at the slowest rate waited for, and then the usual time for the
	// answer. (Connection deadlines are on the network's clock, not the
	// injected one.)
	read := time.Now().Add(s.lim.ReadTimeout + s.lim.extraTime(n))
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
	var batch protocol.EventBatch
	if err := protocol.Dec.Unmarshal(body, &batch); err != nil || batch.DeviceID != id {
		http.Error(w, "malformed batch", http.StatusBadRequest)
		return
	}
	if !s.storing.take(r.Context(), s.clock, s.lim.Queue) {
		busy(w)
		return
	}
	if p := batch.Purged; p != nil {
		// The device's word, signed like the upload: its supervisor
		// purged these before they were sent, and its log says who.
		if len(p.Last) != 32 || p.To < p.From || p.To+1 != batch.From {
			s.storing.give()
			http.Error(w, "malformed purge declaration", http.StatusBadRequest)
			return
		}
		_, err := s.st.DeclarePurged(id, store.ForcedPurge{From: p.From, To: p.To, Last: [32]byte(p.Last), At: s.clock.Now()})
		switch {
		case errors.Is(err, store.ErrGap), errors.Is(err, store.ErrUnknownDevice):
			s.storing.give()
			s.log.Error("purge declaration refused", "device", id, "from", p.From, "to", p.To, "err", err)
			http.Error(w, err.Error(), http.StatusConflict)
			return
		case err != nil:
			s.storing.give()
			s.internalError(w, r, err)
			return
		}
		s.log.Warn("events purged at the checkpoint before upload", "device", id, "from", p.From, "to", p.To)
	}
	mark, err := s.st.StoreEvents(id, batch.Events)
	s.storing.give()
	switch {
	case errors.Is(err, store.ErrConflict), errors.Is(err, store.ErrBadEvent), errors.Is(err, store.ErrGap):
		s.log.Error("events refused", "device", id, "from", batch.From, "to", batch.To, "err", err)
		http.Error(w, err.Error(), http.StatusConflict)
		return
	case err != nil:
		s.internalError(w, r, err)
		return
	}
	s.writeSigned(w, r, protocol.TypeAck, protocol.Ack{DeviceID: id, Nonce: nonce, Mark: mark})
}

// startUpload marks an upload of device id in progress, unless one is.
func (s *Server) startUpload(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.uploading[id] {
		return false
	}
	s.uploading[id] = true
	return true
}

func (s *Server) endUpload(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.uploading, id)
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

// errBusy is a download that could not be prepared within the queue time.
var errBusy = errors.New("busy preparing downloads")

// prepare returns the chunks that take a checkpoint from since to the
// current version: from the cache (the version's snapshot, and the last
// maxDeltas deltas asked for), or prepared, a few at a time.
func (s *Server) prepare(ctx context.Context, since uint64) (*chunked, error) {
	if err := s.expire(); err != nil {
		return nil, err
	}
	version, _, err := s.st.RevocationState()
	if err != nil {
		return nil, err
	}
	if c := s.dl.lookup(version, since); c != nil {
		return c, nil
	}
	if !s.preparing.take(ctx, s.clock, s.lim.Queue) {
		return nil, errBusy
	}
	defer s.preparing.give()
	// Another request may have prepared it while this one waited.
	if c := s.dl.lookup(version, since); c != nil {
		return c, nil
	}
	items, snapshot, version, set, err := s.st.RevocationItems(since)
	if err != nil {
		return nil, err
	}
	c := &chunked{version: version, snapshot: snapshot, set: set}
	for i := 0; i < len(items); i += s.opts.ChunkEntries {
		part := items[i:min(len(items), i+s.opts.ChunkEntries)]
		b, err := protocol.EncodeChunk(part)
		if err != nil {
			return nil, err
		}
		c.chunks = append(c.chunks, b)
		c.infos = append(c.infos, protocol.ChunkInfo{Hash: sha256Sum(b), Entries: len(part)})
	}
	s.dl.keep(since, c)
	return c, nil
}

// expire removes the revocations past their drop-after time, and the
// registration codes and used assertion ids past their expiry, at most
// once a minute.
func (s *Server) expire() error {
	s.dl.mu.Lock()
	now := s.clock.Now()
	due := now.Sub(s.dl.lastExpire) > time.Minute
	if due {
		s.dl.lastExpire = now
	}
	s.dl.mu.Unlock()
	if !due {
		return nil
	}
	_, n, err := s.st.Expire(now)
	if err != nil {
		return err
	}
	if n > 0 {
		s.log.Info("revocations expired", "entries", n)
	}
	if n, err = s.st.ExpireProofs(now); err != nil {
		return err
	}
	if n > 0 {
		s.log.Info("expired registration codes and assertion ids forgotten", "count", n)
	}
	return nil
}

// lookup returns the prepared download from since to version, if it is
// kept.
func (d *downloads) lookup(version, since uint64) *chunked {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case version < d.version:
		return nil // the version has moved on since the caller read it
	case version > d.version:
		d.version, d.snapshot, d.deltas = version, nil, nil
	}
	if since == 0 {
		return d.snapshot
	}
	for i, e := range d.deltas {
		if e.since == since {
			copy(d.deltas[1:i+1], d.deltas[:i])
			d.deltas[0] = e
			return e.c
		}
	}
	return nil
}

// keep keeps a prepared download, unless the version has moved on.
func (d *downloads) keep(since uint64, c *chunked) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if c.version < d.version {
		return
	}
	if c.version > d.version {
		d.version, d.snapshot, d.deltas = c.version, nil, nil
	}
	if c.snapshot {
		d.snapshot = c
	}
	if since != 0 {
		d.deltas = append([]delta{{since, c}}, d.deltas[:min(len(d.deltas), maxDeltas-1)]...)
	}
}

// download prepares the download a manifest or chunk request asks for,
// answering the request itself if that fails.
func (s *Server) download(w http.ResponseWriter, r *http.Request, since uint64) (*chunked, bool) {
	c, err := s.prepare(r.Context(), since)
	switch {
	case errors.Is(err, errBusy):
		busy(w)
		return nil, false
	case err != nil:
		s.internalError(w, r, err)
		return nil, false
	}
	return c, true
}

func (s *Server) manifest(w http.ResponseWriter, r *http.Request) {
	sr, ok := s.device(w, r)
	if !ok {
		return
	}
	if err := sr.CheckBody(nil); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	since, err := strconv.ParseUint(r.URL.Query().Get("since"), 10, 64)
	if err != nil {
		http.Error(w, "since must be a version", http.StatusBadRequest)
		return
	}
	c, ok := s.download(w, r, since)
	if !ok {
		return
	}
	now := s.clock.Now()
	s.writeSigned(w, r, protocol.TypeManifest, protocol.Manifest{
		Version: c.version, Since: since, Snapshot: c.snapshot, IssuedAt: now, Expires: now.Add(s.opts.ManifestValidity),
		Set: c.set, Chunks: c.infos,
	})
}

func (s *Server) chunk(w http.ResponseWriter, r *http.Request) {
	sr, ok := s.device(w, r)
	if !ok {
		return
	}
	if err := sr.CheckBody(nil); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	q := r.URL.Query()
	version, err1 := strconv.ParseUint(q.Get("version"), 10, 64)
	since, err2 := strconv.ParseUint(q.Get("since"), 10, 64)
	index, err3 := strconv.Atoi(q.Get("index"))
	if err1 != nil || err2 != nil || err3 != nil || index < 0 {
		http.Error(w, "version, since and index are required", http.StatusBadRequest)
		return
	}
	c, ok := s.download(w, r, since)
	if !ok {
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

// admin authenticates the operator, before anything of the request is
// read.
func (s *Server) admin(w http.ResponseWriter, r *http.Request) bool {
	key := clientKey(r.RemoteAddr)
	want := "Bearer " + s.opts.AdminToken
	if s.opts.AdminToken == "" || subtle.ConstantTimeCompare([]byte(r.Header.Get(protocol.HeaderAdmin)), []byte(want)) != 1 {
		s.failed(w, key, "admin token", "admin token required", http.StatusUnauthorized)
		return false
	}
	s.fails.ok(key)
	return true
}

// adminRevoke revokes the credentials of the holder of an ID number
// issued at or before the time the operator gives, as given; without a
// time, at or before now, or the second after the subject's cut-off held
// if that is later (Storage.RevokeNow).
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
	sub := [store.SubjectSize]byte(credential.Pseudonym(s.keys.Pseudonym, id))
	var version uint64
	if req.Before.IsZero() {
		// Now: decided in the storage's transaction, no earlier than the
		// second after the subject's cut-off held, which a credential
		// issued in the second of a colour change is dated.
		version, err = s.st.RevokeNow(s.revocation(sub, s.clock.Now()))
	} else {
		// A time the operator gave is applied as given.
		version, err = s.st.Revoke([]store.RevEntry{s.revocation(sub, req.Before)})
	}
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	s.log.Info("revocation added", "version", version)
	s.writeCBOR(w, r, map[string]uint64{"version": version})
}

// revocation is the entry revoking a subject's credentials issued at or
// before before.
func (s *Server) revocation(sub [store.SubjectSize]byte, before time.Time) store.RevEntry {
	return store.RevEntry{Subject: sub, Before: before.Unix(), DropAfter: before.Add(s.opts.Keep).Unix()}
}

func (s *Server) adminStatus(w http.ResponseWriter, r *http.Request) {
	if !s.admin(w, r) {
		return
	}
	v, set, err := s.st.RevocationState()
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	ds, err := s.st.Devices()
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	st := protocol.AdminStatus{RevocationVersion: v, Revocations: set.Count, Devices: []protocol.DeviceInfo{}}
	for _, d := range ds {
		st.Devices = append(st.Devices, protocol.DeviceInfo{ID: d.ID, Name: d.Name, Enrolled: d.Enrolled, Mark: d.Mark})
	}
	s.writeCBOR(w, r, st)
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
		s.internalError(w, r, err)
		return
	}
	s.writeCBOR(w, r, protocol.AdminTokenResponse{Token: token})
}

func sha256Sum(b []byte) [32]byte { return sha256.Sum256(b) }
