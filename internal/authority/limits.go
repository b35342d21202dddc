package authority

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"

	"golang.org/x/time/rate"

	"github.com/checkpointd/checkpoint/internal/clock"
)

// Limits bound what clients, authenticated or not, can make the server
// spend. The zero value of each field means its default.
type Limits struct {
	// MaxConns is the number of connections open at once; 0: 4,096, or
	// three quarters of the open-file limit if that is lower, so that the
	// database and the logs always have file descriptors left.
	MaxConns int
	// MaxConnsPerIP is the number of connections open at once from one
	// address; 0: 64.
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
	// Uploads is the number of uploads read and stored at once; 0: 4.
	Uploads int
	// Hashing is the number of declarations computing their ID hash
	// (Argon2id, 19 MiB each) at once; 0: 2.
	Hashing int
	// Queue is how long a request waits for an upload or hashing slot
	// before it is answered 503; 0: 10 s.
	Queue time.Duration
	// FailureBurst failed tokens or signatures from one address are
	// allowed, and one more every FailureEvery; beyond that the address
	// is answered 429 until it has allowance again. 0: 10, one a minute.
	FailureBurst int
	FailureEvery time.Duration
	// RequestWindow is how far a device's request time may be from the
	// authority's; a signed request outside it, or seen before within it,
	// is refused. 0: 2 minutes.
	RequestWindow time.Duration
}

// maxSmallBody bounds every body but an upload: enrolments, declarations
// and the operator's requests are a few hundred bytes.
const maxSmallBody = 16 << 10

func (l Limits) withDefaults() Limits {
	if l.MaxConns <= 0 {
		l.MaxConns = 4096
		var r syscall.Rlimit
		if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r) == nil && r.Cur > 0 && r.Cur < 1<<20 {
			l.MaxConns = min(l.MaxConns, int(r.Cur)*3/4)
		}
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
	if l.Uploads <= 0 {
		l.Uploads = 4
	}
	if l.Hashing <= 0 {
		l.Hashing = 2
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
	if l.RequestWindow <= 0 {
		l.RequestWindow = 2 * time.Minute
	}
	return l
}

// extraTime is how long a transfer of n bytes may take, on top of the
// usual timeout, at the slowest link the server waits for.
func (l Limits) extraTime(n int64) time.Duration {
	return min(time.Duration(n/l.MinRate)*time.Second, 30*time.Minute)
}

// limitListener closes a connection at once when MaxConns are open, or
// MaxConnsPerIP from its address, rather than leave it waiting in the
// backlog: a client over the limit retries later, and the server keeps
// file descriptors for its work.
type limitListener struct {
	net.Listener
	max, perIP int
	clock      clock.Clock
	log        *slog.Logger

	mu        sync.Mutex
	open      int
	byIP      map[string]int
	refused   int
	lastNoted time.Time
}

func newLimitListener(ln net.Listener, l Limits, clk clock.Clock, log *slog.Logger) *limitListener {
	return &limitListener{Listener: ln, max: l.MaxConns, perIP: l.MaxConnsPerIP, clock: clk, log: log, byIP: map[string]int{}}
}

// Accept returns the next connection within the limits.
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := hostOf(c.RemoteAddr().String())
		if l.admit(ip) {
			return &limitedConn{Conn: c, l: l, ip: ip}, nil
		}
		c.Close()
	}
}

func (l *limitListener) admit(ip string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open < l.max && l.byIP[ip] < l.perIP {
		l.open++
		l.byIP[ip]++
		return true
	}
	// Refusals are counted and logged at most once a minute: a flood of
	// connections must not become a flood of log lines.
	l.refused++
	if now := l.clock.Now(); now.Sub(l.lastNoted) >= time.Minute {
		l.log.Warn("connections refused: limit reached", "refused", l.refused, "open", l.open,
			"max", l.max, "client", ip, "client_open", l.byIP[ip], "max_per_client", l.perIP)
		l.refused, l.lastNoted = 0, now
	}
	return false
}

func (l *limitListener) release(ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if l.byIP[ip]--; l.byIP[ip] <= 0 {
		delete(l.byIP, ip)
	}
}

// limitedConn gives its slot back when closed.
type limitedConn struct {
	net.Conn
	l    *limitListener
	ip   string
	once sync.Once
}

func (c *limitedConn) Close() error {
	c.once.Do(func() { c.l.release(c.ip) })
	return c.Conn.Close()
}

// hostOf returns the host part of an address ("192.0.2.1:5000").
func hostOf(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

// failures counts the failed tokens and signatures of each client
// address with a token bucket: FailureBurst of them at once, one more
// every FailureEvery. A client with none left is refused before its
// request is looked at (429) until the bucket refills. Each failure is
// logged while the client has allowance left, the lockout once, and the
// refusals it caused when it ends: guessing shows in the log without
// flooding it.
type failures struct {
	clock clock.Clock
	log   *slog.Logger
	every rate.Limit
	burst int

	mu      sync.Mutex
	clients map[string]*client
}

type client struct {
	lim     *rate.Limiter
	refused int // requests refused while locked out
	locked  bool
}

// maxClients bounds the addresses tracked; those with a full bucket are
// forgotten first.
const maxClients = 100_000

func newFailures(l Limits, clk clock.Clock, log *slog.Logger) *failures {
	return &failures{clock: clk, log: log, every: rate.Every(l.FailureEvery), burst: l.FailureBurst, clients: map[string]*client{}}
}

// blocked reports whether ip has used up its failures, counting the
// refusal if so.
func (f *failures) blocked(ip string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.clients[ip]
	if c == nil {
		return false
	}
	now := f.clock.Now()
	if c.lim.TokensAt(now) >= 1 {
		if c.locked {
			f.log.Warn("client no longer locked out", "client", ip, "refused_while_locked", c.refused)
			c.locked, c.refused = false, 0
		}
		return false
	}
	c.refused++
	return true
}

// fail records a failure of ip, logging it with what failed.
func (f *failures) fail(ip, what string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.clock.Now()
	c := f.clients[ip]
	if c == nil {
		if len(f.clients) >= maxClients {
			f.forget(now)
		}
		c = &client{lim: rate.NewLimiter(f.every, f.burst)}
		if len(f.clients) < maxClients {
			f.clients[ip] = c
		}
	}
	c.lim.AllowN(now, 1)
	if c.lim.TokensAt(now) >= 1 {
		f.log.Warn("refused: "+what, "client", ip)
		return
	}
	if !c.locked {
		c.locked = true
		f.log.Warn("refused: "+what+"; client locked out after repeated failures", "client", ip,
			"allowed_failures", f.burst)
	}
}

// forget drops the clients whose bucket is full again.
func (f *failures) forget(now time.Time) {
	for ip, c := range f.clients {
		if c.lim.TokensAt(now) >= float64(f.burst) {
			delete(f.clients, ip)
		}
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

// busy answers a request that found no slot.
func busy(w http.ResponseWriter) {
	w.Header().Set("Retry-After", "5")
	http.Error(w, "busy: try again later", http.StatusServiceUnavailable)
}

// seenRequests remembers the devices' signed requests within the request
// window, by device and nonce, so that a request replayed within its
// window is refused; outside the window its time refuses it. Only
// requests whose signature verified are remembered.
type seenRequests struct {
	window time.Duration

	mu    sync.Mutex
	seen  map[string]time.Time // device, NUL, nonce -> the request's time
	swept time.Time
}

// maxSeen bounds the requests remembered: ten thousand checkpoints
// syncing every 30 s make about a quarter of it within a 2-minute window.
const maxSeen = 1 << 20

func newSeenRequests(window time.Duration) *seenRequests {
	return &seenRequests{window: window, seen: map[string]time.Time{}}
}

// add remembers a request made at at; it reports false for one seen
// before, or when too many are remembered to tell.
func (s *seenRequests) add(device string, nonce []byte, at, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Sub(s.swept) > s.window/4 || len(s.seen) >= maxSeen {
		for k, t := range s.seen {
			if now.Sub(t) > s.window {
				delete(s.seen, k)
			}
		}
		s.swept = now
	}
	k := device + "\x00" + string(nonce)
	if _, ok := s.seen[k]; ok || len(s.seen) >= maxSeen {
		return false
	}
	s.seen[k] = at
	return true
}
