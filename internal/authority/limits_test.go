package authority

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/checkpointd/checkpoint/internal/clock/clocktest"
	"github.com/checkpointd/checkpoint/internal/credential/credentialtest"
	"github.com/checkpointd/checkpoint/internal/protocol"
	"github.com/checkpointd/checkpoint/store"
)

// TestSlots: expensive work takes a slot; a request that finds none waits
// until one is given back, or answers busy after the queue time.
func TestSlots(t *testing.T) {
	clk := clocktest.New(time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC))
	s := make(slots, 1)
	if !s.take(context.Background(), clk, time.Second) {
		t.Fatal("the first take waited")
	}
	got := make(chan bool, 1)
	go func() { got <- s.take(context.Background(), clk, 10*time.Second) }()
	for clk.Waiters() == 0 {
		time.Sleep(time.Millisecond)
	}
	clk.Advance(9 * time.Second)
	select {
	case <-got:
		t.Fatal("a second take returned while the slot was held and the queue time not over")
	case <-time.After(20 * time.Millisecond):
	}
	clk.Advance(time.Second)
	if <-got {
		t.Error("a take got a slot that was never given back")
	}
	go func() { got <- s.take(context.Background(), clk, 10*time.Second) }()
	for clk.Waiters() == 0 {
		time.Sleep(time.Millisecond)
	}
	s.give()
	if !<-got {
		t.Error("a waiting take did not get the slot given back")
	}
	w := httptest.NewRecorder()
	busy(w)
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
		t.Errorf("busy: %d %v", w.Code, w.Header())
	}
}

// TestRegistrationCodesWaitForHashing: with every hashing slot taken, a
// request for a registration code is answered 503 once the queue time is
// over; with the slot back, it is served.
func TestRegistrationCodesWaitForHashing(t *testing.T) {
	f := credentialtest.New()
	db, err := store.OpenAuthority(filepath.Join(t.TempDir(), "authority.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	clk := clocktest.New(f.Now)
	s := New(db, Keys{Issuer: f.Issuer, IssuerCode: "GD", List: credentialtest.Key("list"), Pseudonym: f.PseudonymKey},
		Options{Clock: clk, AdminToken: "admin", Region: "44", Limits: Limits{Hashing: 1, Queue: 5 * time.Second}})
	body, _ := protocol.Enc.Marshal(protocol.AdminRegistrationCode{IDNumber: credentialtest.IDNumber, Name: credentialtest.Name,
		Operator: "office-1"})
	ask := func() int {
		r := httptest.NewRequest(http.MethodPost, protocol.PathAdminRegistrationCode, bytes.NewReader(body))
		r.Header.Set(protocol.HeaderAdmin, "Bearer admin")
		w := httptest.NewRecorder()
		s.Handler().ServeHTTP(w, r)
		return w.Code
	}
	s.hashing.take(context.Background(), clk, 0) // all the slots busy
	code := make(chan int, 1)
	go func() { code <- ask() }()
	for clk.Waiters() == 0 {
		time.Sleep(time.Millisecond)
	}
	clk.Advance(5 * time.Second)
	if c := <-code; c != http.StatusServiceUnavailable {
		t.Errorf("registration code with no hashing slot: %d", c)
	}
	s.hashing.give()
	if c := ask(); c != http.StatusOK {
		t.Errorf("registration code once the slot is back: %d", c)
	}
}

// TestRegistrationCodesAreRateLimited: beyond the burst, codes are
// refused until the rate allows one more.
func TestRegistrationCodesAreRateLimited(t *testing.T) {
	f := credentialtest.New()
	db, err := store.OpenAuthority(filepath.Join(t.TempDir(), "authority.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	clk := clocktest.New(f.Now)
	s := New(db, Keys{Issuer: f.Issuer, IssuerCode: "GD", List: credentialtest.Key("list"), Pseudonym: f.PseudonymKey},
		Options{Clock: clk, AdminToken: "admin", Limits: Limits{CodeBurst: 2, CodeEvery: time.Minute}})
	body, _ := protocol.Enc.Marshal(protocol.AdminRegistrationCode{IDNumber: credentialtest.IDNumber, Name: credentialtest.Name,
		Operator: "office-1"})
	ask := func() int {
		r := httptest.NewRequest(http.MethodPost, protocol.PathAdminRegistrationCode, bytes.NewReader(body))
		r.Header.Set(protocol.HeaderAdmin, "Bearer admin")
		w := httptest.NewRecorder()
		s.Handler().ServeHTTP(w, r)
		return w.Code
	}
	var codes []int
	for range 3 {
		codes = append(codes, ask())
	}
	clk.Advance(time.Minute)
	codes = append(codes, ask())
	if fmt.Sprint(codes) != "[200 200 429 200]" {
		t.Errorf("two codes, a third at once, a fourth a minute later: %v", codes)
	}
}

// TestSeenRequests: a nonce is accepted once per device while its
// request is within the window, and forgotten after.
func TestSeenRequests(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	s := newSeenRequests(2*time.Minute, maxSeenPerDevice)
	if s.add("d1", []byte("n1"), now, now) != nonceNew || s.add("d1", []byte("n1"), now, now) != nonceReplayed {
		t.Error("the same request was not refused the second time")
	}
	if s.add("d2", []byte("n1"), now, now) != nonceNew {
		t.Error("another device's nonce was refused")
	}
	later := now.Add(3 * time.Minute)
	s.add("d1", []byte("n9"), later, later) // sweeps d1, and d2, the only other
	if _, ok := s.devices["d1"].seen["n1"]; ok {
		t.Error("a request older than the window is still remembered")
	}
	if _, ok := s.devices["d2"]; ok || s.total != 1 {
		t.Errorf("a device with nothing left in the window is still kept (%d requests remembered)", s.total)
	}
}

// TestSeenRequestsPerDevice: one device making requests without end fills
// its own set, not the others' room: they are still served.
func TestSeenRequestsPerDevice(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	s := newSeenRequests(2*time.Minute, maxSeenPerDevice)
	s.max = 3 * maxSeenPerDevice
	for i := range s.max + 1 {
		r := s.add("greedy", []byte(fmt.Sprint(i)), now, now)
		if want := nonceNew; i >= maxSeenPerDevice {
			want = nonceFull
			if r != want {
				t.Fatalf("request %d of one device within the window: %v, want full", i, r)
			}
		} else if r != want {
			t.Fatalf("request %d of one device within the window: %v", i, r)
		}
	}
	if r := s.add("honest", []byte("n1"), now, now); r != nonceNew {
		t.Errorf("another device after one filled its set: %v", r)
	}
	// Once the window has passed, the device is served again.
	later := now.Add(3 * time.Minute)
	if r := s.add("greedy", []byte("late"), later, later); r != nonceNew || s.total != 1 {
		t.Errorf("after the window: %v, %d remembered", r, s.total)
	}
}

// pipeListener hands out one end of in-memory connections, each from the
// address it was given.
type pipeListener struct {
	conns chan net.Conn
}

func (p *pipeListener) Accept() (net.Conn, error) {
	c, ok := <-p.conns
	if !ok || c == nil {
		return nil, net.ErrClosed
	}
	return c, nil
}
func (p *pipeListener) Close() error   { return nil }
func (p *pipeListener) Addr() net.Addr { return &net.TCPAddr{} }

// addrConn is a connection from a given address that records its closing.
type addrConn struct {
	net.Conn
	from   net.Addr
	mu     sync.Mutex
	closed bool
}

func (c *addrConn) RemoteAddr() net.Addr { return c.from }
func (c *addrConn) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	return c.Conn.Close()
}
func (c *addrConn) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// TestLimitListenerEvictsIdle: a connection over a cap takes the place of
// the connection idle longest (its client's, for the client's cap; anyone's,
// for the global one); it is closed at once only when none is idle.
func TestLimitListenerEvictsIdle(t *testing.T) {
	clk := clocktest.New(time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC))
	var logs strings.Builder
	var logMu sync.Mutex
	log := slog.New(slog.NewTextHandler(writerFunc(func(b []byte) (int, error) {
		logMu.Lock()
		defer logMu.Unlock()
		return logs.Write(b)
	}), nil))
	pl := &pipeListener{conns: make(chan net.Conn, 1)}
	l := newLimitListener(pl, Limits{MaxConns: 4, MaxConnsPerIP: 2}.withDefaults(), clk, log)
	// dial offers a connection from ip and reports the one accepted (nil:
	// closed at once) and the raw connection.
	dial := func(ip string) (*limitedConn, *addrConn) {
		a, b := net.Pipe()
		t.Cleanup(func() { a.Close(); b.Close() })
		c := &addrConn{Conn: a, from: &net.TCPAddr{IP: net.ParseIP(ip), Port: 4000}}
		pl.conns <- c
		got := make(chan net.Conn, 1)
		go func() {
			nc, _ := l.Accept()
			got <- nc
		}()
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			select {
			case nc := <-got:
				return nc.(*limitedConn), c
			default:
			}
			if c.isClosed() {
				// Refused: Accept went on to wait for the next connection.
				pl.conns <- nil // ends it
				<-got
				return nil, c
			}
		}
		t.Fatalf("a connection from %s neither accepted nor closed", ip)
		return nil, nil
	}
	a1, r1 := dial("192.0.2.1")
	a2, r2 := dial("192.0.2.1")
	if a1 == nil || a2 == nil {
		t.Fatal("two connections under the cap refused")
	}
	l.connState(a1, http.StateActive)
	l.connState(a2, http.StateActive)
	// Both busy: a third from the address is refused.
	if a3, r3 := dial("192.0.2.1"); a3 != nil || !r3.isClosed() {
		t.Fatal("a third connection accepted while both were busy")
	}
	// a2 then a1 go idle: a third takes the place of a2, idle longest.
	l.connState(a2, http.StateIdle)
	l.connState(a1, http.StateIdle)
	a3, _ := dial("192.0.2.1")
	if a3 == nil || !r2.isClosed() || r1.isClosed() {
		t.Fatalf("over the client's cap with idle connections: accepted %v, idle longest closed %v, other closed %v",
			a3 != nil, r2.isClosed(), r1.isClosed())
	}
	// The global cap of 4: two from another client fill it; a fifth
	// connection (a third client) takes the place of a1, the only idle one.
	b1, _ := dial("192.0.2.2")
	b2, _ := dial("192.0.2.2")
	l.connState(a3, http.StateActive)
	l.connState(b1, http.StateActive)
	l.connState(b2, http.StateActive)
	if c1, _ := dial("2001:db8:1:2::1"); c1 == nil || !r1.isClosed() {
		t.Fatalf("over the global cap with one idle connection: accepted %v, idle one closed %v", c1 != nil, r1.isClosed())
	}
	// Nothing idle now: refused, and the refusal logged.
	if c2, _ := dial("2001:db8:1:2::2"); c2 != nil {
		t.Fatal("accepted over the global cap with nothing idle")
	}
	logMu.Lock()
	if !strings.Contains(logs.String(), "connections refused: limit reached") {
		t.Errorf("refusal not logged:\n%s", logs.String())
	}
	logMu.Unlock()
	// A closed connection gives its place back once, however often it is
	// closed.
	b1.Close()
	b1.Close()
	l.connState(b1, http.StateClosed)
	l.mu.Lock()
	open, perB := l.open, l.clients["192.0.2.2"].open
	l.mu.Unlock()
	if open != 3 || perB != 1 {
		t.Errorf("after one close: %d open, %d from its client; want 3 and 1", open, perB)
	}
	close(pl.conns)
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

// TestClientKey: IPv4 clients by address, IPv6 by /64.
func TestClientKey(t *testing.T) {
	for addr, want := range map[string]string{
		"192.0.2.7:4000":               "192.0.2.7",
		"[::ffff:192.0.2.7]:4000":      "192.0.2.7",
		"[2001:db8:1:2:aaaa::1]:4000":  "2001:db8:1:2::/64",
		"[2001:db8:1:2:bbbb::9]:5000":  "2001:db8:1:2::/64",
		"[fe80::1%eth0]:4000":          "fe80::/64",
		"[2001:db8:1:3::1]:4000":       "2001:db8:1:3::/64",
		"not an address":               "not an address",
		"[2001:db8:1:2:ffff::ff]:4000": "2001:db8:1:2::/64",
	} {
		if got := clientKey(addr); got != want {
			t.Errorf("clientKey(%q) = %q, want %q", addr, got, want)
		}
	}
}

// TestFailuresTableFull: with the table of clients full, a new client that
// fails is still counted and locked out (the client that failed least
// recently is forgotten), and the table stays bounded.
func TestFailuresTableFull(t *testing.T) {
	clk := clocktest.New(time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC))
	f := newFailures(Limits{FailureBurst: 1, FailureEvery: time.Hour}, clk, slog.New(slog.DiscardHandler))
	f.max = 1000
	for i := range f.max {
		f.fail(fmt.Sprintf("10.0.%d.%d", i/256, i%256), "admin token")
	}
	f.fail("10.0.0.0", "admin token") // the first, failing again: recently used now
	if f.fail("192.0.2.1", "admin token") {
		t.Fatal("a new client's first failure answered 429")
	}
	if !f.fail("192.0.2.1", "admin token") {
		t.Error("a new client, out of allowance, not refused while the table was full")
	}
	if !f.fail("10.0.0.0", "admin token") {
		t.Error("a client that failed recently was forgotten")
	}
	if _, ok := f.clients["10.0.0.1"]; ok {
		t.Error("the client that failed least recently is still kept")
	}
	if f.lru.Len() != f.max || len(f.clients) != f.max {
		t.Errorf("%d clients kept (%d in the map), max %d", f.lru.Len(), len(f.clients), f.max)
	}
}

// TestByteBudget: a body that does not fit waits for bytes to be given
// back, or gives up after the queue time.
func TestByteBudget(t *testing.T) {
	clk := clocktest.New(time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC))
	b := newByteBudget(100)
	if !b.take(context.Background(), clk, time.Second, 60) {
		t.Fatal("60 of 100 bytes refused")
	}
	got := make(chan bool, 1)
	go func() { got <- b.take(context.Background(), clk, 10*time.Second, 50) }()
	for clk.Waiters() == 0 {
		time.Sleep(time.Millisecond)
	}
	b.give(60)
	if !<-got {
		t.Error("a waiting body did not get the bytes given back")
	}
	go func() { got <- b.take(context.Background(), clk, 10*time.Second, 60) }()
	for clk.Waiters() < 2 { // the first take left its timer
		time.Sleep(time.Millisecond)
	}
	clk.Advance(10 * time.Second)
	if <-got {
		t.Error("60 bytes taken while 50 of 100 were in use")
	}
}

// TestMaxConnsDefault: three quarters of the open-file limit, at least
// minMaxConns.
func TestMaxConnsDefault(t *testing.T) {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		t.Skip(err)
	}
	want := max(int(min(r.Cur, 1<<24)*3/4), minMaxConns)
	if got := (Limits{}).withDefaults().MaxConns; got != want {
		t.Errorf("MaxConns %d with an open-file limit of %d, want %d", got, r.Cur, want)
	}
}
