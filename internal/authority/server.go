// Package authority is the reference authority's HTTP server: it enrols
// checkpoints, takes their event logs, serves the trust list and the
// revocations as signed, versioned, chunked downloads, issues holders
// their daily credentials, and takes revocations from its operator.
// docs/sync.md specifies the protocol. cmd/authority's serve command runs
// it; its storage is behind the Storage interface (store.Authority
// implements it), so that a database server can replace bbolt.
package authority

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
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
	Declare(subject [store.SubjectSize]byte, now time.Time, gap time.Duration) (bool, error)
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
}

// Server is the authority's HTTP API.
type Server struct {
	st    Storage
	keys  Keys
	opts  Options
	clock clock.Clock
	log   *slog.Logger

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
	return &Server{st: st, keys: keys, opts: opts, clock: opts.Clock, log: opts.Log.With("component", "authority")}
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
	mux.HandleFunc("POST "+protocol.PathDeclare, s.declare)
	mux.HandleFunc("POST "+protocol.PathAdminRevoke, s.adminRevoke)
	mux.HandleFunc("POST "+protocol.PathAdminToken, s.adminToken)
	mux.HandleFunc("POST "+protocol.PathAdminStatus, s.adminStatus)
	return mux
}

// Serve serves on ln until ctx ends.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
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

// maxBody bounds request bodies: a batch of events is at most a few
// megabytes.
const maxBody = 64 << 20

func readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		http.Error(w, "body too large or unreadable", http.StatusRequestEntityTooLarge)
		return nil, false
	}
	return body, true
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

// device authenticates a device's request.
func (s *Server) device(w http.ResponseWriter, r *http.Request, body []byte) (string, []byte, bool) {
	id, nonce, err := protocol.VerifyRequest(r, body, s.st.DeviceKey)
	if err != nil {
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return "", nil, false
	}
	return id, nonce, true
}

func (s *Server) enroll(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	var req protocol.EnrollRequest
	if err := protocol.Dec.Unmarshal(body, &req); err != nil || len(req.DeviceKey) != ed25519.PublicKeySize {
		http.Error(w, "malformed enrolment", http.StatusBadRequest)
		return
	}
	id, err := s.st.Enroll(req.Token, req.Name, req.DeviceKey, s.clock.Now())
	if errors.Is(err, store.ErrBadToken) {
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
	id, nonce, ok := s.device(w, r, nil)
	if !ok {
		return
	}
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
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	id, nonce, ok := s.device(w, r, body)
	if !ok {
		return
	}
	var batch protocol.EventBatch
	if err := protocol.Dec.Unmarshal(body, &batch); err != nil || batch.DeviceID != id {
		http.Error(w, "malformed batch", http.StatusBadRequest)
		return
	}
	mark, err := s.st.StoreEvents(id, batch.Events)
	switch {
	case errors.Is(err, store.ErrConflict), errors.Is(err, store.ErrBadEvent):
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
	w.Header().Set("Content-Type", protocol.ContentType)
	w.Write(c.chunks[index])
}

// declare issues a holder the day's credential. A holder may declare at
// most once a day.
func (s *Server) declare(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	var d protocol.Declaration
	if err := protocol.Dec.Unmarshal(body, &d); err != nil || len(d.HolderKey) != ed25519.PublicKeySize {
		http.Error(w, "malformed declaration", http.StatusBadRequest)
		return
	}
	status, err := credential.ParseStatus(d.Colour)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	id := credential.NormalizeID(d.IDNumber)
	if len(id) < 6 {
		http.Error(w, "ID number too short", http.StatusBadRequest)
		return
	}
	sub := credential.Pseudonym(s.keys.Pseudonym, id)
	now := s.clock.Now().Truncate(time.Second)
	allowed, err := s.st.Declare([store.SubjectSize]byte(sub), now, 24*time.Hour)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if !allowed {
		http.Error(w, "already declared in the last 24 hours", http.StatusTooManyRequests)
		return
	}
	cid := make([]byte, credential.IDSize)
	rand.Read(cid)
	c := &credential.Credential{
		Issuer: s.keys.IssuerCode, ID: cid, Subject: sub, Status: status, Region: id[:6],
		MaskedName: credential.MaskName(d.Name), IDSuffix: credential.IDSuffix(id), IDHash: credential.IDHash(id, sub),
		IssuedAt: now, Expires: now.Add(s.opts.CredentialValidity), HolderKey: d.HolderKey,
	}
	raw, err := credential.Issue(c, s.keys.Issuer)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", protocol.ContentType)
	w.Write(raw)
}

func (s *Server) admin(w http.ResponseWriter, r *http.Request) bool {
	want := "Bearer " + s.opts.AdminToken
	if s.opts.AdminToken == "" || subtle.ConstantTimeCompare([]byte(r.Header.Get(protocol.HeaderAdmin)), []byte(want)) != 1 {
		http.Error(w, "admin token required", http.StatusUnauthorized)
		return false
	}
	return true
}

func (s *Server) adminRevoke(w http.ResponseWriter, r *http.Request) {
	if !s.admin(w, r) {
		return
	}
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	var req protocol.AdminRevoke
	if err := protocol.Dec.Unmarshal(body, &req); err != nil || req.IDNumber == "" {
		http.Error(w, "malformed revocation", http.StatusBadRequest)
		return
	}
	before := req.Before
	if before.IsZero() {
		before = s.clock.Now()
	}
	e := store.RevEntry{Subject: [store.SubjectSize]byte(credential.Pseudonym(s.keys.Pseudonym, req.IDNumber)),
		Before: before.Unix(), DropAfter: before.Add(s.opts.Keep).Unix()}
	version, err := s.st.Revoke([]store.RevEntry{e})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	s.log.Info("revocation added", "version", version)
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
	body, ok := readBody(w, r)
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
