package localapi

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	stdsync "sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/checkpointd/checkpoint/internal/clock"
	"github.com/checkpointd/checkpoint/internal/passhash"
	"github.com/checkpointd/checkpoint/store"
)

// guard keeps what authentication remembers: the wrong passwords of each
// name in a row and the locks they set, the failures of each source, and
// when each refusal was last recorded in the log.
type guard struct {
	clock     clock.Clock
	accounts  map[string]*Supervisor
	lockAfter int
	lockFor   time.Duration
	every     rate.Limit
	burst     int

	// hashing bounds the Argon2id checks at once (19 MiB each).
	hashing chan struct{}

	mu       stdsync.Mutex
	names    map[string]*nameState
	sources  map[string]*rate.Limiter
	refusals map[string]*refusal
	overall  *rate.Limiter // refusals recorded, all sources together
}

// nameState is the wrong passwords given for one name in a row. Unknown
// names are kept too (within a bound), so that they lock the same way
// and a lock does not tell which accounts exist.
type nameState struct {
	wrong    int
	lockedTo time.Time
}

// refusal is when refusals of one account from one source were last
// recorded, and how many came since.
type refusal struct {
	last    time.Time
	pending int
}

// Bounds of what the guard remembers.
const (
	maxNames    = 4096
	maxSources  = 4096
	maxRefusals = 1024
	// refusalEvery is how often refusals of one account from one source
	// are recorded at most; those in between are counted into the next.
	refusalEvery = time.Minute
)

func newGuard(cfg Config, accounts map[string]*Supervisor, clk clock.Clock) *guard {
	return &guard{clock: clk, accounts: accounts, lockAfter: cfg.LockAfter, lockFor: cfg.LockFor,
		every: rate.Every(cfg.SourceEvery), burst: cfg.SourceFailures, hashing: make(chan struct{}, 2),
		names: map[string]*nameState{}, sources: map[string]*rate.Limiter{}, refusals: map[string]*refusal{},
		overall: rate.NewLimiter(rate.Every(2*time.Second), 30)}
}

// nameKey bounds what is kept of a name.
func nameKey(name string) string {
	if len(name) > 64 {
		return name[:64]
	}
	return name
}

// locked reports how long name stays locked.
func (g *guard) locked(name string, now time.Time) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	if st := g.names[nameKey(name)]; st != nil && now.Before(st.lockedTo) {
		return st.lockedTo.Sub(now)
	}
	return 0
}

// sourceOver reports whether source has used up its allowance of wrong
// passwords.
func (g *guard) sourceOver(source string, now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	l := g.sources[source]
	return l != nil && l.TokensAt(now) < 1
}

// fail counts a wrong password for name from source, and reports whether
// it locked the name.
func (g *guard) fail(name, source string, now time.Time) (lockedNow bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	l := g.sources[source]
	if l == nil {
		if len(g.sources) >= maxSources {
			g.sweepSources(now)
		}
		l = rate.NewLimiter(g.every, g.burst)
		if len(g.sources) < maxSources {
			g.sources[source] = l
		}
	}
	l.AllowN(now, 1)
	k := nameKey(name)
	st := g.names[k]
	if st == nil {
		if len(g.names) >= maxNames {
			g.sweepNames(now)
		}
		st = &nameState{}
		if len(g.names) < maxNames || g.accounts[name] != nil {
			g.names[k] = st
		}
	}
	if !now.Before(st.lockedTo) && !st.lockedTo.IsZero() {
		st.wrong, st.lockedTo = 0, time.Time{} // the last lock has ended
	}
	if st.wrong++; st.wrong >= g.lockAfter {
		st.wrong, st.lockedTo = 0, now.Add(g.lockFor)
		return true
	}
	return false
}

// ok forgets name's wrong passwords.
func (g *guard) ok(name string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.names, nameKey(name))
}

// sweepNames forgets the names that are not locked and are not
// accounts. g.mu is held.
func (g *guard) sweepNames(now time.Time) {
	for k, st := range g.names {
		if !now.Before(st.lockedTo) && g.accounts[k] == nil {
			delete(g.names, k)
		}
	}
}

// sweepSources forgets the sources whose allowance is whole again. g.mu
// is held.
func (g *guard) sweepSources(now time.Time) {
	for k, l := range g.sources {
		if l.TokensAt(now) >= float64(g.burst) {
			delete(g.sources, k)
		}
	}
}

// refused reports whether a refusal of who from source is to be recorded
// now, and how many refusals the record stands for (this one and those
// not recorded since the last).
func (g *guard) refused(who, source string, now time.Time) (record bool, count int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	k := who + "\x00" + source
	r := g.refusals[k]
	if r == nil {
		if len(g.refusals) >= maxRefusals {
			for k, r := range g.refusals {
				if now.Sub(r.last) >= refusalEvery && r.pending == 0 {
					delete(g.refusals, k)
				}
			}
		}
		if len(g.refusals) >= maxRefusals {
			return false, 0 // only counted in the daemon's log, below
		}
		r = &refusal{}
		g.refusals[k] = r
	}
	r.pending++
	if !r.last.IsZero() && now.Sub(r.last) < refusalEvery || !g.overall.AllowN(now, 1) {
		return false, 0
	}
	count, r.pending, r.last = r.pending, 0, now
	return true, count
}

// source is where a request comes from: a local user on the socket, or a
// client's address.
type source struct {
	key  string // what the source limit counts by
	user string // what the audit records
	peer *Peer  // on the socket
	err  error  // the peer could not be told
}

type sourceKey struct{}

// sourceOf is where r comes from: the peer the socket's ConnContext found,
// or the client's address.
func sourceOf(r *http.Request) source {
	if src, ok := r.Context().Value(sourceKey{}).(source); ok {
		return src
	}
	host := hostOf(r.RemoteAddr)
	return source{key: clientKey(host), user: host}
}

// clientKey names the client an address belongs to, for the limits kept
// per client: the IPv4 address, or the /64 of an IPv6 address.
func clientKey(host string) string {
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

func hostOf(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

// Refusals: the code the audit records, and the words the answer gives.
const (
	reasonPassword = "password"
	reasonLocked   = "locked"
	reasonSource   = "source"
	reasonPeer     = "peer"
)

var reasonWords = map[string]string{
	reasonPassword: "wrong name or password",
	reasonLocked:   "the account is locked after wrong passwords; try again later",
	reasonSource:   "too many wrong passwords from here; try again later",
	reasonPeer:     "this local user may not use the socket (not in its group)",
}

// authenticate checks the request's account, its password and, on the
// socket, the local user; it answers a refusal itself, records it in the
// log (a bounded number of times), and reports whether to go on.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) (caller, bool) {
	now := s.clock.Now()
	src := sourceOf(r)
	name, password, hasAuth := r.BasicAuth()
	if !hasAuth {
		w.Header().Set("WWW-Authenticate", `Basic realm="checkpoint", charset="UTF-8"`)
		writeError(w, http.StatusUnauthorized, "a supervisor's name and password are required")
		return caller{}, false
	}
	account := s.guard.accounts[name]
	who := "unknown" // an unknown name is never recorded: it may be a password typed in the wrong box
	if account != nil {
		who = name
	}
	refuse := func(status int, reason string, retry time.Duration) (caller, bool) {
		s.refuse(r, who, src, reason, now)
		if retry > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int(retry.Round(time.Second)/time.Second)+1))
		}
		if status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Basic realm="checkpoint", charset="UTF-8"`)
		}
		writeError(w, status, "refused: "+reasonWords[reason])
		return caller{}, false
	}
	if src.peer != nil || src.err != nil {
		if src.err != nil || !s.allowed(*src.peer) {
			return refuse(http.StatusForbidden, reasonPeer, 0)
		}
	}
	if s.guard.sourceOver(src.key, now) {
		return refuse(http.StatusTooManyRequests, reasonSource, s.cfg.SourceEvery)
	}
	if left := s.guard.locked(name, now); left > 0 {
		return refuse(http.StatusTooManyRequests, reasonLocked, left)
	}
	good, err := s.checkPassword(r.Context(), account, password)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "busy: try again")
		return caller{}, false
	}
	if !good {
		if s.guard.fail(name, src.key, now) {
			s.log.Warn("account locked after wrong passwords", "who", who, "user", src.user, "for", s.cfg.LockFor)
		}
		return refuse(http.StatusUnauthorized, reasonPassword, 0)
	}
	s.guard.ok(name)
	return caller{who: name, user: src.user, account: account}, true
}

// checkPassword runs the slow hash, a few at a time; an unknown account
// costs the same as a known one.
func (s *Server) checkPassword(ctx context.Context, account *Supervisor, password string) (bool, error) {
	hash := passhash.Unknown
	if account != nil {
		hash = account.Password
	}
	select {
	case s.guard.hashing <- struct{}{}:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	defer func() { <-s.guard.hashing }()
	return passhash.Matches(hash, password) && account != nil, nil
}

// allowed reports whether a local user may use the socket: root, the
// daemon's own user, or a member of the group.
func (s *Server) allowed(p Peer) bool {
	return p.UID == 0 || p.UID == s.cfg.UID() || s.cfg.Group != "" && s.cfg.Member(p, s.cfg.Group)
}

// refuse records a refused attempt, at most once a minute for an account
// and a source (the record counts those in between), and logs it.
func (s *Server) refuse(r *http.Request, who string, src source, reason string, now time.Time) {
	record, count := s.guard.refused(who, src.key, now)
	if !record {
		return
	}
	path := r.URL.Path
	if len(path) > 64 {
		path = path[:64]
	}
	s.log.Warn("refused", "who", who, "user", src.user, "reason", reason, "path", path, "attempts", count)
	q := url.Values{"reason": {reason}, "path": {path}}
	s.audit(r.Context(), store.AuditRecord{Who: who, User: src.user, Action: "refused", Query: q.Encode(), Rows: count})
}

// writeError answers an error as JSON.
func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, errorBody{Error: msg})
}

type errorBody struct {
	Error string `json:"error"`
}
