package sync_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	stdsync "sync"
	"testing"
	"time"

	"github.com/checkpointd/checkpoint/internal/authority"
	"github.com/checkpointd/checkpoint/internal/clock/clocktest"
	"github.com/checkpointd/checkpoint/internal/credential"
	"github.com/checkpointd/checkpoint/internal/credential/credentialtest"
	"github.com/checkpointd/checkpoint/internal/protocol"
	"github.com/checkpointd/checkpoint/internal/trust"
	"github.com/checkpointd/checkpoint/store"
	"github.com/checkpointd/checkpoint/sync"
)

// world is an authority and one checkpoint, in one process, on loopback.
type world struct {
	t        *testing.T
	f        *credentialtest.Fixture
	dir      string
	list     ed25519.PrivateKey
	authDB   *store.Authority
	authPath string
	srv      *httptest.Server
	aclock   *clocktest.Fake // the authority's clock: the true time
	bclock   *clocktest.Fake // the checkpoint's wall clock
	box      *store.Box
	est      *sync.Estimator
	syncer   *sync.Syncer
	tap      *tap
}

// tap lets a test interfere with the link: drop answers, cut downloads,
// alter or replace bodies.
type tap struct {
	mu     stdsync.Mutex
	next   http.RoundTripper
	mangle func(path string, body []byte) ([]byte, error) // nil: pass through
	// answer, if set and it answers (or fails), stands in for the
	// authority.
	answer func(r *http.Request) (*http.Response, error)
	calls  map[string]int
	sent   []*http.Request // copies of the requests sent, with their bodies
	codes  []string        // path and status of each answer from the authority
}

func (t *tap) RoundTrip(r *http.Request) (*http.Response, error) {
	c := r.Clone(r.Context())
	if r.GetBody != nil {
		c.Body, _ = r.GetBody()
	}
	t.mu.Lock()
	t.sent = append(t.sent, c)
	answer := t.answer
	t.mu.Unlock()
	if answer != nil {
		if res, err := answer(r); res != nil || err != nil {
			return res, err
		}
	}
	res, err := t.next.RoundTrip(r)
	if err == nil {
		t.mu.Lock()
		t.codes = append(t.codes, fmt.Sprintf("%s %d", r.URL.Path, res.StatusCode))
		t.mu.Unlock()
	}
	if err != nil {
		return res, err
	}
	t.mu.Lock()
	t.calls[r.URL.Path]++
	m := t.mangle
	t.mu.Unlock()
	if m == nil {
		return res, nil
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	body, err = m(r.URL.Path+"?"+r.URL.RawQuery, body)
	if err != nil {
		return nil, err
	}
	res.Body = io.NopCloser(bytes.NewReader(body))
	res.ContentLength = int64(len(body))
	return res, nil
}

func (t *tap) setAnswer(a func(r *http.Request) (*http.Response, error)) {
	t.mu.Lock()
	t.answer = a
	t.mu.Unlock()
}

func (t *tap) set(m func(string, []byte) ([]byte, error)) {
	t.mu.Lock()
	t.mangle = m
	t.mu.Unlock()
}

func newWorld(t *testing.T) *world {
	w := &world{t: t, f: credentialtest.New(), dir: t.TempDir(), list: credentialtest.Key("list")}
	w.aclock = clocktest.New(w.f.Now)
	w.bclock = clocktest.New(w.f.Now)
	// The trust list names the issuer and the list key.
	l := *w.f.Trust
	l.Version = 2
	l.ListKeys = []trust.ListKey{{PublicKey: w.list.Public().(ed25519.PublicKey),
		NotBefore: w.f.Now.Add(-365 * 24 * time.Hour), NotAfter: w.f.Now.Add(365 * 24 * time.Hour)}}
	raw, err := trust.Sign(&l, w.f.Root)
	if err != nil {
		t.Fatal(err)
	}
	w.authPath = filepath.Join(w.dir, "authority.db")
	w.startAuthority()
	if err := w.authDB.SetTrustList(raw); err != nil {
		t.Fatal(err)
	}
	if err := w.authDB.AddToken("token-1", "gate-3", w.f.Now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	w.tap = &tap{next: http.DefaultTransport, calls: map[string]int{}}
	w.box, err = store.OpenBox(filepath.Join(w.dir, "box.db"), store.Options{Clock: w.bclock})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.box.Close(); w.srv.Close(); w.authDB.Close() })
	w.est, err = sync.NewEstimator(w.bclock, w.box, -1, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.syncer, err = sync.New(sync.Config{
		Authority: w.srv.URL, Name: "gate-3", EnrollToken: "token-1",
		DeviceKey: credentialtest.Key("device"), Root: w.f.Root.Public().(ed25519.PublicKey), Batch: 100,
	}, w.box, w.est, w.bclock, nil, &http.Client{Transport: w.tap})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// startAuthority opens the authority's database and serves it; the URL
// stays the same across restarts.
func (w *world) startAuthority() {
	var err error
	w.authDB, err = store.OpenAuthority(w.authPath)
	if err != nil {
		w.t.Fatal(err)
	}
	server := authority.New(w.authDB, authority.Keys{Issuer: w.f.Issuer, IssuerCode: "GD", List: w.list, Pseudonym: w.f.PseudonymKey},
		authority.Options{Clock: w.aclock, AdminToken: "admin", ChunkEntries: 4})
	if w.srv == nil {
		w.srv = httptest.NewServer(server.Handler())
	} else {
		w.srv.Config.Handler = server.Handler()
	}
}

func (w *world) restartAuthority(fromBackup string) {
	w.authDB.Close()
	if fromBackup != "" {
		b, err := os.ReadFile(fromBackup)
		if err != nil {
			w.t.Fatal(err)
		}
		if err := os.WriteFile(w.authPath, b, 0o600); err != nil {
			w.t.Fatal(err)
		}
	}
	w.startAuthority()
}

func (w *world) record(n int) {
	for i := 0; i < n; i++ {
		if _, err := w.box.Record(context.Background(), store.Event{Time: w.bclock.Now(), Kind: "scan", Decision: "pass", Gate: "gate-3"}); err != nil {
			w.t.Fatal(err)
		}
	}
}

func (w *world) sync() error { return w.syncer.SyncOnce(context.Background()) }

func (w *world) mustSync() {
	w.t.Helper()
	if err := w.sync(); err != nil {
		w.t.Fatal(err)
	}
}

// held returns the events the authority holds for the box, checking that
// they are 1..n once each with the box's hashes.
func (w *world) held() int {
	w.t.Helper()
	d, _, _ := w.box.Device()
	evs, err := w.authDB.DeviceEvents(d.ID, 0, 1<<30)
	if err != nil {
		w.t.Fatal(err)
	}
	// The box may have pruned the oldest after their upload.
	ours, err := w.box.Events(1, len(evs))
	if err != nil {
		w.t.Fatal(err)
	}
	hashes := map[uint64][32]byte{}
	for _, e := range ours {
		hashes[e.Seq] = e.Hash
	}
	for i, e := range evs {
		if e.Seq != uint64(i+1) {
			w.t.Fatalf("authority holds event %d at position %d", e.Seq, i)
		}
		if h, ok := hashes[e.Seq]; ok && h != e.Hash {
			w.t.Fatalf("authority's event %d is not the box's", e.Seq)
		}
	}
	return len(evs)
}

func (w *world) subject(id string) [store.SubjectSize]byte {
	return [store.SubjectSize]byte(credential.Pseudonym(w.f.PseudonymKey, id))
}

func (w *world) revoke(ids ...string) {
	var es []store.RevEntry
	for _, id := range ids {
		es = append(es, store.RevEntry{Subject: w.subject(id), Before: w.f.Now.Unix(), DropAfter: w.f.Now.Add(30 * 24 * time.Hour).Unix()})
	}
	if _, err := w.authDB.Revoke(es); err != nil {
		w.t.Fatal(err)
	}
}

func (w *world) revoked(id string) bool {
	s := w.subject(id)
	return w.box.Revoked(s[:], w.f.Now.Add(-time.Hour))
}

func ids(prefix string, n int) []string {
	var out []string
	for i := 0; i < n; i++ {
		out = append(out, fmt.Sprintf("%s%012d", prefix, i))
	}
	return out
}

func TestFirstSync(t *testing.T) {
	w := newWorld(t)
	w.record(250)
	w.bclock.Advance(time.Minute) // the box's clock is a minute fast... from here on
	w.aclock.Advance(time.Minute)
	w.mustSync()
	if d, ok, _ := w.box.Device(); !ok || d.ID == "" {
		t.Fatal("not enrolled")
	}
	if n := w.held(); n != 250 {
		t.Fatalf("authority holds %d events, want 250", n)
	}
	if m, _ := w.box.Mark(); m != 250 {
		t.Errorf("mark %d", m)
	}
	if l := w.syncer.Trust(); l == nil || l.Version != 2 {
		t.Errorf("trust list %+v", l)
	}
	now := w.est.Now()
	if now.Uncertainty < 0 || now.Uncertainty > time.Second || now.Time.Sub(w.aclock.Now()).Abs() > time.Second {
		t.Errorf("clock after sync: %+v, authority at %v", now, w.aclock.Now())
	}
	if st := w.syncer.Status(); st.Error != "" || st.Unsent != 0 || st.Mark != 250 {
		t.Errorf("status %+v", st)
	}
	// A second sync with nothing new is quiet.
	w.mustSync()
	if n := w.held(); n != 250 {
		t.Fatalf("authority holds %d events after a second sync", n)
	}
	// An enrolment token works once.
	if _, err := w.authDB.Enroll("token-1", "again", credentialtest.Key("x").Public().(ed25519.PublicKey), w.f.Now); !errors.Is(err, store.ErrBadToken) {
		t.Errorf("token reused: %v", err)
	}
}

func TestLostAcknowledgement(t *testing.T) {
	w := newWorld(t)
	w.record(10)
	w.mustSync()
	w.record(30)
	// The authority stores the batch, but its answer never arrives.
	w.tap.set(func(path string, body []byte) ([]byte, error) {
		if strings.HasPrefix(path, protocol.PathEvents) {
			return nil, errors.New("connection reset")
		}
		return body, nil
	})
	if err := w.sync(); err == nil {
		t.Fatal("sync succeeded without an answer")
	}
	w.tap.set(nil)
	w.mustSync()
	if n := w.held(); n != 40 {
		t.Fatalf("authority holds %d events, want 40 once each", n)
	}
}

func TestAuthorityRestoredFromBackup(t *testing.T) {
	w := newWorld(t)
	w.record(100)
	w.mustSync()
	backup := filepath.Join(w.dir, "backup.db")
	w.authDB.Close()
	b, _ := os.ReadFile(w.authPath)
	os.WriteFile(backup, b, 0o600)
	w.startAuthority()
	w.record(100)
	w.mustSync()
	if n := w.held(); n != 200 {
		t.Fatalf("held %d", n)
	}
	// The authority's disk dies; it comes back from the backup, which
	// has the first 100 events only.
	w.restartAuthority(backup)
	if n := w.held(); n != 100 {
		t.Fatalf("the backup holds %d", n)
	}
	w.mustSync()
	if n := w.held(); n != 200 {
		t.Fatalf("after the box rewound, the authority holds %d events, want 200", n)
	}
}

// TestForcedPurgeDeclared: events a supervisor purged before they were
// sent are declared in the next upload; the authority records the range
// and goes on from there, checking the link across it.
func TestForcedPurgeDeclared(t *testing.T) {
	w := newWorld(t)
	w.record(10)
	w.mustSync()
	w.record(20) // never sent: the link stays down for weeks
	w.bclock.Advance(15 * 24 * time.Hour)
	w.aclock.Advance(15 * 24 * time.Hour)
	r, err := w.box.Purge(14 * 24 * time.Hour)
	if err != nil || r.Deleted != 30 || r.Unsent != 20 || r.Forced == nil || r.Forced.From != 11 || r.Forced.To != 30 {
		t.Fatalf("Purge: %+v, %v", r, err)
	}
	w.record(1) // the purge's audit event, say
	w.mustSync()
	d, _, _ := w.box.Device()
	if m, _ := w.authDB.Mark(d.ID); m != 31 {
		t.Errorf("authority's mark %d, want 31", m)
	}
	g, err := w.authDB.Purged(d.ID)
	if err != nil || len(g) != 1 || g[0].From != 11 || g[0].To != 30 || g[0].Last != r.Forced.Last {
		t.Errorf("purged ranges at the authority: %+v, %v", g, err)
	}
	evs, _ := w.authDB.DeviceEvents(d.ID, 0, 100)
	if len(evs) != 11 || evs[10].Seq != 31 {
		t.Errorf("authority holds %d events", len(evs))
	}
	// A declaration that does not match the chain is refused: the next
	// event must link to the purged range's last hash.
	if _, err := w.authDB.DeclarePurged(d.ID, store.ForcedPurge{From: 40, To: 50}); !errors.Is(err, store.ErrGap) {
		t.Errorf("a declaration past the mark: %v", err)
	}
}

// TestRevocationDownloadCutAtEveryChunk cuts a five-chunk download at
// each chunk in turn: the old version stays in force, and the next sync
// resumes where the download stopped.
func TestRevocationDownloadCutAtEveryChunk(t *testing.T) {
	for cut := 0; cut < 5; cut++ {
		w := newWorld(t)
		w.mustSync()
		w.revoke(ids("44030519900101", 17)...) // 17 entries: chunks of 4, 4, 4, 4, 1
		chunk := 0
		w.tap.set(func(path string, body []byte) ([]byte, error) {
			if strings.HasPrefix(path, protocol.PathChunk) {
				chunk++
				if chunk == cut+1 {
					return nil, errors.New("link down")
				}
			}
			return body, nil
		})
		if err := w.sync(); err == nil {
			t.Fatalf("cut at chunk %d: the sync succeeded", cut)
		}
		if v, _, _ := w.box.RevocationVersion(); v != 0 || w.revoked(ids("44030519900101", 1)[0]) {
			t.Fatalf("cut at chunk %d: a partial download is in force", cut)
		}
		if st, _ := w.box.Staging(); st == nil || st.Next != cut {
			t.Fatalf("cut at chunk %d: download state %+v", cut, st)
		}
		w.tap.set(nil)
		w.mustSync()
		if got := w.tap.calls[protocol.PathChunk]; got != 5+1 {
			t.Errorf("cut at chunk %d: %d chunk requests, want 6 (the cut one again, no others)", cut, got)
		}
		for _, id := range ids("44030519900101", 17) {
			if !w.revoked(id) {
				t.Fatalf("cut at chunk %d: %s not revoked after resuming", cut, id)
			}
		}
	}
}

func TestTamperedChunk(t *testing.T) {
	w := newWorld(t)
	w.mustSync()
	w.revoke(ids("44030519900101", 10)...)
	w.tap.set(func(path string, body []byte) ([]byte, error) {
		if strings.HasPrefix(path, protocol.PathChunk) && len(body) > 20 {
			body = append([]byte(nil), body...)
			body[len(body)-3] ^= 0x40
		}
		return body, nil
	})
	if err := w.sync(); !errors.Is(err, sync.ErrTampered) {
		t.Fatalf("tampered chunk: %v", err)
	}
	if v, _, _ := w.box.RevocationVersion(); v != 0 || w.revoked(ids("44030519900101", 1)[0]) {
		t.Fatal("a tampered download took effect")
	}
	w.tap.set(nil)
	w.mustSync()
	if !w.revoked(ids("44030519900101", 1)[0]) {
		t.Fatal("not revoked after a clean download")
	}
}

func TestReplayedOldListsAreRefused(t *testing.T) {
	w := newWorld(t)
	w.revoke(ids("44030519900101", 3)...)
	var oldManifest, oldTrust []byte
	w.tap.set(func(path string, body []byte) ([]byte, error) {
		if strings.HasPrefix(path, protocol.PathManifest) && oldManifest == nil {
			oldManifest = body
		}
		if strings.HasPrefix(path, protocol.PathTrust) && oldTrust == nil {
			oldTrust = body
		}
		return body, nil
	})
	w.mustSync()
	w.revoke(ids("11010519900101", 3)...)
	w.mustSync()
	// A newer trust list, then the old one replayed.
	l := *w.f.Trust
	l.Version = 5
	l.ListKeys = w.syncer.Trust().ListKeys
	raw, err := trust.Sign(&l, w.f.Root)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.authDB.SetTrustList(raw); err != nil {
		t.Fatal(err)
	}
	w.mustSync()
	if w.syncer.Trust().Version != 5 {
		t.Fatal("trust list not updated")
	}
	w.tap.set(func(path string, body []byte) ([]byte, error) {
		if strings.HasPrefix(path, protocol.PathManifest) {
			return oldManifest, nil
		}
		if strings.HasPrefix(path, protocol.PathTrust) {
			return oldTrust, nil
		}
		return body, nil
	})
	err = w.sync()
	if !errors.Is(err, sync.ErrNonce) && !errors.Is(err, sync.ErrRollback) {
		t.Fatalf("an old manifest was taken: %v", err)
	}
	if v, _, _ := w.box.RevocationVersion(); v != 2 {
		t.Fatalf("version %d after a replay", v)
	}
	if w.syncer.Trust().Version != 5 {
		t.Fatal("trust list rolled back")
	}
}

// TestFrozenList: an attacker (or a stalled authority) keeps answering
// with the same signed manifest. It stops extending the list, which goes
// stale at its expiry, and the verifier says so.
func TestFrozenList(t *testing.T) {
	w := newWorld(t)
	w.revoke(ids("44030519900101", 3)...)
	w.mustSync()
	var frozen []byte
	w.tap.set(func(path string, body []byte) ([]byte, error) {
		if strings.HasPrefix(path, protocol.PathManifest) {
			if frozen == nil {
				frozen = body
			}
			return frozen, nil
		}
		return body, nil
	})
	w.mustSync()
	_, expires, _ := w.box.RevocationVersion()
	w.aclock.Advance(4 * 24 * time.Hour)
	w.bclock.Advance(4 * 24 * time.Hour)
	if err := w.sync(); !errors.Is(err, sync.ErrExpired) {
		t.Fatalf("a frozen manifest after its expiry: %v", err)
	}
	if !w.box.ValidUntil().Equal(expires) || !w.est.Now().Time.After(w.box.ValidUntil()) {
		t.Fatal("the list did not go stale")
	}
	w.tap.set(nil)
	w.mustSync()
	if !w.box.ValidUntil().After(w.est.Now().Time) {
		t.Fatal("a fresh manifest did not make the list current again")
	}
}

func TestNewVersionMidDownload(t *testing.T) {
	w := newWorld(t)
	w.mustSync()
	w.revoke(ids("44030519900101", 12)...)
	once := false
	w.tap.set(func(path string, body []byte) ([]byte, error) {
		if strings.HasPrefix(path, protocol.PathChunk) && !once {
			once = true
			w.revoke(ids("11010519900101", 2)...) // the authority moves on
		}
		return body, nil
	})
	w.mustSync()
	want, set, _ := w.authDB.RevocationState()
	if v, _, got := w.box.RevocationVersion(); v != want || got != set {
		t.Fatalf("version %d %+v, want %d %+v", v, got, want, set)
	}
	if !w.revoked(ids("11010519900101", 1)[0]) || !w.revoked(ids("44030519900101", 1)[0]) {
		t.Fatal("the newer version is not in force")
	}
}

// TestClockJumps: the box's wall clock jumps to 1970, a year ahead and
// backwards; syncing works throughout, and the time the box decides by
// comes from the authority, not from its broken clock.
func TestClockJumps(t *testing.T) {
	w := newWorld(t)
	w.record(5)
	w.mustSync()
	for _, step := range []struct {
		name string
		to   time.Time
	}{
		{"1970", time.Unix(0, 0)},
		{"a year on", w.f.Now.Add(365 * 24 * time.Hour)},
		{"a day back", w.f.Now.Add(-24 * time.Hour)},
		{"right again", w.f.Now},
	} {
		name := step.name
		w.bclock.Set(step.to)
		// Trusted means within the default policy's two minutes.
		if got := w.est.Now(); got.Uncertainty >= 0 && got.Uncertainty <= 2*time.Minute &&
			got.Time.Sub(w.aclock.Now()).Abs() > got.Uncertainty+time.Second {
			t.Errorf("%s: before the next sync the box trusts a wrong time %v ± %v", name, got.Time, got.Uncertainty)
		}
		w.record(5)
		if err := w.sync(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got := w.est.Now()
		if got.Uncertainty < 0 || got.Time.Sub(w.aclock.Now()).Abs() > time.Second {
			t.Errorf("%s: after syncing the box thinks it is %v ± %v; it is %v", name, got.Time, got.Uncertainty, w.aclock.Now())
		}
	}
	if n := w.held(); n != 25 {
		t.Errorf("held %d events, want 25", n)
	}
}

// TestRetiredListKey: the authority's answers must be signed by a list key
// valid at the time they carry; a retired key is refused even while the
// trust list names a current one beside it.
func TestRetiredListKey(t *testing.T) {
	w := newWorld(t)
	w.mustSync()
	old, next := w.list, credentialtest.Key("list-2")
	l := *w.f.Trust
	l.Version = 3
	l.ListKeys = []trust.ListKey{
		{PublicKey: old.Public().(ed25519.PublicKey), NotBefore: w.f.Now.Add(-365 * 24 * time.Hour), NotAfter: w.f.Now.Add(-time.Minute)},
		{PublicKey: next.Public().(ed25519.PublicKey), NotBefore: w.f.Now.Add(-time.Minute), NotAfter: w.f.Now.Add(365 * 24 * time.Hour)},
	}
	raw, err := trust.Sign(&l, w.f.Root)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.authDB.SetTrustList(raw); err != nil {
		t.Fatal(err)
	}
	// The new trust list is the root's word and is taken; the upload's
	// acknowledgement, signed with the retired key, is not.
	w.record(5)
	if err := w.sync(); err == nil || !strings.Contains(err.Error(), "not valid then") {
		t.Fatalf("an answer signed by a retired key: %v", err)
	}
	if m, _ := w.box.Mark(); m != 0 {
		t.Fatalf("mark %d taken from an acknowledgement signed by a retired key", m)
	}
	// Once the authority signs with the current key, all is well.
	w.list = next
	w.restartAuthority("")
	w.mustSync()
	if m, _ := w.box.Mark(); m != 5 || w.syncer.Trust().Version != 3 {
		t.Fatalf("mark %d, trust list %d; want 5 and 3", m, w.syncer.Trust().Version)
	}
}

// TestStatusSurvivesRestart: a box restarted while its link is down still
// tells when it last synced, how many attempts have failed since, and
// what it holds.
func TestStatusSurvivesRestart(t *testing.T) {
	w := newWorld(t)
	w.record(20)
	w.mustSync()
	lastOK := w.bclock.Now()
	w.bclock.Advance(time.Hour)
	w.record(5)
	w.tap.set(func(string, []byte) ([]byte, error) { return nil, errors.New("link down") })
	for range 2 {
		if err := w.sync(); err == nil {
			t.Fatal("synced over a link that is down")
		}
	}
	s, err := sync.New(sync.Config{Authority: w.srv.URL, DeviceKey: credentialtest.Key("device"),
		Root: w.f.Root.Public().(ed25519.PublicKey)}, w.box, w.est, w.bclock, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	st := s.Status()
	if !st.LastOK.Equal(lastOK) || !st.LastAttempt.Equal(w.bclock.Now()) || st.Failures != 2 || !strings.Contains(st.Error, "link down") ||
		st.Mark != 20 || st.Unsent != 5 || st.TrustVersion != 2 {
		t.Errorf("status after a restart: %+v", st)
	}
}

// TestSignedRequestsCannotBeReplayed: a signed upload and status request
// taken off the link are refused when sent again, at once or later.
func TestSignedRequestsCannotBeReplayed(t *testing.T) {
	w := newWorld(t)
	w.record(3)
	w.mustSync()
	var replays []*http.Request
	for _, r := range w.tap.sent {
		if r.URL.Path == protocol.PathEvents || r.URL.Path == protocol.PathStatus {
			replays = append(replays, r)
		}
	}
	if len(replays) < 2 {
		t.Fatalf("%d signed requests seen", len(replays))
	}
	send := func(r *http.Request) int {
		c := r.Clone(context.Background())
		if r.GetBody != nil {
			c.Body, _ = r.GetBody()
		}
		c.RequestURI = ""
		res, err := http.DefaultTransport.RoundTrip(c)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	for _, r := range replays {
		if code := send(r); code != http.StatusUnauthorized {
			t.Errorf("%s replayed at once: %d", r.URL.Path, code)
		}
	}
	w.aclock.Advance(time.Hour)
	for _, r := range replays {
		if code := send(r); code != http.StatusUnauthorized {
			t.Errorf("%s replayed an hour later: %d", r.URL.Path, code)
		}
	}
}

// TestRequestDateFollowsTheAuthority: a box whose clock is a day ahead
// before it ever synced has its first request refused for its date; it
// dates the next by the authority's word, syncs, and anchors its clock on
// the signed status answer.
func TestRequestDateFollowsTheAuthority(t *testing.T) {
	w := newWorld(t)
	w.bclock.Set(w.f.Now.Add(24 * time.Hour))
	w.record(2)
	w.mustSync()
	if got := w.est.Now(); got.Uncertainty < 0 || got.Time.Sub(w.aclock.Now()).Abs() > time.Second {
		t.Errorf("after the sync the box thinks it is %v ± %v; it is %v", got.Time, got.Uncertainty, w.aclock.Now())
	}
	if n := w.held(); n != 2 {
		t.Errorf("held %d events, want 2", n)
	}
	if n := w.tap.calls[protocol.PathStatus]; n != 2 {
		t.Errorf("%d status calls, want 2: the first refused for its date, the second dated by the authority", n)
	}
	// Once the clock is anchored, requests are dated by it alone: none
	// after the status call is refused for its date.
	if n := w.tap.calls[protocol.PathEvents]; n != 1 {
		t.Errorf("%d uploads, want 1 (answers %v)", n, w.tap.codes)
	}
}

// TestForgedTimeHint: an unsigned time from someone on the link that no
// authority of the trust list could give (1960, or centuries ahead) is
// not used to date requests, and the next sync goes through.
func TestForgedTimeHint(t *testing.T) {
	for _, forged := range []time.Time{time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2999, 1, 1, 0, 0, 0, 0, time.UTC)} {
		w := newWorld(t)
		w.record(2)
		w.mustSync()
		w.tap.setAnswer(func(r *http.Request) (*http.Response, error) {
			if r.URL.Path != protocol.PathStatus {
				return nil, nil
			}
			res := &http.Response{StatusCode: http.StatusUnauthorized, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("")), Request: r}
			res.Header.Set(protocol.HeaderServerTime, fmt.Sprint(forged.Unix()))
			return res, nil
		})
		if err := w.sync(); err == nil {
			t.Fatal("synced with the status answer forged")
		}
		w.tap.setAnswer(nil)
		w.record(2)
		if err := w.sync(); err != nil {
			t.Errorf("hint %v: the sync after a forged hint: %v", forged, err)
		}
		lo, hi := w.f.Now.Add(-time.Hour).Unix(), w.f.Now.Add(time.Hour).Unix()
		for _, r := range w.tap.sent {
			if at := r.Header.Get(protocol.HeaderTime); at != "" {
				if n, _ := strconv.ParseInt(at, 10, 64); n < lo || n > hi {
					t.Errorf("hint %v: a request to %s dated %s", forged, r.URL.Path, time.Unix(n, 0).UTC())
				}
			}
		}
		if n := w.held(); n != 4 {
			t.Errorf("hint %v: %d events held, want 4", forged, n)
		}
	}
}

// TestRequestDeadlines: every request carries a deadline of 30 s and the
// time its bytes take at 4 KiB/s: an upload on a slow link is not cut off
// by a fixed timeout.
func TestRequestDeadlines(t *testing.T) {
	w := newWorld(t)
	w.syncer, _ = sync.New(sync.Config{
		Authority: w.srv.URL, Name: "gate-3", EnrollToken: "token-1",
		DeviceKey: credentialtest.Key("device"), Root: w.f.Root.Public().(ed25519.PublicKey),
	}, w.box, w.est, w.bclock, nil, &http.Client{Transport: w.tap})
	w.record(1000) // about 100 kB: 25 s at 4 KiB/s
	w.revoke(ids("44030519900101", 6)...)
	w.mustSync()
	uploads := 0
	for _, r := range w.tap.sent {
		deadline, ok := r.Context().Deadline()
		if !ok {
			t.Errorf("%s without a deadline", r.URL.Path)
			continue
		}
		left := time.Until(deadline)
		if r.URL.Path != protocol.PathEvents {
			if left < 25*time.Second {
				t.Errorf("%s: deadline in %v, want 30 s or more", r.URL.Path, left)
			}
			continue
		}
		uploads++
		want := 30*time.Second + time.Duration(r.ContentLength)*time.Second/(4<<10)
		if r.ContentLength < 80<<10 || left > want+2*time.Second || left < want-10*time.Second {
			t.Errorf("upload of %d bytes: deadline in %v, want %v", r.ContentLength, left.Round(time.Second), want.Round(time.Second))
		}
	}
	if uploads == 0 {
		t.Error("no upload seen")
	}
}

// TestUploadBatchFollowsTheLink: an upload that times out is sent again
// in halves, down to 100 events, and batches grow again after uploads
// that get through.
func TestUploadBatchFollowsTheLink(t *testing.T) {
	w := newWorld(t)
	w.syncer, _ = sync.New(sync.Config{
		Authority: w.srv.URL, Name: "gate-3", EnrollToken: "token-1",
		DeviceKey: credentialtest.Key("device"), Root: w.f.Root.Public().(ed25519.PublicKey), Batch: 1000,
	}, w.box, w.est, w.bclock, nil, &http.Client{Transport: w.tap})
	w.record(1000)
	var mu stdsync.Mutex
	limit := 0 // the most events the link carries before the deadline
	var sizes []int
	w.tap.setAnswer(func(r *http.Request) (*http.Response, error) {
		if r.URL.Path != protocol.PathEvents {
			return nil, nil
		}
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		var b protocol.EventBatch
		if err := protocol.Dec.Unmarshal(body, &b); err != nil {
			return nil, err
		}
		mu.Lock()
		defer mu.Unlock()
		sizes = append(sizes, len(b.Events))
		if len(b.Events) > limit {
			return nil, context.DeadlineExceeded
		}
		return nil, nil
	})
	for range 6 {
		if err := w.sync(); err == nil {
			t.Fatal("synced over a link that carries nothing")
		}
	}
	mu.Lock()
	if fmt.Sprint(sizes) != "[1000 500 250 125 100 100]" {
		t.Errorf("batches after timeouts: %v, want halves down to 100", sizes)
	}
	sizes, limit = nil, 300
	mu.Unlock()
	for i := 0; w.held() < 1000; i++ {
		if i == 10 {
			t.Fatalf("%d of 1000 events held after 10 syncs; batches %v", w.held(), sizes)
		}
		w.sync()
	}
	mu.Lock()
	defer mu.Unlock()
	grew := false
	for i := 1; i < len(sizes); i++ {
		grew = grew || sizes[i] > sizes[i-1]
	}
	if !grew {
		t.Errorf("batches never grew again: %v", sizes)
	}
}

// TestSyncNowWaitsNoLongerThanItsContext: a sync asked for while another
// is under way waits for its turn only as long as its context lets it.
func TestSyncNowWaitsNoLongerThanItsContext(t *testing.T) {
	w := newWorld(t)
	started, release := make(chan struct{}), make(chan struct{})
	var once stdsync.Once
	w.tap.setAnswer(func(r *http.Request) (*http.Response, error) {
		once.Do(func() { close(started) })
		select {
		case <-release:
		case <-r.Context().Done():
		}
		return nil, errors.New("link down")
	})
	first := make(chan error, 1)
	go func() { first <- w.sync() }()
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- w.syncer.SyncOnce(ctx) }()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("sync now: %v, want its context's deadline", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("sync now still waiting for the other sync after its context ended")
	}
	close(release)
	if err := <-first; err == nil {
		t.Error("the first sync succeeded over a link that was down")
	}
}
