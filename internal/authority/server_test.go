package authority_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/checkpointd/checkpoint/internal/authority"
	"github.com/checkpointd/checkpoint/internal/clock/clocktest"
	"github.com/checkpointd/checkpoint/internal/credential/credentialtest"
	"github.com/checkpointd/checkpoint/internal/protocol"
	"github.com/checkpointd/checkpoint/store"
)

// fixture is an authority on a fresh database with one enrolled device.
type fixture struct {
	t      *testing.T
	db     *store.Authority
	srv    *authority.Server
	keys   authority.Keys
	opts   authority.Options
	clock  *clocktest.Fake
	log    *logBuffer
	device string
	key    ed25519.PrivateKey
}

func newFixture(t *testing.T, opts authority.Options) *fixture {
	t.Helper()
	f := credentialtest.New()
	db, err := store.OpenAuthority(filepath.Join(t.TempDir(), "authority.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	clk := clocktest.New(f.Now)
	lb := &logBuffer{}
	opts.Clock, opts.Log, opts.AdminToken = clk, slog.New(slog.NewTextHandler(lb, nil)), "admin-secret"
	if opts.Region == "" {
		opts.Region = "44"
	}
	keys := authority.Keys{Issuer: f.Issuer, IssuerCode: "GD", List: credentialtest.Key("list"), Pseudonym: f.PseudonymKey}
	srv := authority.New(db, keys, opts)
	key := credentialtest.Key("device")
	if err := db.AddToken("token-1", "gate-3", f.Now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	id, err := db.Enroll("token-1", "gate-3", key.Public().(ed25519.PublicKey), f.Now)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, db: db, srv: srv, keys: keys, opts: opts, clock: clk, log: lb, device: id, key: key}
}

// logBuffer collects the server's log lines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(b)
}

func (l *logBuffer) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.buf.String(), s)
}

// countingBody is a request body that counts what the server read of it.
type countingBody struct {
	r    io.Reader
	read atomic.Int64
}

func (c *countingBody) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.read.Add(int64(n))
	return n, err
}

func (c *countingBody) Close() error { return nil }

// listen serves on a loopback port until the test ends, and returns the
// address.
func (f *fixture) listen() string {
	addr, _ := f.serving()
	return addr
}

// serving serves on a loopback port and returns the address and a stop
// function, which returns what Serve did (the test's end stops it too).
func (f *fixture) serving() (string, func() error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.srv.Serve(ctx, ln, nil) }()
	var once sync.Once
	var served error
	stop := func() error {
		once.Do(func() {
			cancel()
			served = <-done
		})
		return served
	}
	f.t.Cleanup(func() { stop() })
	return ln.Addr().String(), stop
}

// enrol enrols another device and returns its id and key.
func (f *fixture) enrol(name string) (string, ed25519.PrivateKey) {
	f.t.Helper()
	key := credentialtest.Key(name)
	if err := f.db.AddToken("token-"+name, name, f.clock.Now().Add(time.Hour)); err != nil {
		f.t.Fatal(err)
	}
	id, err := f.db.Enroll("token-"+name, name, key.Public().(ed25519.PublicKey), f.clock.Now())
	if err != nil {
		f.t.Fatal(err)
	}
	return id, key
}

// serve runs one request through the handler.
func (f *fixture) serve(r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	f.srv.Handler().ServeHTTP(w, r)
	return w
}

// signed is a request signed by the fixture's device at time at.
func (f *fixture) signed(method, path string, body []byte, nonce string, at time.Time) *http.Request {
	r := httptest.NewRequest(method, path, bytes.NewReader(body))
	protocol.SignRequest(r, f.device, f.key, []byte(nonce), at, body)
	return r
}

func (f *fixture) admin(path string, v any) *httptest.ResponseRecorder {
	body, err := protocol.Enc.Marshal(v)
	if err != nil {
		f.t.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
	r.Header.Set(protocol.HeaderAdmin, "Bearer admin-secret")
	return f.serve(r)
}

// TestBodiesAreNotReadBeforeAuthentication: a large body on an
// unauthenticated request costs the server nothing: it is refused from its
// headers.
func TestBodiesAreNotReadBeforeAuthentication(t *testing.T) {
	f := newFixture(t, authority.Options{})
	const size = 63 << 20
	for _, tc := range []struct {
		name, path string
		sign       bool
		want       int
		maxRead    int64
	}{
		{"unsigned upload", protocol.PathEvents, false, http.StatusUnauthorized, 0},
		{"upload by an unknown device", protocol.PathEvents, true, http.StatusUnauthorized, 0},
		{"declaration without a holder signature", protocol.PathDeclare, false, http.StatusUnauthorized, 0},
		{"registration without a holder signature", protocol.PathRegister, false, http.StatusUnauthorized, 0},
		{"feed without token", protocol.PathAdminFeed, false, http.StatusUnauthorized, 0},
		{"admin call without token", protocol.PathAdminRevoke, false, http.StatusUnauthorized, 0},
		{"enrolment", protocol.PathEnroll, false, http.StatusRequestEntityTooLarge, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := &countingBody{r: io.LimitReader(zeros{}, size)}
			r := httptest.NewRequest(http.MethodPost, tc.path, body)
			r.ContentLength = size
			if tc.sign {
				protocol.SignRequest(r, "no-such-device", f.key, []byte("nonce-01"), f.clock.Now(), nil)
			}
			w := f.serve(r)
			if w.Code != tc.want || body.read.Load() > tc.maxRead {
				t.Errorf("answer %d (want %d) after reading %d bytes of %d", w.Code, tc.want, body.read.Load(), size)
			}
		})
	}
	// A body that does not say its length is read up to the small limit.
	body := &countingBody{r: io.LimitReader(zeros{}, size)}
	r := httptest.NewRequest(http.MethodPost, protocol.PathEnroll, body)
	r.ContentLength = -1
	if w := f.serve(r); w.Code != http.StatusRequestEntityTooLarge || body.read.Load() > 64<<10 {
		t.Errorf("enrolment of unknown length: %d after reading %d bytes", w.Code, body.read.Load())
	}
}

type zeros struct{}

func (zeros) Read(b []byte) (int, error) {
	clear(b)
	return len(b), nil
}

// TestSignedRequests: a device's request is accepted once, within the
// request window; a replay, a request dated outside the window (answered
// with the authority's time) and a body that is not the one signed are
// refused.
func TestSignedRequests(t *testing.T) {
	f := newFixture(t, authority.Options{})
	now := f.clock.Now()
	if w := f.serve(f.signed(http.MethodGet, protocol.PathStatus, nil, "nonce-01", now)); w.Code != http.StatusOK {
		t.Fatalf("status: %d %s", w.Code, w.Body)
	}
	if w := f.serve(f.signed(http.MethodGet, protocol.PathStatus, nil, "nonce-01", now)); w.Code != http.StatusUnauthorized {
		t.Errorf("the same request again: %d %s", w.Code, w.Body)
	}
	w := f.serve(f.signed(http.MethodGet, protocol.PathStatus, nil, "nonce-02", now.Add(-10*time.Minute)))
	if w.Code != http.StatusUnauthorized || w.Header().Get(protocol.HeaderServerTime) != fmt.Sprint(now.Unix()) {
		t.Errorf("a request 10 minutes old: %d %q %s", w.Code, w.Header().Get(protocol.HeaderServerTime), w.Body)
	}
	// An upload whose body was swapped after signing.
	batch, _ := protocol.Enc.Marshal(protocol.EventBatch{DeviceID: f.device})
	r := f.signed(http.MethodPost, protocol.PathEvents, batch, "nonce-03", now)
	other, _ := protocol.Enc.Marshal(protocol.EventBatch{DeviceID: f.device, From: 1})
	r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(other)), int64(len(other))
	if w := f.serve(r); w.Code != http.StatusBadRequest {
		t.Errorf("a body other than the one signed: %d %s", w.Code, w.Body)
	}
	// Once the window has passed, an old request's nonce is forgotten and
	// its date refuses it.
	f.clock.Advance(5 * time.Minute)
	if w := f.serve(f.signed(http.MethodGet, protocol.PathStatus, nil, "nonce-01", now)); w.Code != http.StatusUnauthorized {
		t.Errorf("the first request replayed 5 minutes later: %d %s", w.Code, w.Body)
	}
}

// TestFailuresAreLimitedAndLogged: wrong admin tokens, enrolment tokens
// and device signatures from one address are each logged, until the
// address has used up its allowance: then its failing requests are
// answered 429 without a log line, the lockout is logged once, and it
// lifts with time. A request that authenticates is never refused.
func TestFailuresAreLimitedAndLogged(t *testing.T) {
	f := newFixture(t, authority.Options{Limits: authority.Limits{FailureBurst: 3, FailureEvery: time.Minute}})
	wrongAdmin := func() int {
		r := httptest.NewRequest(http.MethodPost, protocol.PathAdminStatus, strings.NewReader(""))
		r.Header.Set(protocol.HeaderAdmin, "Bearer guess")
		return f.serve(r).Code
	}
	var codes []int
	for i := 0; i < 6; i++ {
		codes = append(codes, wrongAdmin())
	}
	if fmt.Sprint(codes) != "[401 401 401 429 429 429]" {
		t.Errorf("answers to six wrong admin tokens: %v", codes)
	}
	if n := f.log.count("refused: admin token"); n != 3 {
		t.Errorf("%d failures logged, want 3:\n%s", n, f.log.buf.String())
	}
	if n := f.log.count("locked out after repeated failures"); n != 1 {
		t.Errorf("lockout logged %d times", n)
	}
	// The right token from a locked-out address is served: the operator
	// is not locked out by someone guessing from the same network.
	if w := f.admin(protocol.PathAdminStatus, struct{}{}); w.Code != http.StatusOK {
		t.Errorf("right token while locked out: %d", w.Code)
	}
	f.clock.Advance(time.Minute)
	if w := f.admin(protocol.PathAdminStatus, struct{}{}); w.Code != http.StatusOK {
		t.Errorf("right token after the lockout: %d %s", w.Code, w.Body)
	}
	if f.log.count("no longer locked out") != 1 || !strings.Contains(f.log.buf.String(), "refused_while_locked=3") {
		t.Errorf("end of the lockout not logged with its refusals:\n%s", f.log.buf.String())
	}

	// Enrolment tokens and device signatures count as well.
	g := newFixture(t, authority.Options{Limits: authority.Limits{FailureBurst: 2, FailureEvery: time.Hour}})
	enrol, _ := protocol.Enc.Marshal(protocol.EnrollRequest{Name: "x", DeviceKey: make([]byte, 32), Token: "guess"})
	bad := g.signed(http.MethodGet, protocol.PathStatus, nil, "nonce-01", g.clock.Now())
	bad.Header.Set(protocol.HeaderNonce, "6e6f6e63652d3032") // not what was signed
	codes = []int{
		g.serve(httptest.NewRequest(http.MethodPost, protocol.PathEnroll, bytes.NewReader(enrol))).Code,
		g.serve(bad).Code,
		g.serve(httptest.NewRequest(http.MethodPost, protocol.PathEnroll, bytes.NewReader(enrol))).Code,
		g.serve(g.signed(http.MethodGet, protocol.PathStatus, nil, "nonce-03", g.clock.Now())).Code,
	}
	if fmt.Sprint(codes) != "[403 401 429 200]" {
		t.Errorf("answers to a bad enrolment token, a bad signature, another bad token, then a good signature: %v", codes)
	}
	if g.log.count("refused: enrolment token") != 1 || g.log.count("refused: device signature") != 1 {
		t.Errorf("failures not logged:\n%s", g.log.buf.String())
	}
}

// TestConnectionLimits: connections beyond the cap from one address are
// closed at once; a client that trickles its body is dropped after the
// read timeout; the slots the limits free are usable again.
func TestConnectionLimits(t *testing.T) {
	f := newFixture(t, authority.Options{Limits: authority.Limits{MaxConnsPerIP: 3, ReadTimeout: 500 * time.Millisecond}})
	addr := f.listen()

	var held []net.Conn
	for i := 0; i < 3; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		held = append(held, c)
	}
	extra, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	extra.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := extra.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !isReset(err) {
		t.Errorf("a fourth connection from one address was not closed: %v", err)
	}

	// One of the three trickles a body: one byte every 200 ms.
	c := held[0]
	fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n", protocol.PathEnroll)
	start := time.Now()
	dropped := make(chan time.Duration, 1)
	go func() {
		buf := make([]byte, 4096)
		for {
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Read(buf); err != nil {
				dropped <- time.Since(start)
				return
			}
		}
	}()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	var after time.Duration
trickle:
	for {
		select {
		case after = <-dropped:
			break trickle
		case <-tick.C:
			c.Write([]byte{'x'})
			if time.Since(start) > 10*time.Second {
				t.Fatal("a trickling client was held for 10 s")
			}
		}
	}
	if after > 5*time.Second {
		t.Errorf("a trickling client was dropped after %v (read timeout 500 ms)", after)
	}
	held[1].Close()
	held[2].Close()
	// The slots are free again: a real request gets through.
	client := &http.Client{Timeout: 5 * time.Second}
	var res *http.Response
	for i := 0; i < 50; i++ {
		if res, err = client.Get("http://" + addr + protocol.PathTrust); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("after the connections closed: %v", err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNotFound { // no trust list set: the server answered
		t.Errorf("trust list: %s", res.Status)
	}
}

func isReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset")
}

// TestUploadsAreBounded: an authenticated upload larger than the limit is
// refused from its length, and one without a length is refused.
func TestUploadsAreBounded(t *testing.T) {
	f := newFixture(t, authority.Options{Limits: authority.Limits{MaxUpload: 1 << 20}})
	big := make([]byte, 2<<20)
	body := &countingBody{r: bytes.NewReader(big)}
	r := f.signed(http.MethodPost, protocol.PathEvents, big, "nonce-01", f.clock.Now())
	r.Body = body
	if w := f.serve(r); w.Code != http.StatusRequestEntityTooLarge || body.read.Load() != 0 {
		t.Errorf("2 MiB upload over a 1 MiB limit: %d after reading %d bytes", w.Code, body.read.Load())
	}
	r = f.signed(http.MethodPost, protocol.PathEvents, nil, "nonce-02", f.clock.Now())
	r.ContentLength = -1
	if w := f.serve(r); w.Code != http.StatusLengthRequired {
		t.Errorf("upload without a length: %d", w.Code)
	}
}

// slowReader gives one byte at a time, a pause before each.
type slowReader struct {
	b     []byte
	pause time.Duration
}

func (s *slowReader) Read(p []byte) (int, error) {
	if len(s.b) == 0 {
		return 0, io.EOF
	}
	time.Sleep(s.pause)
	p[0], s.b = s.b[0], s.b[1:]
	return 1, nil
}

// TestSlowUploadGetsItsTime: a device on a slow link gets the time its
// upload needs at the slowest rate waited for, though that is well past
// the read timeout that drops unauthenticated tricklers.
func TestSlowUploadGetsItsTime(t *testing.T) {
	f := newFixture(t, authority.Options{Limits: authority.Limits{ReadTimeout: 300 * time.Millisecond,
		WriteTimeout: 300 * time.Millisecond, MinRate: 10}})
	addr := f.listen()
	body, _ := protocol.Enc.Marshal(protocol.EventBatch{DeviceID: f.device, Events: [][]byte{}})
	r, _ := http.NewRequest(http.MethodPost, "http://"+addr+protocol.PathEvents, &slowReader{b: body, pause: 40 * time.Millisecond})
	r.ContentLength = int64(len(body))
	protocol.SignRequest(r, f.device, f.key, []byte("nonce-01"), f.clock.Now(), body)
	start := time.Now()
	res, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatalf("slow upload of %d bytes: %v", len(body), err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Errorf("slow upload: %s", res.Status)
	}
	if took := time.Since(start); took < 300*time.Millisecond {
		t.Errorf("the upload took %v: not slower than the read timeout, so it tests nothing", took)
	}
}

// TestDownloadsNeedTheDevice: the manifest and the chunks are served to
// enrolled devices only; the trust list to anyone.
func TestDownloadsNeedTheDevice(t *testing.T) {
	f := newFixture(t, authority.Options{})
	if _, err := f.db.Revoke([]store.RevEntry{{Subject: [store.SubjectSize]byte{1}, Before: 1, DropAfter: f.clock.Now().Add(time.Hour).Unix()}}); err != nil {
		t.Fatal(err)
	}
	if err := f.db.SetTrustList([]byte("the list")); err != nil {
		t.Fatal(err)
	}
	for i, path := range []string{protocol.PathManifest + "?since=0", protocol.PathChunk + "?version=1&since=0&index=0"} {
		if w := f.serve(httptest.NewRequest(http.MethodGet, path, nil)); w.Code != http.StatusUnauthorized {
			t.Errorf("%s unsigned: %d", path, w.Code)
		}
		if w := f.serve(f.signed(http.MethodGet, path, nil, fmt.Sprintf("nonce-%02d", i), f.clock.Now())); w.Code != http.StatusOK {
			t.Errorf("%s signed: %d %s", path, w.Code, w.Body)
		}
	}
	if w := f.serve(httptest.NewRequest(http.MethodGet, protocol.PathTrust, nil)); w.Code != http.StatusOK {
		t.Errorf("trust list: %d", w.Code)
	}
}

// countingStore counts the downloads prepared from the database.
type countingStore struct {
	*store.Authority
	items atomic.Int64
}

func (c *countingStore) RevocationItems(since uint64) ([]store.RevEntry, bool, uint64, store.SetDigest, error) {
	c.items.Add(1)
	return c.Authority.RevocationItems(since)
}

// TestDownloadsArePreparedOnce: the snapshot of a version and the last
// deltas asked for are prepared once, however many devices ask, and
// prepared again only for a new version or a delta no longer kept.
func TestDownloadsArePreparedOnce(t *testing.T) {
	f := newFixture(t, authority.Options{ChunkEntries: 2})
	cs := &countingStore{Authority: f.db}
	f.srv = authority.New(cs, f.keys, f.opts)
	revoke := func(b byte) {
		e := store.RevEntry{Subject: [store.SubjectSize]byte{b}, Before: 1, DropAfter: f.clock.Now().Add(time.Hour).Unix()}
		if _, err := f.db.Revoke([]store.RevEntry{e}); err != nil {
			t.Fatal(err)
		}
	}
	for b := byte(1); b <= 5; b++ {
		revoke(b)
	}
	n := 0
	get := func(path string) {
		t.Helper()
		n++
		if w := f.serve(f.signed(http.MethodGet, path, nil, fmt.Sprintf("nonce-%04d", n), f.clock.Now())); w.Code != http.StatusOK {
			t.Fatalf("%s: %d %s", path, w.Code, w.Body)
		}
	}
	prepared := func(want int64, what string) {
		t.Helper()
		if got := cs.items.Swap(0); got != want {
			t.Errorf("%s: %d downloads prepared, want %d", what, got, want)
		}
	}
	for range 3 {
		get(protocol.PathManifest + "?since=1")
		get(protocol.PathManifest + "?since=3")
		get(protocol.PathChunk + "?version=5&since=1&index=1")
		get(protocol.PathManifest + "?since=0")
		get(protocol.PathChunk + "?version=5&since=0&index=2")
	}
	prepared(3, "devices at versions 0, 1 and 3, three times each")
	// Eight more versions asked for: the delta from 1 is no longer kept.
	for since := 4; since < 12; since++ {
		get(fmt.Sprintf("%s?since=%d", protocol.PathManifest, since))
	}
	prepared(8, "eight more versions")
	get(protocol.PathManifest + "?since=1")
	get(protocol.PathManifest + "?since=0")
	prepared(1, "the delta from 1 again, and the snapshot")
	revoke(6)
	get(protocol.PathManifest + "?since=0")
	get(protocol.PathManifest + "?since=0")
	prepared(1, "a new version's snapshot")
}

// TestKeepAliveClientsShareTheCap: checkpoints keep their connection
// open between syncs; at the per-address cap a new connection takes the
// place of the one idle longest instead of being refused, and the client
// whose idle connection was closed is served again on a new one.
func TestKeepAliveClientsShareTheCap(t *testing.T) {
	f := newFixture(t, authority.Options{Limits: authority.Limits{MaxConnsPerIP: 2}})
	if err := f.db.SetTrustList([]byte("the list")); err != nil {
		t.Fatal(err)
	}
	addr := f.listen()
	get := func(c *http.Client) error {
		res, err := c.Get("http://" + addr + protocol.PathTrust)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			return fmt.Errorf("%s", res.Status)
		}
		return nil
	}
	var clients []*http.Client
	for range 3 {
		clients = append(clients, &http.Client{Transport: &http.Transport{}, Timeout: 5 * time.Second})
	}
	defer func() {
		for _, c := range clients {
			c.CloseIdleConnections()
		}
	}()
	for i, c := range clients[:2] {
		if err := get(c); err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
	}
	// The third client: the first two connections are idle once the
	// server has finished with them.
	var err error
	for range 200 {
		if err = get(clients[2]); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("a third client at the cap of two, with two idle connections: %v", err)
	}
	for i, c := range clients[:2] {
		if err := get(c); err != nil {
			t.Errorf("client %d after its idle connection may have been closed: %v", i, err)
		}
	}
}

// TestOneUploadPerDevice: while a device's upload is being received, a
// second one from the same device is answered 429 at once.
func TestOneUploadPerDevice(t *testing.T) {
	f := newFixture(t, authority.Options{})
	batch, _ := protocol.Enc.Marshal(protocol.EventBatch{DeviceID: f.device, Events: [][]byte{}})
	pr, pw := io.Pipe()
	first := f.signed(http.MethodPost, protocol.PathEvents, batch, "nonce-01", f.clock.Now())
	first.Body, first.ContentLength = pr, int64(len(batch))
	done := make(chan int, 1)
	go func() { done <- f.serve(first).Code }()
	pw.Write(batch[:1]) // returns once the handler reads the body
	if w := f.serve(f.signed(http.MethodPost, protocol.PathEvents, batch, "nonce-02", f.clock.Now())); w.Code != http.StatusTooManyRequests {
		t.Errorf("a second upload while the first is received: %d %s", w.Code, w.Body)
	}
	pw.Write(batch[1:])
	pw.Close()
	if c := <-done; c != http.StatusOK {
		t.Errorf("the first upload: %d", c)
	}
	if w := f.serve(f.signed(http.MethodPost, protocol.PathEvents, batch, "nonce-03", f.clock.Now())); w.Code != http.StatusOK {
		t.Errorf("the next upload: %d %s", w.Code, w.Body)
	}
}

// TestUploadBytesAreBounded: the bodies of the uploads in flight share a
// budget, taken by their stated length before they are read: an upload
// that does not fit waits, and is answered 503 after the queue time.
func TestUploadBytesAreBounded(t *testing.T) {
	f := newFixture(t, authority.Options{Limits: authority.Limits{MaxUpload: 1000, UploadBytes: 1000, Queue: 5 * time.Second}})
	other, otherKey := f.enrol("gate-4")
	pr, pw := io.Pipe()
	big := f.signed(http.MethodPost, protocol.PathEvents, nil, "nonce-01", f.clock.Now())
	big.Body, big.ContentLength = pr, 990
	done := make(chan int, 1)
	go func() { done <- f.serve(big).Code }()
	pw.Write([]byte{0}) // returns once the handler reads the body
	batch, _ := protocol.Enc.Marshal(protocol.EventBatch{DeviceID: other, Events: [][]byte{}})
	r := httptest.NewRequest(http.MethodPost, protocol.PathEvents, bytes.NewReader(batch))
	protocol.SignRequest(r, other, otherKey, []byte("nonce-02"), f.clock.Now(), batch)
	code := make(chan int, 1)
	go func() { code <- f.serve(r).Code }()
	for deadline := time.Now().Add(10 * time.Second); f.clock.Waiters() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the second upload did not wait for the budget: answered %d", <-code)
		}
	}
	f.clock.Advance(5 * time.Second)
	if c := <-code; c != http.StatusServiceUnavailable {
		t.Errorf("an upload with the budget taken: %d", c)
	}
	pw.CloseWithError(errors.New("link down"))
	<-done
	r = httptest.NewRequest(http.MethodPost, protocol.PathEvents, bytes.NewReader(batch))
	protocol.SignRequest(r, other, otherKey, []byte("nonce-03"), f.clock.Now(), batch)
	if w := f.serve(r); w.Code != http.StatusOK {
		t.Errorf("an upload once the budget is back: %d %s", w.Code, w.Body)
	}
}

// TestRequestDatedBefore1970: a box whose clock reads before 1970 signs
// a negative time; it is told the authority's time, and it is not counted
// as a failure, however often it tries.
func TestRequestDatedBefore1970(t *testing.T) {
	f := newFixture(t, authority.Options{Limits: authority.Limits{FailureBurst: 2}})
	for i := range 5 {
		w := f.serve(f.signed(http.MethodGet, protocol.PathStatus, nil, fmt.Sprintf("nonce-%02d", i), time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC)))
		if w.Code != http.StatusUnauthorized || w.Header().Get(protocol.HeaderServerTime) != fmt.Sprint(f.clock.Now().Unix()) {
			t.Fatalf("request %d dated 1960: %d %q %s", i, w.Code, w.Header().Get(protocol.HeaderServerTime), w.Body)
		}
	}
	if n := f.log.count("refused:"); n != 0 {
		t.Errorf("requests dated outside the window counted as failures:\n%s", f.log.buf.String())
	}
}

// TestShutdownClosesSlowClients: when its context ends, Serve lets the
// requests in progress finish for the grace, then closes them and returns
// nil: a client trickling its body does not keep the authority up or make
// it fail.
func TestShutdownClosesSlowClients(t *testing.T) {
	f := newFixture(t, authority.Options{Limits: authority.Limits{ShutdownGrace: 200 * time.Millisecond}})
	addr, stop := f.serving()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\nExpect: 100-continue\r\n\r\n", protocol.PathEnroll)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil || !strings.Contains(line, "100") {
		t.Fatalf("waiting for the handler to read the body: %q %v", line, err)
	}
	br.ReadString('\n') // the blank line after 100 Continue
	c.Write([]byte("0123456789"))
	returned := make(chan error, 1)
	go func() { returned <- stop() }()
	select {
	case err := <-returned:
		if err != nil {
			t.Errorf("Serve with a slow client at shutdown: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve still running 10 s after its context ended")
	}
	if _, err := io.Copy(io.Discard, br); err != nil && !isReset(err) {
		t.Errorf("the slow client's connection: %v", err)
	}
}

// failingStore is the fixture's database that, once failing is set,
// fails every call the test makes with a database's error text.
type failingStore struct {
	*store.Authority
	failing    atomic.Bool
	keyFailing atomic.Bool // DeviceKey fails, alone
	keyLookups atomic.Int64
}

func (s *failingStore) DeviceKey(id string) (ed25519.PublicKey, error) {
	s.keyLookups.Add(1)
	if s.keyFailing.Load() {
		return nil, errors.New(dbFailure)
	}
	return s.Authority.DeviceKey(id)
}

// dbFailure is the text of failingStore's errors: no client may see it.
const dbFailure = `pq: canceling statement due to statement timeout: SELECT cutoff FROM revocations WHERE subject = $1`

func (s *failingStore) fail() error {
	if s.failing.Load() {
		return errors.New(dbFailure)
	}
	return nil
}

func (s *failingStore) Mark(device string) (uint64, error) {
	if err := s.fail(); err != nil {
		return 0, err
	}
	return s.Authority.Mark(device)
}

func (s *failingStore) RevocationState() (uint64, store.SetDigest, error) {
	if err := s.fail(); err != nil {
		return 0, store.SetDigest{}, err
	}
	return s.Authority.RevocationState()
}

func (s *failingStore) RevokeNow(e store.RevEntry) (uint64, error) {
	if err := s.fail(); err != nil {
		return 0, err
	}
	return s.Authority.RevokeNow(e)
}

func (s *failingStore) AddRegistrationCode(c store.RegistrationCode) error {
	if err := s.fail(); err != nil {
		return err
	}
	return s.Authority.AddRegistrationCode(c)
}

func (s *failingStore) Register(r store.Registration) (store.Registered, error) {
	if err := s.fail(); err != nil {
		return store.Registered{}, err
	}
	return s.Authority.Register(r)
}

func (s *failingStore) Holder(subject [store.SubjectSize]byte) (store.Holder, error) {
	if err := s.fail(); err != nil {
		return store.Holder{}, err
	}
	return s.Authority.Holder(subject)
}

// TestStorageErrorsStayInTheLog: a storage error is answered with a bare
// "internal error" 500, its text (SQL, time limits) only in the log, with
// the request's path and no personal data.
func TestStorageErrorsStayInTheLog(t *testing.T) {
	f := newFixture(t, authority.Options{})
	fs := &failingStore{Authority: f.db}
	f.srv = authority.New(fs, f.keys, f.opts)
	code := f.code(credentialtest.IDNumber, credentialtest.Name)
	p := f.registered("phone-1", credentialtest.IDNumber, credentialtest.Name)
	fs.failing.Store(true)
	for _, tc := range []struct {
		name, path string
		do         func() *httptest.ResponseRecorder
	}{
		{"a device's status", protocol.PathStatus, func() *httptest.ResponseRecorder {
			return f.serve(f.signed(http.MethodGet, protocol.PathStatus, nil, "nonce-failing", f.clock.Now()))
		}},
		{"the operator's status", protocol.PathAdminStatus, func() *httptest.ResponseRecorder {
			return f.admin(protocol.PathAdminStatus, struct{}{})
		}},
		{"a revocation", protocol.PathAdminRevoke, func() *httptest.ResponseRecorder {
			return f.admin(protocol.PathAdminRevoke, protocol.AdminRevoke{IDNumber: credentialtest.IDNumber})
		}},
		{"a registration code", protocol.PathAdminRegistrationCode, func() *httptest.ResponseRecorder {
			return f.admin(protocol.PathAdminRegistrationCode, protocol.AdminRegistrationCode{IDNumber: credentialtest.IDNumber,
				Name: credentialtest.Name, Operator: "office-1"})
		}},
		{"a registration", protocol.PathRegister, func() *httptest.ResponseRecorder {
			return f.register(newPhone("phone-2"), credentialtest.IDNumber, credentialtest.Name, code, nil)
		}},
		{"a holder's status", protocol.PathHolderStatus, func() *httptest.ResponseRecorder {
			return f.holderRequest(p, http.MethodGet, protocol.PathHolderStatus, nil, false)
		}},
	} {
		before := f.log.count(dbFailure)
		w := tc.do()
		if w.Code != http.StatusInternalServerError || strings.TrimSpace(w.Body.String()) != "internal error" {
			t.Errorf("%s: %d %q, want 500 \"internal error\"", tc.name, w.Code, w.Body)
		}
		if strings.Contains(w.Body.String(), "SELECT") || strings.Contains(w.Body.String(), "timeout") {
			t.Errorf("%s: the database's error in the answer: %q", tc.name, w.Body)
		}
		if f.log.count(dbFailure) != before+1 || f.log.count("path="+tc.path) == 0 {
			t.Errorf("%s: the error is not logged once with its path:\n%s", tc.name, f.log.buf.String())
		}
	}
	if n := f.log.count("component=authority"); n == 0 || n != strings.Count(f.log.buf.String(), "\n") {
		t.Errorf("log lines without their component:\n%s", f.log.buf.String())
	}
	f.noPersonalData(code)
}

// TestDeviceKeyLookupFailing: when the database cannot say a device's key,
// the device is answered 500 and its requests are not counted as failed
// signatures: once the database is back the device is served, not locked
// out. A device id that enrolment cannot have given is refused without a
// lookup, and counted.
func TestDeviceKeyLookupFailing(t *testing.T) {
	f := newFixture(t, authority.Options{})
	fs := &failingStore{Authority: f.db}
	f.srv = authority.New(fs, f.keys, f.opts)
	fs.keyFailing.Store(true)
	for i := range 30 {
		w := f.serve(f.signed(http.MethodGet, protocol.PathStatus, nil, fmt.Sprintf("nonce-down-%02d", i), f.clock.Now()))
		if w.Code != http.StatusInternalServerError {
			t.Fatalf("request %d with the database down: %d %q, want 500", i, w.Code, w.Body)
		}
	}
	fs.keyFailing.Store(false)
	if w := f.serve(f.signed(http.MethodGet, protocol.PathStatus, nil, "nonce-back", f.clock.Now())); w.Code != http.StatusOK {
		t.Errorf("the database back: %d %q, want 200", w.Code, w.Body)
	}

	before := fs.keyLookups.Load()
	for _, id := range []string{"ZZ" + strings.Repeat("0", 14), strings.Repeat("a", 17), "\xff\xfe", "0123456789ABCDEF"} {
		r := httptest.NewRequest(http.MethodGet, protocol.PathStatus, nil)
		protocol.SignRequest(r, id, f.key, []byte("nonce-id-"+id), f.clock.Now(), nil)
		if w := f.serve(r); w.Code != http.StatusUnauthorized {
			t.Errorf("device id %q: %d, want 401", id, w.Code)
		}
	}
	if n := fs.keyLookups.Load() - before; n != 0 {
		t.Errorf("%d database lookups for malformed device ids", n)
	}
}
