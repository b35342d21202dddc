package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/checkpointd/checkpoint/internal/protocol"
	"github.com/checkpointd/checkpoint/internal/trust"
	"github.com/checkpointd/checkpoint/store"
)

// box is a simulated checkpoint: its device key, the address it connects
// from, and, once prepared, its uploads, signed when they are sent.
type box struct {
	i       int
	name    string
	key     ed25519.PrivateKey
	ip      net.IP
	id      string // the device id its enrolment got
	uploads []upload
}

// upload is one prepared upload: the encoded batch and its last event.
type upload struct {
	body   []byte
	to     uint64
	events int
}

func newBox(i int) *box {
	seed := sha256.Sum256(binary.BigEndian.AppendUint64([]byte("authbench device key"), uint64(i)))
	// Each box connects from an address of its own, as checkpoints do:
	// the authority's limits are per client address.
	ip := net.IPv4(127, byte(1+i/62500), byte(1+i/250%250), byte(1+i%250))
	return &box{i: i, name: fmt.Sprintf("bench-%05d", i), key: ed25519.NewKeyFromSeed(seed[:]), ip: ip}
}

// client is an HTTP client connecting from the box's address; close
// closes its connections.
func (b *box) client() (hc *http.Client, close func()) {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: b.ip}, Timeout: 10 * time.Second}
	tr := &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 1, DisableCompression: true}
	return &http.Client{Transport: tr}, tr.CloseIdleConnections
}

// maxBatchBytes bounds the events of one upload, as the syncer does.
const maxBatchBytes = 4 << 20

// prepare makes the box's day of events, hash-chained from the zero hash
// in the stored encoding, and its uploads: batches of at most batch events
// and maxBatchBytes, as the syncer cuts them.
func (b *box) prepare(events, batch int, day time.Time) error {
	rng := mrand.New(mrand.NewPCG(uint64(b.i), 0x5eed))
	bytesOf := func(n int) []byte {
		out := make([]byte, n)
		for i := range out {
			out[i] = byte(rng.Uint32())
		}
		return out
	}
	gate := fmt.Sprintf("gate-%d", b.i%7+1)
	step := 24 * time.Hour / time.Duration(events)
	var prev [32]byte
	raws := make([][]byte, 0, events)
	for seq := 1; seq <= events; seq++ {
		at := day.Add(time.Duration(seq-1)*step + time.Duration(rng.Int64N(int64(step)))).Truncate(time.Microsecond)
		e := store.Event{Seq: uint64(seq), Time: at, ClockUncertainty: time.Duration(20+rng.IntN(200)) * time.Millisecond,
			Kind: "passage", Decision: "pass", Status: "green", Subject: bytesOf(store.SubjectSize), CredentialID: bytesOf(8),
			KeyID: bytesOf(8), Gate: gate, Lane: "1", OpenedBy: "code", Gathered: time.Duration(800+rng.IntN(2000)) * time.Millisecond,
			Readings:   []store.ReadingRecord{{Body: 3600 + rng.Int32N(80), Source: "ir", At: at.Add(-time.Second)}},
			GateAction: "pulse",
			// The masked name, sealed as the box seals it: a 24-byte
			// nonce, about 30 bytes, a 16-byte tag.
			Private: bytesOf(70), Prev: prev}
		if rng.IntN(40) == 0 {
			e.Decision, e.Reasons, e.GateAction = "refer", []string{"fever"}, "closed"
			e.Readings[0].Body = 3740 + rng.Int32N(60)
		}
		h, err := store.ChainHash(e)
		if err != nil {
			return fmt.Errorf("event %d: %w", seq, err)
		}
		e.Hash = h
		raw, err := store.EncodeEvent(e)
		if err != nil {
			return fmt.Errorf("event %d: %w", seq, err)
		}
		raws = append(raws, raw)
		prev = h
	}
	b.uploads = nil
	for from := 0; from < len(raws); {
		n, size := 0, 0
		for from+n < len(raws) && n < batch {
			if size+len(raws[from+n]) > maxBatchBytes && n > 0 {
				break
			}
			size += len(raws[from+n])
			n++
		}
		body, err := protocol.Enc.Marshal(protocol.EventBatch{DeviceID: b.id, From: uint64(from + 1), To: uint64(from + n),
			Events: raws[from : from+n]})
		if err != nil {
			return fmt.Errorf("batch: %w", err)
		}
		b.uploads = append(b.uploads, upload{body: body, to: uint64(from + n), events: n})
		from += n
	}
	return nil
}

// recorder gathers what the simulated checkpoints saw.
type recorder struct {
	mu      sync.Mutex
	start   time.Time
	lat     map[string][]time.Duration // of each kind of request answered 200
	bytes   map[string]int64           // sent and received, by kind
	retried map[string]int             // "upload 503": answered 429 or 503 with Retry-After, and tried again
	errs    int
	msgs    []string
	acks    []ack // events acknowledged, when
	events  atomic.Int64
}

type ack struct {
	at     time.Duration // since start
	events int
}

func newRecorder() *recorder {
	return &recorder{start: time.Now(), lat: map[string][]time.Duration{}, bytes: map[string]int64{}, retried: map[string]int{}}
}

func (r *recorder) latency(kind string, d time.Duration, n int) {
	r.mu.Lock()
	r.lat[kind] = append(r.lat[kind], d)
	r.bytes[kind] += int64(n)
	r.mu.Unlock()
}

func (r *recorder) retry(kind string, code int) {
	r.mu.Lock()
	r.retried[fmt.Sprintf("%s %d", kind, code)]++
	r.mu.Unlock()
}

func (r *recorder) fail(err error) {
	r.mu.Lock()
	r.errs++
	if len(r.msgs) < 5 {
		r.msgs = append(r.msgs, err.Error())
	}
	r.mu.Unlock()
}

func (r *recorder) acked(events int) {
	r.events.Add(int64(events))
	r.mu.Lock()
	r.acks = append(r.acks, ack{time.Since(r.start), events})
	r.mu.Unlock()
}

func (r *recorder) retries() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.retried {
		n += c
	}
	return n
}

// windowMedian is the median of the ingest rates of the whole windows of
// w in the phase: steadier than the overall rate on a busy machine.
func (r *recorder) windowMedian(w, phase time.Duration) float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := int(phase / w)
	if n < 3 {
		return 0
	}
	counts := make([]float64, n)
	for _, a := range r.acks {
		if i := int(a.at / w); i < n {
			counts[i] += float64(a.events)
		}
	}
	// The first and last windows are the ramp up and down.
	counts = counts[1 : n-1]
	slices.Sort(counts)
	return counts[len(counts)/2] / w.Seconds()
}

// how a request is authenticated
type auth int

const (
	authNone   auth = iota // enrolment: the token is in the body
	authDevice             // signed by the box's device key
	authAdmin              // the operator's bearer token
)

// maxRetries bounds the retries of a request answered 429 or 503.
const maxRetries = 10

// timeoutFor is a request's deadline for the bytes it moves, as the
// syncer's: 30 s plus their time at 4 KiB/s.
func timeoutFor(n int) time.Duration { return 30*time.Second + time.Duration(n)*time.Second/(4<<10) }

// sim is the simulated checkpoints' side: the authority's address and the
// keys its answers are checked with.
type sim struct {
	base     string
	admin    string // the operator's token
	listKeys []ed25519.PublicKey
	adminHC  *http.Client
	rec      *recorder
}

func newSim(base, admin string, listKeys []ed25519.PublicKey, concurrency int) *sim {
	// The operator's calls come from one address: stay within the
	// authority's 64 connections from one client.
	tr := &http.Transport{MaxIdleConnsPerHost: min(concurrency, 32), MaxConnsPerHost: 32, DisableCompression: true}
	return &sim{base: base, admin: admin, listKeys: listKeys, adminHC: &http.Client{Transport: tr}, rec: newRecorder()}
}

// do sends a request and returns the body of its 200 answer and the
// request's nonce. A 429 or 503 answered with Retry-After is tried again
// after it (with a new nonce and signature), up to maxRetries times;
// expect is the size of the answer expected, for the deadline.
func (s *sim) do(ctx context.Context, hc *http.Client, kind, method, path string, body []byte, a auth, b *box, expect int) ([]byte, []byte, error) {
	for attempt := 0; ; attempt++ {
		nonce := make([]byte, 16)
		rand.Read(nonce)
		out, code, wait, err := s.send(ctx, hc, kind, method, path, body, a, b, nonce, expect)
		if err == nil {
			return out, nonce, nil
		}
		if wait <= 0 || attempt == maxRetries {
			return nil, nil, err
		}
		s.rec.retry(kind, code)
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-time.After(wait):
		}
	}
}

// send sends a request once. A refusal that says when to try again
// (429, 503 with Retry-After) comes with that time.
func (s *sim) send(ctx context.Context, hc *http.Client, kind, method, path string, body []byte, a auth, b *box, nonce []byte,
	expect int) ([]byte, int, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, timeoutFor(len(body)+expect))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, s.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, 0, 0, fmt.Errorf("%s: %w", kind, err)
	}
	req.Header.Set("Content-Type", protocol.ContentType)
	switch a {
	case authDevice:
		protocol.SignRequest(req, b.id, b.key, nonce, time.Now(), body)
	case authAdmin:
		req.Header.Set(protocol.HeaderAdmin, "Bearer "+s.admin)
	}
	t0 := time.Now()
	res, err := hc.Do(req)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("%s: %w", kind, err)
	}
	out, err := io.ReadAll(io.LimitReader(res.Body, 64<<20))
	res.Body.Close()
	took := time.Since(t0)
	if err != nil {
		return nil, res.StatusCode, 0, fmt.Errorf("%s: reading the answer: %w", kind, err)
	}
	if res.StatusCode == http.StatusOK {
		s.rec.latency(kind, took, len(body)+len(out))
		return out, res.StatusCode, 0, nil
	}
	var wait time.Duration
	if res.StatusCode == http.StatusTooManyRequests || res.StatusCode == http.StatusServiceUnavailable {
		if n, err := strconv.Atoi(res.Header.Get("Retry-After")); err == nil && n >= 0 {
			wait = max(time.Duration(n)*time.Second, 100*time.Millisecond)
		}
	}
	return nil, res.StatusCode, wait, fmt.Errorf("%s: %s: %s", kind, res.Status, bytes.TrimSpace(out))
}

// open checks a signed answer of type typ with the trust list's list keys
// and decodes its payload into v.
func (s *sim) open(raw []byte, typ string, v any) error {
	payload, err := trust.OpenObject(raw, typ, s.listKeys...)
	if err != nil {
		return fmt.Errorf("%s: %w", typ, err)
	}
	if err := protocol.Dec.Unmarshal(payload, v); err != nil {
		return fmt.Errorf("%s: %w", typ, err)
	}
	return nil
}

// enrol gets a one-time token from the admin API and enrols the box with
// it.
func (s *sim) enrol(ctx context.Context, b *box) error {
	req, err := protocol.Enc.Marshal(protocol.AdminToken{Name: b.name})
	if err != nil {
		return err
	}
	raw, _, err := s.do(ctx, s.adminHC, "token", http.MethodPost, protocol.PathAdminToken, req, authAdmin, nil, 0)
	if err != nil {
		return err
	}
	var tok protocol.AdminTokenResponse
	if err := protocol.Dec.Unmarshal(raw, &tok); err != nil || tok.Token == "" {
		return fmt.Errorf("token answer: %v", err)
	}
	hc, done := b.client()
	defer done()
	req, err = protocol.Enc.Marshal(protocol.EnrollRequest{Name: b.name, DeviceKey: b.key.Public().(ed25519.PublicKey), Token: tok.Token})
	if err != nil {
		return err
	}
	raw, _, err = s.do(ctx, hc, "enrol", http.MethodPost, protocol.PathEnroll, req, authNone, b, 0)
	if err != nil {
		return err
	}
	var res protocol.EnrollResponse
	if err := protocol.Dec.Unmarshal(raw, &res); err != nil || res.DeviceID == "" {
		return fmt.Errorf("enrolment answer: %v", err)
	}
	b.id = res.DeviceID
	return nil
}

// errWrongAnswer is a signed answer that does not say what it must.
var errWrongAnswer = errors.New("the authority's answer is wrong")

// syncOnce is one sync of the box, as sync.Syncer's: status, the uploads
// from the authority's mark, and the revocations from version since.
func (s *sim) syncOnce(ctx context.Context, b *box, since uint64) error {
	hc, done := b.client()
	defer done()
	raw, nonce, err := s.do(ctx, hc, "status", http.MethodGet, protocol.PathStatus, nil, authDevice, b, 0)
	if err != nil {
		return err
	}
	var st protocol.Status
	if err := s.open(raw, protocol.TypeStatus, &st); err != nil {
		return err
	}
	if !bytes.Equal(st.Nonce, nonce) || st.DeviceID != b.id {
		return fmt.Errorf("%w: status for another request", errWrongAnswer)
	}
	mark := st.Mark
	for _, u := range b.uploads {
		if u.to <= mark {
			continue
		}
		raw, nonce, err := s.do(ctx, hc, "upload", http.MethodPost, protocol.PathEvents, u.body, authDevice, b, 1<<10)
		if err != nil {
			return err
		}
		var a protocol.Ack
		if err := s.open(raw, protocol.TypeAck, &a); err != nil {
			return err
		}
		if !bytes.Equal(a.Nonce, nonce) || a.DeviceID != b.id || a.Mark != u.to {
			return fmt.Errorf("%w: acknowledged up to %d, sent up to %d", errWrongAnswer, a.Mark, u.to)
		}
		s.rec.acked(int(a.Mark - mark))
		mark = a.Mark
	}
	b.uploads = nil // sent: their memory can go
	_, err = s.revocations(ctx, hc, b, since, "manifest", "chunk")
	return err
}

// fetched is a revocation download: the manifest's time (which includes
// preparing the download when it is not prepared yet), the whole
// download's, and what it held.
type fetched struct {
	manifest, total time.Duration
	snapshot        bool
	version         uint64
	chunks, entries int
	bytes           int
	set             uint64 // the entries of the set the checkpoint ends with
}

// revocations fetches the download from version since to the current
// version: the signed manifest, then each chunk, checked against its hash
// in the manifest. kinds name its requests for the recorder.
func (s *sim) revocations(ctx context.Context, hc *http.Client, b *box, since uint64, manifestKind, chunkKind string) (fetched, error) {
	var f fetched
	t0 := time.Now()
	q := url.Values{"since": {strconv.FormatUint(since, 10)}}
	raw, _, err := s.do(ctx, hc, manifestKind, http.MethodGet, protocol.PathManifest+"?"+q.Encode(), nil, authDevice, b, 0)
	if err != nil {
		return f, err
	}
	f.manifest = time.Since(t0)
	var m protocol.Manifest
	if err := s.open(raw, protocol.TypeManifest, &m); err != nil {
		return f, err
	}
	if m.Since != since || m.Version < since {
		return f, fmt.Errorf("%w: manifest %d since %d, asked since %d", errWrongAnswer, m.Version, m.Since, since)
	}
	if !m.Expires.After(time.Now()) {
		return f, fmt.Errorf("%w: a manifest that expired at %s", errWrongAnswer, m.Expires)
	}
	f.snapshot, f.version, f.chunks, f.set, f.bytes = m.Snapshot, m.Version, len(m.Chunks), m.Set.Count, len(raw)
	var chunks [][]byte // a snapshot's, checked against the set once timed
	for i, c := range m.Chunks {
		q := url.Values{"version": {strconv.FormatUint(m.Version, 10)}, "since": {strconv.FormatUint(since, 10)}, "index": {strconv.Itoa(i)}}
		raw, _, err := s.do(ctx, hc, chunkKind, http.MethodGet, protocol.PathChunk+"?"+q.Encode(), nil, authDevice, b, c.Entries*32)
		if err != nil {
			return f, err
		}
		if sha256.Sum256(raw) != c.Hash {
			return f, fmt.Errorf("%w: chunk %d does not match its hash in the manifest", errWrongAnswer, i)
		}
		f.entries += c.Entries
		f.bytes += len(raw)
		if m.Snapshot {
			chunks = append(chunks, raw)
		}
	}
	f.total = time.Since(t0)
	if m.Snapshot {
		// What the checkpoint checks before it puts a version in force:
		// the count and digest of the set it ends with.
		var set store.SetDigest
		for i, raw := range chunks {
			es, err := protocol.DecodeChunk(raw)
			if err != nil {
				return f, fmt.Errorf("%w: chunk %d: %v", errWrongAnswer, i, err)
			}
			if len(es) != m.Chunks[i].Entries {
				return f, fmt.Errorf("%w: chunk %d holds %d entries, its manifest says %d", errWrongAnswer, i, len(es), m.Chunks[i].Entries)
			}
			for _, e := range es {
				if e.Tombstone {
					return f, fmt.Errorf("%w: a removal in a snapshot", errWrongAnswer)
				}
				set.Add(e)
			}
		}
		if set != m.Set {
			return f, fmt.Errorf("%w: a snapshot of %d entries for a set of %d, or another digest", errWrongAnswer, set.Count, m.Set.Count)
		}
	}
	return f, nil
}

// forEach runs fn for 0..n-1 on workers goroutines, until ctx ends.
func forEach(ctx context.Context, n, workers int, fn func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < min(workers, n); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				fn(i)
			}
		}()
	}
	wg.Wait()
}
