package authority_test

import (
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
	"github.com/checkpointd/checkpoint/internal/credential"
	"github.com/checkpointd/checkpoint/internal/credential/credentialtest"
	"github.com/checkpointd/checkpoint/internal/protocol"
	"github.com/checkpointd/checkpoint/store"
)

// fixture is an authority on a fresh database with one enrolled device.
type fixture struct {
	t      *testing.T
	db     *store.Authority
	srv    *authority.Server
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
	srv := authority.New(db, authority.Keys{Issuer: f.Issuer, IssuerCode: "GD", List: credentialtest.Key("list"),
		Pseudonym: f.PseudonymKey}, opts)
	key := credentialtest.Key("device")
	if err := db.AddToken("token-1", "gate-3", f.Now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	id, err := db.Enroll("token-1", "gate-3", key.Public().(ed25519.PublicKey), f.Now)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, db: db, srv: srv, clock: clk, log: lb, device: id, key: key}
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
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.srv.Serve(ctx, ln, nil) }()
	f.t.Cleanup(func() {
		cancel()
		<-done
	})
	return ln.Addr().String()
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

// TestDeclarations: the declaration endpoint is off unless configured;
// on, it needs the admin token and a valid ID number, takes no colour from
// the caller, gives the colour the authority holds, and allows one
// declaration a day.
func TestDeclarations(t *testing.T) {
	holder := credentialtest.Key("holder").Public().(ed25519.PublicKey)
	decl := protocol.Declaration{IDNumber: credentialtest.IDNumber, Name: credentialtest.Name, HolderKey: holder}

	off := newFixture(t, authority.Options{})
	if w := off.admin(protocol.PathDeclare, decl); w.Code != http.StatusNotFound {
		t.Errorf("declarations not configured: %d %s", w.Code, w.Body)
	}

	f := newFixture(t, authority.Options{Declarations: true})
	body, _ := protocol.Enc.Marshal(decl)
	if w := f.serve(httptest.NewRequest(http.MethodPost, protocol.PathDeclare, bytes.NewReader(body))); w.Code != http.StatusUnauthorized {
		t.Errorf("declaration without the admin token: %d %s", w.Code, w.Body)
	}
	withColour := map[int]any{1: credentialtest.IDNumber, 2: credentialtest.Name, 3: "green", 4: []byte(holder)}
	if w := f.admin(protocol.PathDeclare, withColour); w.Code != http.StatusBadRequest {
		t.Errorf("declaration naming its colour: %d %s", w.Code, w.Body)
	}
	for _, bad := range []string{"440305zz1224", "440305900307123", "44030519900307123"} {
		d := decl
		d.IDNumber = bad
		if w := f.admin(protocol.PathDeclare, d); w.Code != http.StatusBadRequest {
			t.Errorf("declaration for ID number %q: %d %s", bad, w.Code, w.Body)
		}
	}

	colourOf := func(w *httptest.ResponseRecorder) string {
		t.Helper()
		if w.Code != http.StatusOK {
			t.Fatalf("declaration: %d %s", w.Code, w.Body)
		}
		c, err := credential.Parse(w.Body.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		if c.Credential.Region != "44" || !c.Credential.HolderKey.Equal(holder) {
			t.Errorf("credential region %q, holder key %x", c.Credential.Region, c.Credential.HolderKey)
		}
		return c.Credential.Status.String()
	}
	if got := colourOf(f.admin(protocol.PathDeclare, decl)); got != "green" {
		t.Errorf("a subject the authority holds nothing about got %s", got)
	}
	w := f.admin(protocol.PathDeclare, decl)
	if w.Code != http.StatusTooManyRequests || !strings.Contains(w.Body.String(), "next declaration is allowed at") {
		t.Errorf("second declaration the same day: %d %s", w.Code, w.Body)
	}

	// The authority's colour changes: the credentials issued before are
	// revoked, and the next declaration gets the new colour.
	v0, _, _ := f.db.RevocationState()
	if w := f.admin(protocol.PathAdminColour, protocol.AdminColour{IDNumber: credentialtest.IDNumber, Colour: "red"}); w.Code != http.StatusOK {
		t.Fatalf("colour: %d %s", w.Code, w.Body)
	}
	if v1, set, _ := f.db.RevocationState(); v1 != v0+1 || set.Count != 1 {
		t.Errorf("after the colour changed: revocations version %d (was %d), %d entries", v1, v0, set.Count)
	}
	f.clock.Advance(24 * time.Hour)
	if got := colourOf(f.admin(protocol.PathDeclare, decl)); got != "red" {
		t.Errorf("after the authority set red the declaration got %s", got)
	}
}

// TestBodiesAreNotReadBeforeAuthentication: a large body on an
// unauthenticated request costs the server nothing: it is refused from its
// headers.
func TestBodiesAreNotReadBeforeAuthentication(t *testing.T) {
	f := newFixture(t, authority.Options{Declarations: true})
	const size = 63 << 20
	for _, tc := range []struct {
		name, path string
		sign       bool
		want       int
		maxRead    int64
	}{
		{"unsigned upload", protocol.PathEvents, false, http.StatusUnauthorized, 0},
		{"upload by an unknown device", protocol.PathEvents, true, http.StatusUnauthorized, 0},
		{"declaration without token", protocol.PathDeclare, false, http.StatusUnauthorized, 0},
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
// address has used up its allowance: then it is refused without a look
// at its request, the lockout is logged once, and it lifts with time.
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
	// The right token from a locked-out address waits too.
	if w := f.admin(protocol.PathAdminStatus, struct{}{}); w.Code != http.StatusTooManyRequests {
		t.Errorf("right token while locked out: %d", w.Code)
	}
	f.clock.Advance(time.Minute)
	if w := f.admin(protocol.PathAdminStatus, struct{}{}); w.Code != http.StatusOK {
		t.Errorf("right token after the lockout: %d %s", w.Code, w.Body)
	}
	if f.log.count("no longer locked out") != 1 || !strings.Contains(f.log.buf.String(), "refused_while_locked=4") {
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
	if fmt.Sprint(codes) != "[403 401 429 429]" {
		t.Errorf("answers to a bad enrolment token, a bad signature, then two more: %v", codes)
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
