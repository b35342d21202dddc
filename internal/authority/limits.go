package authority

import (
	"container/list"
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"golang.org/x/time/rate"

	"github.com/checkpointd/checkpoint/internal/clock"
)

// Limits bound what clients, authenticated or not, can make the server
// spend. The zero value of each field means its default.
type Limits struct {
	// MaxConns is the number of connections open at once; 0: three
	// quarters of the open-file limit (at least 256), so that the
	// database and the logs always have file descriptors left.
	MaxConns int
	// MaxConnsPerIP is the number of connections open at once from one
	// client (an IPv4 address, or an IPv6 /64); 0: 64.
	MaxConnsPerIP int
	// ReadTimeout bounds the time to read a request's headers and body;
	// a client that trickles its body is dropped after it. 0: 15 s. An
	// authenticated upload gets more time for its size (MinRate).
	ReadTimeout time.Duration
	// IdleTimeout closes a kept-alive connection idle this long; 0: 60 s.
	IdleTimeout time.Duration
	// WriteTimeout bounds the time to send an answer; 0: 60 s. A
	// revocation chunk gets more time for its size (MinRate).
	WriteTimeout time.Duration
	// MaxUpload bounds an upload's body; 0: 8 MiB. Other bodies are
	// bounded much lower (maxSmallBody).
	MaxUpload int64
	// MinRate is the slowest link an upload or a chunk download is given
	// time for, in bytes a second; 0: 4 KiB/s.
	MinRate int64
	// UploadBytes bounds the bodies of the uploads being received at
	// once, by their stated length; 0: 64 MiB. Each device has one upload
	// at a time.
	UploadBytes int64
	// Storing is the number of uploads written to the database at once;
	// 0: 2.
	Storing int
	// Hashing is the number of registration codes and registrations
	// computing an ID hash (Argon2id, 19 MiB each) at once; 0: 2.
	Hashing int
	// Preparing is the number of revocation downloads (a snapshot, or a
	// delta from a version not in the cache) being prepared at once; 0: 1.
	Preparing int
	// Queue is how long a request waits for upload bytes or a storing,
	// hashing or preparing slot before it is answered 503; 0: 10 s.
	Queue time.Duration
	// FailureBurst failed tokens or signatures from one client are
	// answered as such, and one more every FailureEvery; beyond that the
	// client's failing requests are answered 429. A request that
	// authenticates is never refused. 0: 10, one a minute.
	FailureBurst int
	FailureEvery time.Duration
	// CodeBurst registration codes may be issued at once, and one more
	// every CodeEvery; beyond that the operator's requests for codes are
	// answered 429. 0: 60, one a second.
	CodeBurst int
	CodeEvery time.Duration
	// RequestWindow is how far a device's or a holder's request time may
	// be from the authority's; a signed request outside it, or seen before
	// within it, is refused. 0: 2 minutes.
	RequestWindow time.Duration
	// ShutdownGrace is how long Serve lets the requests in progress finish
	// once its context ends; then it closes their connections. 0: 5 s.
	ShutdownGrace time.Duration
}

// maxSmallBody bounds every body but an upload and a feed: enrolments,
// registrations, declarations and the operator's requests are a few
// hundred bytes.
const maxSmallBody = 16 << 10

// minMaxConns is the least MaxConns defaults to, however low the
// open-file limit.
const minMaxConns = 256

func (l Limits) withDefaults() Limits {
	if l.MaxConns <= 0 {
		l.MaxConns = 4096 // where the open-file limit cannot be read
		var r syscall.Rlimit
		if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r) == nil && r.Cur > 0 {
			l.MaxConns = int(min(r.Cur, 1<<24) * 3 / 4)
		}
		l.MaxConns = max(l.MaxConns, minMaxConns)
	}
	if l.MaxConnsPerIP <= 0 {
		l.MaxConnsPerIP = 64
	}
	if l.ReadTimeout <= 0 {
		l.ReadTimeout = 15 * time.Second
	}
	if l.IdleTimeout <= 0 {
		l.IdleTimeout = 60 * time.Second
	}
	if l.WriteTimeout <= 0 {
		l.WriteTimeout = 60 * time.Second
	}
	if l.MaxUpload <= 0 {
		l.MaxUpload = 8 << 20
	}
	if l.MinRate <= 0 {
		l.MinRate = 4 << 10
	}
	if l.UploadBytes <= 0 {
		l.UploadBytes = 64 << 20
	}
	l.UploadBytes = max(l.UploadBytes, l.MaxUpload)
	if l.Storing <= 0 {
		l.Storing = 2
	}
	if l.Hashing <= 0 {
		l.Hashing = 2
	}
	if l.Preparing <= 0 {
		l.Preparing = 1
	}
	if l.Queue <= 0 {
		l.Queue = 10 * time.Second
	}
	if l.FailureBurst <= 0 {
		l.FailureBurst = 10
	}
	if l.FailureEvery <= 0 {
		l.FailureEvery = time.Minute
	}
	if l.CodeBurst <= 0 {
		l.CodeBurst = 60
	}
	if l.CodeEvery <= 0 {
		l.CodeEvery = time.Second
	}
	if l.RequestWindow <= 0 {
		l.RequestWindow = 2 * time.Minute
	}
	if l.ShutdownGrace <= 0 {
		l.ShutdownGrace = 5 * time.Second
	}
	return l
}

// extraTime is how long a transfer of n bytes may take, on top of the
// usual timeout, at the slowest link the server waits for.
func (l Limits) extraTime(n int64) time.Duration {
	return min(time.Duration(n/l.MinRate)*time.Second, 30*time.Minute)
}

// clientKey names the client an address belongs to, for the limits kept
// per client: the IPv4 address, or the /64 of an IPv6 address (one
// subscriber's network, which may hold any number of addresses).
func clientKey(addr string) string {
	host := hostOf(addr)
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is4() {
		return ip.String()
	}
	p, err := ip.Prefix(64)
	if err != nil {
		return host
	}
	return p.String()
}

// hostOf returns the host part of an address ("192.0.2.1:5000").
func hostOf(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

// limitListener keeps at most MaxConns connections open, and
// MaxConnsPerIP from one client. A connection over a cap takes the place
// of the connection idle longest (of its client, for the client's cap;
// of anyone, for the global one): a checkpoint keeps its connection open
// between syncs, and an idle connection costs its owner nothing to open
// again. Only when none is idle is the new connection closed at once,
// rather than left waiting in the backlog. The server reports the state
// of each connection (connState).
type limitListener struct {
	net.Listener
	max, perIP int
	clock      clock.Clock
	log        *slog.Logger

	mu        sync.Mutex
	open      int
	clients   map[string]*connClient
	idle      list.List // of *limitedConn, idle longest first
	refused   int
	lastNoted time.Time
}

// connClient is one client's connections.
type connClient struct {
	open int
	idle list.List // of *limitedConn, idle longest first
}

func newLimitListener(ln net.Listener, l Limits, clk clock.Clock, log *slog.Logger) *limitListener {
	return &limitListener{Listener: ln, max: l.MaxConns, perIP: l.MaxConnsPerIP, clock: clk, log: log,
		clients: map[string]*connClient{}}
}

// Accept returns the next connection within the limits.
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		lc := &limitedConn{Conn: c, l: l, key: clientKey(c.RemoteAddr().String())}
		evicted, ok := l.admit(lc)
		if evicted != nil {
			evicted.Conn.Close()
		}
		if ok {
			return lc, nil
		}
		c.Close()
	}
}

// admit counts c in if the caps allow, making room by evicting an idle
// connection if need be (which the caller closes).
func (l *limitListener) admit(c *limitedConn) (evicted *limitedConn, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	cl := l.clients[c.key]
	if cl == nil {
		cl = &connClient{}
	}
	switch {
	case cl.open >= l.perIP:
		if e := cl.idle.Front(); e != nil {
			evicted = e.Value.(*limitedConn)
		}
	case l.open >= l.max:
		if e := l.idle.Front(); e != nil {
			evicted = e.Value.(*limitedConn)
		}
	}
	if (cl.open >= l.perIP || l.open >= l.max) && evicted == nil {
		// Refusals are counted and logged at most once a minute: a flood
		// of connections must not become a flood of log lines.
		l.refused++
		if now := l.clock.Now(); now.Sub(l.lastNoted) >= time.Minute {
			l.log.Warn("connections refused: limit reached", "refused", l.refused, "open", l.open,
				"max", l.max, "client", c.key, "client_open", cl.open, "max_per_client", l.perIP)
			l.refused, l.lastNoted = 0, now
		}
		return nil, false
	}
	if evicted != nil {
		l.release(evicted)
	}
	l.open++
	cl.open++
	l.clients[c.key] = cl
	return evicted, true
}

// release gives c's place back, once. l.mu is held.
func (l *limitListener) release(c *limitedConn) {
	if c.released {
		return
	}
	c.released = true
	l.busy(c)
	l.open--
	if cl := l.clients[c.key]; cl != nil {
		if cl.open--; cl.open <= 0 {
			delete(l.clients, c.key)
		}
	}
}

// busy takes c off the idle lists. l.mu is held.
func (l *limitListener) busy(c *limitedConn) {
	if c.idleAll == nil {
		return
	}
	l.idle.Remove(c.idleAll)
	if cl := l.clients[c.key]; cl != nil {
		cl.idle.Remove(c.idleOwn)
	}
	c.idleAll, c.idleOwn = nil, nil
}

// connState follows the server's view of each connection
// (http.Server.ConnState): only a connection idle between requests may be
// evicted.
func (l *limitListener) connState(nc net.Conn, st http.ConnState) {
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	c, ok := nc.(*limitedConn)
	if !ok {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if c.released {
		return
	}
	switch st {
	case http.StateIdle:
		if cl := l.clients[c.key]; cl != nil && c.idleAll == nil {
			c.idleAll, c.idleOwn = l.idle.PushBack(c), cl.idle.PushBack(c)
		}
	case http.StateClosed:
		l.release(c)
	default:
		l.busy(c)
	}
}

// limitedConn gives its place back when closed.
type limitedConn struct {
	net.Conn
	l   *limitListener
	key string

	// Guarded by l.mu.
	released         bool
	idleAll, idleOwn *list.Element
}

func (c *limitedConn) Close() error {
	c.l.mu.Lock()
	c.l.release(c)
	c.l.mu.Unlock()
	return c.Conn.Close()
}

// failures counts the failed tokens and signatures of each client with a
// token bucket: FailureBurst of them, one more every FailureEvery. A
// request is always authenticated first, and one that authenticates is
// never refused; a failing one from a client with allowance left is
// answered as a failure and logged (what failed, the client), and the
// failure that uses up the allowance logs the lockout. Beyond it the
// client's failures are answered 429, not logged but counted, and the
// count is logged at the client's first request once it has allowance
// again: guessing shows in the log without flooding it. The clients are
// kept in least-recently-failed order, at most max of them.
type failures struct {
	clock clock.Clock
	log   *slog.Logger
	every rate.Limit
	burst int
	max   int

	mu      sync.Mutex
	clients map[string]*list.Element // of *client
	lru     list.List                // most recent failure first
}

type client struct {
	key     string
	lim     *rate.Limiter
	refused int // failures answered 429 while locked out
	locked  bool
}

// maxClients bounds the clients tracked; the one that failed least
// recently is forgotten first.
const maxClients = 100_000

func newFailures(l Limits, clk clock.Clock, log *slog.Logger) *failures {
	return &failures{clock: clk, log: log, every: rate.Every(l.FailureEvery), burst: l.FailureBurst, max: maxClients,
		clients: map[string]*list.Element{}}
}

// fail records a failure of client key and reports whether the client is
// over its allowance: the request is then answered 429, and not logged.
// Otherwise the failure is logged with what failed.
func (f *failures) fail(key, what string) (over bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.clock.Now()
	var c *client
	if e := f.clients[key]; e != nil {
		c = e.Value.(*client)
		f.lru.MoveToFront(e)
		f.lifted(c, now)
	} else {
		if f.lru.Len() >= f.max {
			old := f.lru.Back()
			delete(f.clients, old.Value.(*client).key)
			f.lru.Remove(old)
		}
		c = &client{key: key, lim: rate.NewLimiter(f.every, f.burst)}
		f.clients[key] = f.lru.PushFront(c)
	}
	if !c.lim.AllowN(now, 1) {
		c.refused++
		return true
	}
	if c.lim.TokensAt(now) >= 1 {
		f.log.Warn("refused: "+what, "client", key)
		return false
	}
	c.locked = true
	f.log.Warn("refused: "+what+"; client locked out after repeated failures", "client", key,
		"allowed_failures", f.burst)
	return false
}

// ok notes a request of client key that authenticated, to log the end of
// a lockout.
func (f *failures) ok(key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if e := f.clients[key]; e != nil {
		f.lifted(e.Value.(*client), f.clock.Now())
	}
}

// lifted logs the end of c's lockout if it has allowance again. f.mu is
// held.
func (f *failures) lifted(c *client, now time.Time) {
	if c.locked && c.lim.TokensAt(now) >= 1 {
		f.log.Warn("client no longer locked out", "client", c.key, "refused_while_locked", c.refused)
		c.locked, c.refused = false, 0
	}
}

// slots bounds the requests doing one kind of expensive work at once;
// the others wait their turn, up to a deadline.
type slots chan struct{}

// take waits for a slot until ctx ends or wait passes on clk; it reports
// whether it got one, which the caller then gives back.
func (s slots) take(ctx context.Context, clk clock.Clock, wait time.Duration) bool {
	select {
	case s <- struct{}{}:
		return true
	default:
	}
	select {
	case s <- struct{}{}:
		return true
	case <-ctx.Done():
	case <-clk.After(wait):
	}
	return false
}

func (s slots) give() { <-s }

// byteBudget bounds the bytes of the bodies being received at once.
type byteBudget struct {
	mu    sync.Mutex
	max   int64
	used  int64
	freed chan struct{} // closed when bytes are given back
}

func newByteBudget(max int64) *byteBudget {
	return &byteBudget{max: max, freed: make(chan struct{})}
}

// take waits until n bytes are free, until ctx ends or wait passes on
// clk; it reports whether it got them, which the caller then gives back.
// n must not be above the budget.
func (b *byteBudget) take(ctx context.Context, clk clock.Clock, wait time.Duration, n int64) bool {
	var timeout <-chan time.Time
	for {
		b.mu.Lock()
		if b.used+n <= b.max {
			b.used += n
			b.mu.Unlock()
			return true
		}
		freed := b.freed
		b.mu.Unlock()
		if timeout == nil {
			timeout = clk.After(wait)
		}
		select {
		case <-freed:
		case <-ctx.Done():
			return false
		case <-timeout:
			return false
		}
	}
}

func (b *byteBudget) give(n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.used -= n
	close(b.freed)
	b.freed = make(chan struct{})
}

// busy answers a request that found no slot.
func busy(w http.ResponseWriter) {
	w.Header().Set("Retry-After", "5")
	http.Error(w, "busy: try again later", http.StatusServiceUnavailable)
}

// seenRequests remembers signed requests (the devices', or in another
// set the holders') within the request window, by signer and nonce, so
// that a request replayed within its window is refused; outside the
// window its time refuses it. Only requests whose signature verified are
// remembered, each signer's in its own set of at most perDevice, so that
// one signer cannot crowd out the others; max bounds them all. The nonces
// are kept in memory only: a restart forgets them.
type seenRequests struct {
	window    time.Duration
	perDevice int
	max       int

	mu      sync.Mutex
	devices map[string]*deviceNonces
	total   int
}

// deviceNonces are one device's requests within the window.
type deviceNonces struct {
	seen  map[string]time.Time // nonce -> the request's time
	swept time.Time
}

// seenResult is what seenRequests.add found.
type seenResult int

const (
	nonceNew      seenResult = iota // remembered
	nonceReplayed                   // seen before within the window
	nonceFull                       // the device's set (or all of them) is full
)

// Bounds of the requests remembered: an honest checkpoint makes a few a
// sync, and a few hundred catching up after a month offline, within a
// 2-minute window; ten thousand checkpoints syncing every 30 s make about
// a hundred thousand.
const (
	maxSeenPerDevice = 4096
	maxSeen          = 1 << 20
	// maxSeenPerHolder bounds a holder's requests within the window: a
	// phone makes a few a day.
	maxSeenPerHolder = 64
)

// newSeenRequests remembers the requests of signers (devices, or holders)
// within window, at most perSigner of each.
func newSeenRequests(window time.Duration, perSigner int) *seenRequests {
	return &seenRequests{window: window, perDevice: perSigner, max: maxSeen, devices: map[string]*deviceNonces{}}
}

// add remembers a request made at at. The work done under the lock is
// bounded: the device's own set is swept at most four times a window,
// and one other device's with it.
func (s *seenRequests) add(device string, nonce []byte, at, now time.Time) seenResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.devices[device]
	if d == nil {
		d = &deviceNonces{seen: map[string]time.Time{}, swept: now}
		s.devices[device] = d
	}
	s.sweep(d, now)
	for id, o := range s.devices { // one other device, at random
		if o == d {
			continue
		}
		if s.sweep(o, now); len(o.seen) == 0 {
			delete(s.devices, id)
		}
		break
	}
	k := string(nonce)
	if _, ok := d.seen[k]; ok {
		return nonceReplayed
	}
	if len(d.seen) >= s.perDevice || s.total >= s.max {
		return nonceFull
	}
	d.seen[k] = at
	s.total++
	return nonceNew
}

// sweep forgets d's requests older than the window, if it was not swept
// within a quarter of it. s.mu is held.
func (s *seenRequests) sweep(d *deviceNonces, now time.Time) {
	if now.Sub(d.swept) < s.window/4 {
		return
	}
	for k, t := range d.seen {
		if now.Sub(t) > s.window {
			delete(d.seen, k)
			s.total--
		}
	}
	d.swept = now
}
