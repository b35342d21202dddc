package localapi

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	stdsync "sync"
	"testing"
	"time"

	"golang.org/x/crypto/argon2"

	"github.com/checkpointd/checkpoint/internal/clock/clocktest"
	"github.com/checkpointd/checkpoint/internal/export"
	"github.com/checkpointd/checkpoint/store"
	"github.com/checkpointd/checkpoint/sync"
	"github.com/checkpointd/checkpoint/verify"
)

// cheapHash is an Argon2id PHC hash at a low cost, so that the tests,
// which sign in for every request, stay fast. The server checks it as it
// checks any configured hash.
func cheapHash(t testing.TB, password string) string {
	t.Helper()
	salt := make([]byte, 16)
	rand.Read(salt)
	key := argon2.IDKey([]byte(password), salt, 1, 64, 1, 32)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=19$m=64,t=1,p=1$%s$%s", b64.EncodeToString(salt), b64.EncodeToString(key))
}

// shortDir is a temporary folder with a path short enough for a Unix
// socket.
func shortDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "lapi")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// backend is a checkpoint for the tests: a lane, a sync that counts.
type backend struct {
	clk *clocktest.Fake

	mu      stdsync.Mutex
	syncs   int
	syncErr error
	noSync  bool
}

func (b *backend) Now() verify.Instant {
	return verify.Instant{Time: b.clk.Now(), Uncertainty: 40 * time.Millisecond}
}

func (b *backend) Describe(st *Status) {
	st.Lanes = append(st.Lanes, Lane{Name: "east", Camera: Camera{Device: "/dev/video0", State: "running", Frames: 90}})
}

func (b *backend) Sync(ctx context.Context) (sync.Status, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.noSync {
		return sync.Status{}, ErrNoSync
	}
	b.syncs++
	return sync.Status{Mark: 7, LastOK: b.clk.Now()}, b.syncErr
}

// rig is a server on a socket in a temporary folder, over a store with a
// few passages, and the local user the socket's peer is.
type rig struct {
	t      *testing.T
	dir    string
	clk    *clocktest.Fake
	box    *store.Box
	srv    *Server
	sock   string
	dev    ed25519.PrivateKey
	logs   *bytes.Buffer
	be     *backend
	boxKey [2]*[32]byte // the encrypted supervisor's public and private keys

	mu   stdsync.Mutex
	peer Peer
}

const (
	password = "correct horse"
	t0       = "2026-11-30T09:00:00+08:00"
)

func newRig(t *testing.T, edit func(*Config)) *rig {
	t.Helper()
	now, _ := time.Parse(time.RFC3339, t0)
	r := &rig{t: t, dir: shortDir(t), clk: clocktest.New(now), logs: &bytes.Buffer{},
		peer: Peer{UID: 1000, GID: 1000, PID: 42, User: "alice"}}
	r.be = &backend{clk: r.clk}
	key := new([32]byte)
	rand.Read(key[:])
	var err error
	r.box, err = store.OpenBox(filepath.Join(r.dir, "checkpoint.db"), store.Options{Clock: r.clk, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.box.Close() })
	_, r.dev, _ = ed25519.GenerateKey(nil)
	priv, pub := filepath.Join(r.dir, "li.key"), filepath.Join(r.dir, "li.pub")
	if err := export.GenerateBoxKey(priv, pub); err != nil {
		t.Fatal(err)
	}
	if r.boxKey[0], err = export.ReadBoxPublic(pub); err != nil {
		t.Fatal(err)
	}
	if r.boxKey[1], err = export.ReadBoxPrivate(priv); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Checkpoint: "gate-3", Group: "checkpoint", DeviceKey: r.dev, Retention: 14 * 24 * time.Hour,
		Supervisors: []Supervisor{{Name: "wang", Password: cheapHash(t, password)},
			{Name: "li", Password: cheapHash(t, password), BoxKey: r.boxKey[0]}},
		Peer: func(net.Conn) (Peer, error) {
			r.mu.Lock()
			defer r.mu.Unlock()
			return r.peer, nil
		},
		Member: func(p Peer, group string) bool { return group == "checkpoint" && p.UID == 1000 },
		UID:    func() uint32 { return 999 },
	}
	if edit != nil {
		edit(&cfg)
	}
	log := slog.New(slog.NewTextHandler(&lockedWriter{w: r.logs}, nil))
	if r.srv, err = New(cfg, r.box, r.be, r.clk, log); err != nil {
		t.Fatal(err)
	}
	r.sock = filepath.Join(r.dir, "api.sock")
	ln, err := ListenUnix(r.sock, "", log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.srv.ServeUnix(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return r
}

// lockedWriter lets the server's goroutines log into one buffer.
type lockedWriter struct {
	mu stdsync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (r *rig) setPeer(p Peer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.peer = p
}

func (r *rig) client(user, pw string) *Client {
	c := NewSocketClient(r.sock, Login{User: user, Password: pw})
	r.t.Cleanup(c.Close)
	return c
}

// passages records n passages, a minute apart from t0, every third
// refused for a red code.
func (r *rig) passages(n int) {
	r.t.Helper()
	start, _ := time.Parse(time.RFC3339, t0)
	for i := range n {
		e := store.Event{Time: start.Add(time.Duration(i) * time.Minute), Kind: "passage", Lane: "east", Decision: "pass",
			Status: "green", MaskedName: "张*丰", Temperature: 365, Gate: "gate-3"}
		if i%3 == 2 {
			e.Decision, e.Status, e.Reasons = "refuse", "red", []string{"status_red"}
		}
		if _, err := r.box.Record(context.Background(), e); err != nil {
			r.t.Fatal(err)
		}
	}
}

// audits returns the audit events recorded, oldest first.
func (r *rig) audits() []store.Event {
	r.t.Helper()
	page, err := r.box.Query(store.Filter{Kind: "audit", Limit: store.MaxPage})
	if err != nil {
		r.t.Fatal(err)
	}
	evs := page.Events
	for i, j := 0, len(evs)-1; i < j; i, j = i+1, j-1 {
		evs[i], evs[j] = evs[j], evs[i]
	}
	return evs
}

func statusOf(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}

// TestRefusals: a wrong password, an unknown name and a local user
// outside the socket's group (even with the right password) are each
// refused with their status, and each attempt is in the log, an unknown
// name as "unknown".
func TestRefusals(t *testing.T) {
	r := newRig(t, nil)
	ctx := context.Background()
	outsider := Peer{UID: 1001, GID: 1001, PID: 77, User: "mallory"}
	for _, c := range []struct {
		name       string
		peer       Peer
		user, pw   string
		status     int
		who, query string
	}{
		{"wrong password", r.peer, "wang", "wrong horse", http.StatusUnauthorized, "wang", "path=%2Fv1%2Fstatus&reason=password"},
		{"unknown name", r.peer, "hunter2-zhang", password, http.StatusUnauthorized, "unknown", "path=%2Fv1%2Fstatus&reason=password"},
		{"outside the group", outsider, "wang", password, http.StatusForbidden, "wang", "path=%2Fv1%2Fstatus&reason=peer"},
	} {
		r.setPeer(c.peer)
		before := len(r.audits())
		_, err := r.client(c.user, c.pw).Status(ctx)
		if !errors.Is(err, ErrRefused) || statusOf(err) != c.status {
			t.Errorf("%s: %v, want refused with %d", c.name, err, c.status)
			continue
		}
		a := r.audits()
		if len(a) != before+1 {
			t.Errorf("%s: %d audit events, want %d", c.name, len(a), before+1)
			continue
		}
		got := a[len(a)-1]
		if got.Audit.Who != c.who || got.Audit.User != c.peer.User || got.Audit.Action != "refused" ||
			got.Audit.Query != c.query || got.Audit.Rows != 1 || got.Gate != "gate-3" || got.ClockUncertainty != 40*time.Millisecond {
			t.Errorf("%s: audit %+v %+v", c.name, got, got.Audit)
		}
	}
	// Root and the daemon's own user need no group.
	for _, uid := range []uint32{0, 999} {
		r.setPeer(Peer{UID: uid, User: fmt.Sprint(uid)})
		if _, err := r.client("wang", password).Status(ctx); err != nil {
			t.Errorf("uid %d: %v", uid, err)
		}
	}
	// No name: asked for one, nothing recorded.
	before := len(r.audits())
	if _, err := r.client("", "").Status(ctx); statusOf(err) != http.StatusUnauthorized {
		t.Errorf("without a name: %v", err)
	}
	if len(r.audits()) != before {
		t.Error("a request without a name was recorded as an attempt")
	}
	for _, secret := range []string{"hunter2-zhang", password, "wrong horse"} {
		if strings.Contains(r.logs.String(), secret) {
			t.Errorf("the daemon's log holds %q:\n%s", secret, r.logs.String())
		}
		for _, e := range r.audits() {
			if strings.Contains(fmt.Sprintf("%+v", *e.Audit), secret) {
				t.Errorf("an audit event holds %q", secret)
			}
		}
	}
}

// TestLockout: five wrong passwords lock the account for five minutes:
// the right password is refused too until the lock ends. The refusals are
// recorded at most once a minute, the record counting those in between.
func TestLockout(t *testing.T) {
	r := newRig(t, nil)
	ctx := context.Background()
	bad, good := r.client("wang", "nope"), r.client("wang", password)
	for i := range 5 {
		if _, err := bad.Status(ctx); statusOf(err) != http.StatusUnauthorized {
			t.Fatalf("wrong password %d: %v", i+1, err)
		}
	}
	_, err := good.Status(ctx)
	if !errors.Is(err, ErrRefused) || statusOf(err) != http.StatusTooManyRequests {
		t.Fatalf("locked, the right password: %v, want 429", err)
	}
	if a := r.audits(); len(a) != 1 || a[0].Audit.Rows != 1 {
		t.Fatalf("within a minute: %d audit events, want 1", len(a))
	}
	r.clk.Advance(time.Minute)
	if _, err := good.Status(ctx); statusOf(err) != http.StatusTooManyRequests {
		t.Fatalf("still locked after a minute: %v", err)
	}
	a := r.audits()
	if len(a) != 2 || a[1].Audit.Rows != 6 || a[1].Audit.Query != "path=%2Fv1%2Fstatus&reason=locked" || a[1].Audit.Who != "wang" {
		t.Fatalf("after a minute: %d audit events, the last %+v; want one for the 6 refusals since", len(a), a[len(a)-1].Audit)
	}
	r.clk.Advance(4 * time.Minute)
	if _, err := good.Status(ctx); err != nil {
		t.Fatalf("the lock has ended: %v", err)
	}
	if !strings.Contains(r.logs.String(), "account locked") {
		t.Errorf("the lock is not in the daemon's log:\n%s", r.logs.String())
	}
}

// TestSourceLimit: wrong passwords from one source across accounts use up
// its allowance; then even the right password from there is refused,
// without a check, while another source goes on.
func TestSourceLimit(t *testing.T) {
	r := newRig(t, func(c *Config) { c.SourceFailures = 3 })
	ctx := context.Background()
	for _, name := range []string{"wang", "li", "zhao"} {
		if _, err := r.client(name, "nope").Status(ctx); statusOf(err) != http.StatusUnauthorized {
			t.Fatalf("%s: %v", name, err)
		}
	}
	if _, err := r.client("wang", password).Status(ctx); statusOf(err) != http.StatusTooManyRequests {
		t.Fatalf("the source is over its allowance: %v, want 429", err)
	}
	r.setPeer(Peer{UID: 0, User: "root"})
	if _, err := r.client("wang", password).Status(ctx); err != nil {
		t.Fatalf("another source: %v", err)
	}
}

// TestReadingsAudited: logs, stats, export and status answer, and each
// is recorded with the account, the local user, the query and the rows.
func TestReadingsAudited(t *testing.T) {
	r := newRig(t, nil)
	r.passages(7)
	c := r.client("wang", password)
	ctx := context.Background()

	page, err := c.Logs(ctx, store.Filter{Outcome: "pass", Limit: 3})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Events) != 3 || page.Next != page.Events[2].Seq || page.Events[0].Seq != 7 || page.Events[0].MaskedName != "张*丰" ||
		*page.Events[0].Temperature != 36.5 || page.Events[0].Hash == "" {
		t.Fatalf("page %+v", page)
	}
	from, _ := time.Parse(time.RFC3339, "2026-11-30T00:00:00+08:00")
	st, err := c.Stats(ctx, from, from.Add(48*time.Hour), store.Day)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Periods) != 2 || st.Total.Passes != 5 || st.Total.Refusals != 2 || st.Total.RefusedFor["status_red"] != 2 {
		t.Fatalf("stats %+v", st)
	}
	var out bytes.Buffer
	ex, err := c.Export(ctx, store.Filter{Kind: "passage"}, export.JSONL, To(&out))
	if err != nil {
		t.Fatal(err)
	}
	if ex.Rows != 7 || ex.Encrypted || strings.Count(out.String(), "\n") != 7 {
		t.Fatalf("export: %+v, %d lines", ex, strings.Count(out.String(), "\n"))
	}
	status, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if status.Checkpoint != "gate-3" || status.LastPassage == nil || status.LastPassage.Seq != 7 || status.Unsent != 10 ||
		len(status.Lanes) != 1 || status.Clock.UncertaintyMS != 40 || status.DeviceKey == "" || status.ReadOnly {
		t.Fatalf("status %+v", status)
	}

	want := []store.AuditRecord{
		{Who: "wang", User: "alice", Action: "logs", Query: "limit=3&outcome=pass", Rows: 3},
		{Who: "wang", User: "alice", Action: "stats", Query: "from=2026-11-30T00%3A00%3A00%2B08%3A00&step=day&to=2026-12-02T00%3A00%3A00%2B08%3A00", Rows: 2},
		{Who: "wang", User: "alice", Action: "export", Query: "format=jsonl&kind=passage", Rows: 7},
		{Who: "wang", User: "alice", Action: "status"},
	}
	got := r.audits()
	if len(got) != len(want) {
		t.Fatalf("%d audit events, want %d", len(got), len(want))
	}
	for i, w := range want {
		if *got[i].Audit != w {
			t.Errorf("audit %d: %+v, want %+v", i, *got[i].Audit, w)
		}
	}
}

// TestExportChecks: an export through the API verifies against the
// device's key; one for a supervisor with a box key arrives encrypted
// and verifies once decrypted; a changed file does not verify.
func TestExportChecks(t *testing.T) {
	r := newRig(t, nil)
	r.passages(5)
	ctx := context.Background()
	pub := r.dev.Public().(ed25519.PublicKey)

	var plain bytes.Buffer
	ex, err := r.client("wang", password).Export(ctx, store.Filter{}, export.CSV, To(&plain))
	if err != nil {
		t.Fatal(err)
	}
	m, err := export.Check(bytes.NewReader(plain.Bytes()), ex.Manifest, pub)
	if err != nil {
		t.Fatalf("the export does not verify: %v", err)
	}
	if m.Count != 5 || m.FirstSeq != 1 || m.LastSeq != 5 || m.Who != "wang" || m.Checkpoint != "gate-3" || m.Filter != "" {
		t.Errorf("manifest %+v", m)
	}
	changed := bytes.Replace(plain.Bytes(), []byte("refuse"), []byte("pass"), 1)
	if _, err := export.Check(bytes.NewReader(changed), ex.Manifest, pub); err == nil {
		t.Error("a changed export verifies")
	}

	var sealed bytes.Buffer
	ex, err = r.client("li", password).Export(ctx, store.Filter{Kind: "passage"}, export.CSV, To(&sealed))
	if err != nil {
		t.Fatal(err)
	}
	if !ex.Encrypted || !export.IsEncrypted(sealed.Bytes()) || bytes.Contains(sealed.Bytes(), []byte("passage")) {
		t.Fatal("the export for a supervisor with a box key is not encrypted")
	}
	opened, err := export.Decrypt(bytes.NewReader(sealed.Bytes()), r.boxKey[1])
	if err != nil {
		t.Fatal(err)
	}
	if m, err := export.Check(opened, ex.Manifest, pub); err != nil || m.Count != 5 || m.Who != "li" {
		t.Errorf("the encrypted export: %+v %v", m, err)
	}
}

// TestPurge: the retention removes acknowledged events only; a forced
// purge needs confirming, removes the old unsent events too, and is
// recorded with the range it removed.
func TestPurge(t *testing.T) {
	r := newRig(t, nil)
	r.passages(6)
	if err := r.box.SetMark(3); err != nil {
		t.Fatal(err)
	}
	r.clk.Advance(15 * 24 * time.Hour)
	c := r.client("wang", password)
	ctx := context.Background()
	res, err := c.Purge(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if res.Deleted != 3 || res.Forced != nil || res.ForcedPurge {
		t.Fatalf("retention: %+v", res)
	}
	page, _ := r.box.Query(store.Filter{Kind: "passage"})
	if len(page.Events) != 3 || page.Events[2].Seq != 4 {
		t.Fatalf("after the retention, %d passages remain", len(page.Events))
	}

	_, err = r.srvDo("POST", "/v1/purge?unsent=1")
	if err == nil || !strings.Contains(err.Error(), "confirm=1") {
		t.Fatalf("an unconfirmed forced purge: %v", err)
	}
	res, err = c.Purge(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if res.Deleted != 3 || res.Unsent != 3 || res.Forced == nil || res.Forced.From != 4 || res.Forced.To != 6 {
		t.Fatalf("forced: %+v %+v", res, res.Forced)
	}
	a := r.audits()
	last := a[len(a)-1].Audit
	if last.Action != "purge" || last.Query != "confirm=1&unsent=1" || last.Rows != 3 || last.Purged == nil ||
		last.Purged.From != 4 || last.Purged.To != 6 {
		t.Fatalf("the forced purge's audit: %+v", last)
	}
	forced, _ := r.box.ForcedPurges()
	if len(forced) != 1 || forced[0].From != 4 {
		t.Errorf("forced purges %+v", forced)
	}
	if lc, err := c.VerifyLog(ctx); err != nil || !lc.OK {
		t.Errorf("the log after the purges: %+v %v", lc, err)
	}
}

// srvDo makes a raw request as wang and returns the answer's error.
func (r *rig) srvDo(method, pathQuery string) (*http.Response, error) {
	c := r.client("wang", password)
	u, _ := url.Parse(pathQuery)
	resp, err := c.request(context.Background(), method, u.Path, u.Query())
	if err == nil {
		resp.Body.Close()
	}
	return resp, err
}

// TestRequests: the methods and parameters the API takes, and what it
// answers otherwise.
func TestRequests(t *testing.T) {
	r := newRig(t, nil)
	for _, c := range []struct {
		method, path string
		status       int
	}{
		{"GET", "/v1/logs?colour=red&limit=2", 200},
		{"GET", "/v1/logs?color=red", 400},
		{"GET", "/v1/logs?from=yesterday", 400},
		{"GET", "/v1/stats?from=2026-11-30T00:00:00Z&to=2026-11-29T00:00:00Z", 400},
		{"GET", "/v1/stats?from=2026-11-30T00:00:00Z&to=2026-12-01T00:00:00Z&step=week", 400},
		{"GET", "/v1/export?format=xml", 400},
		{"POST", "/v1/logs", 405},
		{"GET", "/v1/sync", 405},
		{"GET", "/v1/nothing", 404},
		{"GET", "/v1/verify-log", 200},
	} {
		resp, err := r.srvDo(c.method, c.path)
		got := statusOf(err)
		if err == nil {
			got = resp.StatusCode
		}
		if got != c.status {
			t.Errorf("%s %s: %d (%v), want %d", c.method, c.path, got, err, c.status)
		}
	}
}

// TestSyncNow: a sync asked for runs the syncer's and is recorded; with
// no authority it is refused as such.
func TestSyncNow(t *testing.T) {
	r := newRig(t, nil)
	ctx := context.Background()
	c := r.client("wang", password)
	res, err := c.Sync(ctx)
	r.be.mu.Lock()
	syncs := r.be.syncs
	r.be.mu.Unlock()
	if err != nil || !res.OK || res.Status.Mark != 7 || syncs != 1 {
		t.Fatalf("sync: %+v %v (%d syncs)", res, err, syncs)
	}
	r.be.mu.Lock()
	r.be.syncErr = errors.New("link down")
	r.be.mu.Unlock()
	if res, err = c.Sync(ctx); err != nil || res.OK || res.Error != "link down" {
		t.Fatalf("a failed sync: %+v %v", res, err)
	}
	a := r.audits()
	if len(a) != 2 || a[0].Audit.Action != "sync" || a[1].Audit.Query != "failed=1" {
		t.Fatalf("audits %+v", a)
	}
	r.be.mu.Lock()
	r.be.noSync = true
	r.be.mu.Unlock()
	if _, err := c.Sync(ctx); statusOf(err) != http.StatusConflict {
		t.Fatalf("no authority: %v", err)
	}
}

// TestHTTPS: the certificate is made once and kept; a client with its
// pin is served, one with another pin is not, one without a pin is not
// made. The audit names the client's address.
func TestHTTPS(t *testing.T) {
	dir := t.TempDir()
	clk := clocktest.New(time.Date(2026, 11, 30, 1, 0, 0, 0, time.UTC))
	certPath, keyPath := filepath.Join(dir, "api.crt"), filepath.Join(dir, "api.key")
	cert, fp, err := LoadOrCreateCert(certPath, keyPath, "gate-3", clk)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(keyPath); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("the key file: %v %v", st.Mode(), err)
	}
	_, again, err := LoadOrCreateCert(certPath, keyPath, "gate-3", clk)
	if err != nil || again != fp || !strings.HasPrefix(fp, "sha256:") || len(fp) != 7+64 {
		t.Fatalf("the certificate again: %q, first %q (%v)", again, fp, err)
	}
	if err := os.Chmod(keyPath, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadOrCreateCert(certPath, keyPath, "gate-3", clk); err == nil {
		t.Error("a key others can read is used")
	}

	r := newRig(t, func(c *Config) { c.Fingerprint = fp })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.srv.ServeTLS(ctx, ln, cert) }()
	defer func() { cancel(); <-done }()
	url := "https://" + ln.Addr().String()

	c, err := NewHTTPSClient(url, fp, Login{User: "wang", Password: password})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	st, err := c.Status(context.Background())
	if err != nil || st.Fingerprint != fp {
		t.Fatalf("with the pin: %+v %v", st.Fingerprint, err)
	}
	if a := r.audits(); len(a) != 1 || a[0].Audit.User != "127.0.0.1" {
		t.Errorf("the audit of an HTTPS reading: %+v", a)
	}
	wrong := "sha256:" + strings.Repeat("ab", 32)
	c2, err := NewHTTPSClient(url, wrong, Login{User: "wang", Password: password})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if _, err := c2.Status(context.Background()); !errors.Is(err, ErrPin) || !errors.Is(err, ErrUnreachable) {
		t.Errorf("with another pin: %v", err)
	}
	if _, err := NewHTTPSClient(url, "", Login{}); err == nil {
		t.Error("an https client without a pin")
	}
	if _, err := NewHTTPSClient("http://"+ln.Addr().String(), fp, Login{}); err == nil {
		t.Error("a plain http client")
	}
}

// TestNewRefusesAccounts: no accounts, an empty or malformed password
// hash, and a name twice keep the API from starting.
func TestNewRefusesAccounts(t *testing.T) {
	h := cheapHash(t, password)
	for name, sups := range map[string][]Supervisor{
		"none":      nil,
		"empty":     {{Name: "wang"}},
		"malformed": {{Name: "wang", Password: "$argon2id$v=19$m=64,t=1,p=1$c2FsdA$"}},
		"plain":     {{Name: "wang", Password: password}},
		"twice":     {{Name: "wang", Password: h}, {Name: "wang", Password: h}},
	} {
		if _, err := New(Config{Supervisors: sups}, nil, nil, nil, nil); err == nil {
			t.Errorf("%s: started", name)
		}
	}
}

// TestOffline: a copy of the database opened read-only is served
// in-process without accounts; nothing is recorded, and purges are
// refused.
func TestOffline(t *testing.T) {
	r := newRig(t, nil)
	r.passages(4)
	copyPath := filepath.Join(t.TempDir(), "copy.db")
	if err := r.box.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(r.dir, "checkpoint.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(copyPath, data, 0o600); err != nil {
		t.Fatal(err)
	}
	ro, err := store.OpenBoxReadOnly(copyPath, store.Options{Clock: r.clk})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	srv, err := New(Config{Checkpoint: "gate-3", Offline: true}, ro, r.be, r.clk, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := NewPipeClient(context.Background(), srv)
	defer c.Close()
	page, err := c.Logs(context.Background(), store.Filter{})
	if err != nil || len(page.Events) != 4 {
		t.Fatalf("offline logs: %d %v", len(page.Events), err)
	}
	st, err := c.Status(context.Background())
	if err != nil || !st.ReadOnly || st.Recorded != 4 {
		t.Fatalf("offline status: %+v %v", st, err)
	}
	if _, err := c.Purge(context.Background(), false); statusOf(err) != http.StatusConflict {
		t.Errorf("an offline purge: %v", err)
	}
	if ro.LastSeq() != 4 {
		t.Errorf("the copy holds %d events", ro.LastSeq())
	}
	if err := srv.ServeUnix(context.Background(), nil); err == nil {
		t.Error("an offline server listens")
	}
}

// TestSocketFile: the socket is the group's (0660) when the group exists,
// the daemon's user's alone (0600) when it does not; a socket left behind
// is replaced, another file is not; the kernel names the peer.
func TestSocketFile(t *testing.T) {
	dir := shortDir(t)
	g, err := user.LookupGroupId(strconv.Itoa(os.Getgid()))
	if err != nil {
		t.Skipf("this process's group has no name: %v", err)
	}
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	for _, c := range []struct {
		group string
		mode  os.FileMode
		warn  bool
	}{
		{g.Name, 0o660, false},
		{"no-such-group-here", 0o600, true},
	} {
		logs.Reset()
		path := filepath.Join(dir, "api.sock")
		ln, err := ListenUnix(path, c.group, log)
		if err != nil {
			t.Fatal(err)
		}
		st, err := os.Stat(path)
		if err != nil || st.Mode().Perm() != c.mode || st.Mode().Type() != os.ModeSocket {
			t.Errorf("group %s: mode %v (%v), want %v", c.group, st.Mode(), err, c.mode)
		}
		if got := strings.Contains(logs.String(), "does not exist"); got != c.warn {
			t.Errorf("group %s: warned %v:\n%s", c.group, got, logs.String())
		}
		// The kernel's account of a peer: this process.
		conn, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		server, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		p, err := peerCred(server)
		if err != nil || p.UID != uint32(os.Getuid()) || p.PID != int32(os.Getpid()) || p.User == "" {
			t.Errorf("peer %+v %v", p, err)
		}
		conn.Close()
		server.Close()
		// A socket nobody serves any more, as after a crash.
		ln.SetUnlinkOnClose(false)
		ln.Close()
	}
	ln, err := ListenUnix(filepath.Join(dir, "api.sock"), "", nil)
	if err != nil {
		t.Fatalf("a socket left behind: %v", err)
	}
	ln.Close()
	other := filepath.Join(dir, "file")
	os.WriteFile(other, nil, 0o600)
	if _, err := ListenUnix(other, "", nil); err == nil {
		t.Error("a file replaced by the socket")
	}
}

// TestClientKey: the source an HTTPS client's failures count against: an
// IPv4 address, or the /64 of an IPv6 address.
func TestClientKey(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.7":            "192.0.2.7",
		"::ffff:192.0.2.7":     "192.0.2.7",
		"2001:db8:1:2:3:4:5:6": "2001:db8:1:2::/64",
		"2001:db8:1:2::9":      "2001:db8:1:2::/64",
		"fe80::1%eth0":         "fe80::/64",
		"pipe":                 "pipe",
	} {
		if got := clientKey(in); got != want {
			t.Errorf("clientKey(%q) = %q, want %q", in, got, want)
		}
	}
}
