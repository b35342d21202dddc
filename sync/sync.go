// Package sync moves data between a checkpoint and its authority whenever
// the link is up: events up, the trust list and revocations down, the
// clock anchored. Every answer that matters is signed: the trust list by
// the pinned root, the rest by a list key the trust list names. Uploads
// are at-least-once with the authority's high-water mark as the
// acknowledgement; downloads are versioned, expiring, chunked and
// resumable, and applied only when complete and checked. A failing link is
// retried with capped, jittered backoff and never blocks scanning.
//
// checkpointd runs a Syncer beside its scanner; docs/sync.md describes the
// protocol, and internal/protocol holds its messages.
package sync

import (
	"bytes"
	"context"
	"crypto/ed25519"
	cryptorand "crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	stdsync "sync"
	"sync/atomic"
	"time"

	"github.com/checkpointd/checkpoint/internal/clock"
	"github.com/checkpointd/checkpoint/internal/protocol"
	"github.com/checkpointd/checkpoint/internal/trust"
	"github.com/checkpointd/checkpoint/store"
)

// Config configures a Syncer.
type Config struct {
	Authority   string // base URL, https://... or http://127.0.0.1:8420
	Name        string // this checkpoint's name, for enrolment
	EnrollToken string // one-time token from the authority's operator
	DeviceKey   ed25519.PrivateKey
	Root        ed25519.PublicKey // the pinned root key

	Interval   time.Duration // between syncs when all is well; 0: 30 s
	MinBackoff time.Duration // after a failure; 0: 1 s
	MaxBackoff time.Duration // cap; 0: 5 minutes
	// Batch is the most events an upload carries; 0: 5,000. After an
	// upload times out the next carries half as many (down to MinBatch),
	// and each upload that succeeds lets them grow again.
	Batch     int
	Retention time.Duration // how long acknowledged events are kept; 0: 14 days
	// MaxAnchorRTT is the longest round trip of a status call that may
	// anchor the clock (the anchor's uncertainty is half of it); 0: 4 s.
	// A slower answer counts for the rest of the sync, but the clock keeps
	// its previous anchor.
	MaxAnchorRTT time.Duration
}

// DefaultMaxAnchorRTT is MaxAnchorRTT's default: an anchor at most ±2 s
// off, however the delay was split between the two directions.
const DefaultMaxAnchorRTT = 4 * time.Second

// Status says how syncing fares, for technicians.
type Status struct {
	LastAttempt       time.Time     `json:"last_attempt"`
	LastOK            time.Time     `json:"last_ok"`
	Error             string        `json:"error,omitempty"`
	Failures          int           `json:"consecutive_failures"`
	NextIn            time.Duration `json:"next_in"`
	Mark              uint64        `json:"mark"`
	Unsent            uint64        `json:"unsent"`
	TrustVersion      uint64        `json:"trust_version"`
	RevocationVersion uint64        `json:"revocation_version"`
	Offset            time.Duration `json:"offset"` // the authority's clock minus ours
	// AnchorRefused says why the last status answer did not anchor the
	// clock (its round trip was too long); empty: it did.
	AnchorRefused string `json:"anchor_refused,omitempty"`
	// ClockStep is how far the wall clock was found stepped against the
	// clock anchor (Estimator.ClockStep); 0: not.
	ClockStep time.Duration `json:"clock_step,omitempty"`
}

// Syncer syncs one checkpoint.
type Syncer struct {
	cfg   Config
	box   *store.Box
	est   *Estimator
	http  *http.Client
	clock clock.Clock
	log   *slog.Logger

	trust atomic.Pointer[trust.List]
	// skew corrects the date of signed requests when the authority has
	// refused one as outside its window: its time minus the estimate.
	skew atomic.Int64
	// batch is the number of events the next upload carries.
	batch atomic.Int64

	mu     stdsync.Mutex
	status Status

	// turn serializes syncs: the loop's and those asked for now
	// (checkpointctl sync), which wait for it no longer than their
	// context. link is the link's state as last recorded: "up", "down",
	// or "" before the first sync.
	turn chan struct{}
	link string
}

// maxBatchBytes bounds the events of one upload.
const maxBatchBytes = 4 << 20

// MinBatch is the fewest events an upload is cut down to after timeouts.
const MinBatch = 100

// Every request has a deadline of baseTimeout plus the time the bytes it
// moves take at minRate, the slowest link waited for (the authority waits
// for the same). An answer whose size is not known beforehand is given
// the time of answerBytes, an upload's acknowledgement that of ackBytes,
// a revocation chunk that of chunkEntryBytes an entry (an entry is 12 to
// 23 bytes).
const (
	baseTimeout     = 30 * time.Second
	minRate         = 4 << 10
	answerBytes     = 64 << 10
	ackBytes        = 1 << 10
	chunkEntryBytes = 32
)

// timeoutFor is the deadline of a request moving n bytes.
func timeoutFor(n int) time.Duration {
	return baseTimeout + time.Duration(n)*time.Second/minRate
}

// Errors of a sync.
var (
	ErrRollback = errors.New("sync: the authority offered an older version than the one held")
	ErrExpired  = errors.New("sync: the authority's signed answer has expired")
	ErrTampered = errors.New("sync: a download does not match its signed manifest")
	ErrNonce    = errors.New("sync: the authority's answer is not for this request")
)

// New returns a syncer. est is the clock estimator the checkpoint decides
// by; client may be nil for http.DefaultClient.
func New(cfg Config, box *store.Box, est *Estimator, clk clock.Clock, log *slog.Logger, client *http.Client) (*Syncer, error) {
	if cfg.Interval <= 0 {
		cfg.Interval = 30 * time.Second
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = time.Second
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 5 * time.Minute
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 5000
	}
	if cfg.Retention <= 0 {
		cfg.Retention = 14 * 24 * time.Hour
	}
	if cfg.MaxAnchorRTT <= 0 {
		cfg.MaxAnchorRTT = DefaultMaxAnchorRTT
	}
	if client == nil {
		// Each request carries its own deadline, by its size.
		client = &http.Client{}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Syncer{cfg: cfg, box: box, est: est, http: client, clock: clk, log: log.With("component", "sync"),
		turn: make(chan struct{}, 1)}
	s.batch.Store(int64(cfg.Batch))
	// How the last sync went, as recorded before a restart.
	last, err := box.LastSync()
	if err != nil {
		return nil, err
	}
	s.status.LastAttempt, s.status.LastOK, s.status.Error = last.At, last.LastOK, last.Error
	s.status.Failures, s.status.Offset = last.Failures, last.Offset
	s.status.Mark, _ = box.Mark()
	s.status.Unsent, _ = box.Unsent()
	s.status.RevocationVersion, _, _ = box.RevocationVersion()
	raw, err := box.TrustList()
	if err != nil {
		return nil, err
	}
	if raw != nil {
		l, err := trust.Parse(raw, cfg.Root)
		if err != nil {
			return nil, fmt.Errorf("sync: stored trust list: %w", err)
		}
		s.trust.Store(l)
		s.status.TrustVersion = l.Version
	}
	return s, nil
}

// Trust returns the trust list in force (nil before the first download).
func (s *Syncer) Trust() *trust.List { return s.trust.Load() }

// Status returns how syncing fares.
func (s *Syncer) Status() Status {
	s.mu.Lock()
	st := s.status
	s.mu.Unlock()
	st.ClockStep = s.est.ClockStep()
	return st
}

// Run syncs now, then every Interval, backing off after failures with full
// jitter up to MaxBackoff, until ctx ends.
func (s *Syncer) Run(ctx context.Context) error {
	backoff := s.cfg.MinBackoff
	for {
		err := s.SyncOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		wait := s.cfg.Interval
		if err != nil {
			wait = time.Duration(rand.Int64N(int64(backoff))) + 1
			s.log.Warn("sync failed", "err", err, "retry_in", wait)
			backoff = min(2*backoff, s.cfg.MaxBackoff)
		} else {
			backoff = s.cfg.MinBackoff
		}
		s.mu.Lock()
		s.status.NextIn = wait
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil
		case <-s.clock.After(wait):
		}
	}
}

// SyncOnce runs one sync: enrol if need be, anchor the clock, update the
// trust list, upload events, download revocations, prune. It may be called
// while Run runs (a supervisor's "sync now"): syncs take turns. When the
// link to the authority goes down or comes back it tells the store, which
// counts the offline time from that.
func (s *Syncer) SyncOnce(ctx context.Context) error {
	select {
	case s.turn <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-s.turn }()
	err := s.syncOnce(ctx)
	if ctx.Err() != nil {
		return err // stopping, not the link
	}
	link := "up"
	if err != nil {
		link = "down"
	}
	if link != s.link {
		if lerr := s.box.SetLink(s.est.Now().Time, link == "up"); lerr == nil {
			s.link = link
		} else {
			s.log.Error("link state not recorded", "err", lerr)
		}
	}
	now := s.clock.Now()
	s.mu.Lock()
	s.status.LastAttempt = now
	if err != nil {
		s.status.Error = err.Error()
		s.status.Failures++
	} else {
		s.status.Error, s.status.Failures, s.status.LastOK = "", 0, now
	}
	st := s.status
	s.mu.Unlock()
	s.box.SetLastSync(store.SyncOutcome{At: now, OK: err == nil, Error: st.Error, LastOK: st.LastOK, Offset: st.Offset,
		Failures: st.Failures})
	return err
}

func (s *Syncer) syncOnce(ctx context.Context) error {
	dev, err := s.enrolled(ctx)
	if err != nil {
		return err
	}
	if s.Trust() == nil {
		if err := s.updateTrust(ctx, 0); err != nil {
			return err
		}
	}
	st, err := s.statusCall(ctx, dev)
	if err != nil {
		return err
	}
	if st.TrustVersion > s.Trust().Version {
		if err := s.updateTrust(ctx, st.TrustVersion); err != nil {
			return err
		}
	}
	if err := s.upload(ctx, dev, st.Mark); err != nil {
		return err
	}
	if err := s.revocations(ctx, dev); err != nil {
		return err
	}
	if _, err := s.box.Prune(s.cfg.Retention); err != nil {
		return fmt.Errorf("sync: prune: %w", err)
	}
	return nil
}

func (s *Syncer) url(path string, q url.Values) string {
	u := s.cfg.Authority + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	return u
}

// do sends a request, signed by the device when dev is set, and returns
// the body of a 200 answer. expect is the size of the answer expected (0:
// answerBytes); the request's deadline is by its size and the answer's.
func (s *Syncer) do(ctx context.Context, method, u string, body []byte, dev string, nonce []byte, expect int) ([]byte, int, error) {
	if expect <= 0 {
		expect = answerBytes
	}
	b, code, hint, err := s.send(ctx, method, u, body, dev, nonce, expect)
	if code == http.StatusUnauthorized && dev != "" && !hint.IsZero() {
		if !s.plausible(hint) {
			// The hint is unsigned: one that no authority of this trust
			// list could give is someone else's.
			s.log.Warn("ignoring an implausible time from the authority", "time", hint)
			return b, code, err
		}
		// The request's date was outside the authority's window: this
		// box's clock is off. Date requests by the authority's word until
		// the next clock anchor (it sets nothing else) and try once more.
		skew := hint.Sub(s.est.Now().Time)
		s.skew.Store(int64(skew))
		s.log.Warn("the authority refused the request's date: dating requests by its time", "offset", skew.Round(time.Second))
		b, code, _, err = s.send(ctx, method, u, body, dev, nonce, expect)
	}
	return b, code, err
}

// plausible reports whether t can be an authority's time: not before the
// trust list in force was issued, not more than a year after it expires.
func (s *Syncer) plausible(t time.Time) bool {
	l := s.Trust()
	return l != nil && !t.Before(l.IssuedAt) && !t.After(l.Expires.AddDate(1, 0, 0))
}

// send sends a request once, within a deadline for its size and the
// answer's (expect). When the authority refuses a signed request's date,
// it returns the authority's time from the answer.
func (s *Syncer) send(ctx context.Context, method, u string, body []byte, dev string, nonce []byte, expect int) ([]byte, int, time.Time, error) {
	// The deadline is on the network's clock, not the injected one.
	ctx, cancel := context.WithTimeout(ctx, timeoutFor(len(body)+expect))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return nil, 0, time.Time{}, err
	}
	req.Header.Set("Content-Type", protocol.ContentType)
	if dev != "" {
		at := s.est.Now().Time.Add(time.Duration(s.skew.Load()))
		protocol.SignRequest(req, dev, s.cfg.DeviceKey, nonce, at, body)
	}
	res, err := s.http.Do(req)
	if err != nil {
		return nil, 0, time.Time{}, fmt.Errorf("sync: %s %s: %w", method, u, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 256<<20))
	if err != nil {
		return nil, res.StatusCode, time.Time{}, fmt.Errorf("sync: %s %s: %w", method, u, err)
	}
	if res.StatusCode != http.StatusOK {
		var hint time.Time
		if t, err := strconv.ParseInt(res.Header.Get(protocol.HeaderServerTime), 10, 64); err == nil {
			hint = time.Unix(t, 0)
		}
		return nil, res.StatusCode, hint, fmt.Errorf("sync: %s %s: %s: %s", method, u, res.Status, bytes.TrimSpace(b))
	}
	return b, res.StatusCode, time.Time{}, nil
}

// timedOut reports whether err is a request that ran out of time, rather
// than one cancelled or refused.
func timedOut(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

func newNonce() []byte {
	n := make([]byte, 16)
	cryptorand.Read(n) // never fails (crypto/rand panics instead)
	return n
}

// enrolled returns the device id, enrolling first if need be.
func (s *Syncer) enrolled(ctx context.Context) (string, error) {
	d, ok, err := s.box.Device()
	if err != nil || ok {
		return d.ID, err
	}
	if s.cfg.EnrollToken == "" {
		return "", errors.New("sync: not enrolled and no enrolment token configured")
	}
	body, err := protocol.Enc.Marshal(protocol.EnrollRequest{Name: s.cfg.Name,
		DeviceKey: s.cfg.DeviceKey.Public().(ed25519.PublicKey), Token: s.cfg.EnrollToken})
	if err != nil {
		return "", err
	}
	b, _, err := s.do(ctx, http.MethodPost, s.url(protocol.PathEnroll, nil), body, "", nil, 0)
	if err != nil {
		return "", err
	}
	var res protocol.EnrollResponse
	if err := protocol.Dec.Unmarshal(b, &res); err != nil || res.DeviceID == "" {
		return "", fmt.Errorf("sync: enrolment answer: %v", err)
	}
	if err := s.box.SetDevice(store.Device{ID: res.DeviceID, Authority: s.cfg.Authority, Enrolled: s.clock.Now()}); err != nil {
		return "", err
	}
	s.log.Info("enrolled", "device", res.DeviceID)
	return res.DeviceID, nil
}

// open checks a signed answer with the list keys of the trust list in
// force, valid at the time the answer gives, and decodes its payload.
func (s *Syncer) open(raw []byte, typ string, v any, at func(any) time.Time) error {
	l := s.Trust()
	if l == nil {
		return errors.New("sync: no trust list")
	}
	var keys []ed25519.PublicKey
	for _, k := range l.ListKeys {
		keys = append(keys, k.PublicKey)
	}
	payload, err := trust.OpenObject(raw, typ, keys...)
	if err != nil {
		return fmt.Errorf("sync: %s: %w", typ, err)
	}
	if err := protocol.Dec.Unmarshal(payload, v); err != nil {
		return fmt.Errorf("sync: %s: %w", typ, err)
	}
	// The key that signed must have been valid when it signed: a retired
	// key does not pass because another one is current.
	t := at(v)
	if _, err := trust.OpenObject(raw, typ, l.ListKeysAt(t)...); err != nil {
		return fmt.Errorf("sync: %s signed at %v by a list key not valid then: %w", typ, t, err)
	}
	return nil
}

// statusCall probes the authority, anchors the clock unless the round trip
// took longer than MaxAnchorRTT, and returns the authority's view.
func (s *Syncer) statusCall(ctx context.Context, dev string) (protocol.Status, error) {
	nonce := newNonce()
	t0 := s.clock.Now()
	raw, _, err := s.do(ctx, http.MethodGet, s.url(protocol.PathStatus, nil), nil, dev, nonce, 0)
	if err != nil {
		return protocol.Status{}, err
	}
	t1 := s.clock.Now()
	var st protocol.Status
	if err := s.open(raw, protocol.TypeStatus, &st, func(v any) time.Time { return v.(*protocol.Status).ServerTime }); err != nil {
		return st, err
	}
	if !bytes.Equal(st.Nonce, nonce) || st.DeviceID != dev {
		return st, ErrNonce
	}
	rtt := t1.Sub(t0)
	if rtt < 0 {
		rtt = 0
	}
	if rtt > s.cfg.MaxAnchorRTT {
		// The server's time could be anywhere in the round trip: anchoring
		// at its middle would be up to rtt/2 off.
		s.log.Warn("status answer too slow to anchor the clock; keeping the previous anchor",
			"rtt", rtt, "max_anchor_rtt", s.cfg.MaxAnchorRTT)
		s.mu.Lock()
		s.status.AnchorRefused = fmt.Sprintf("round trip %v above max_anchor_rtt %v", rtt, s.cfg.MaxAnchorRTT)
		s.mu.Unlock()
		return st, nil
	}
	anchor := store.Anchor{Server: st.ServerTime.Add(rtt / 2), Wall: t1, RTT: rtt}
	if err := s.est.anchorAt(anchor, t1); err != nil {
		return st, err
	}
	// The estimate is the authority's time now: requests need no other.
	s.skew.Store(0)
	s.mu.Lock()
	s.status.Offset, s.status.AnchorRefused = anchor.Server.Sub(t1), ""
	s.mu.Unlock()
	return st, nil
}

// updateTrust downloads the trust list and keeps it if it checks out
// against the pinned root and is newer than the one held (at least want).
func (s *Syncer) updateTrust(ctx context.Context, want uint64) error {
	raw, _, err := s.do(ctx, http.MethodGet, s.url(protocol.PathTrust, nil), nil, "", nil, 0)
	if err != nil {
		return err
	}
	l, err := trust.Parse(raw, s.cfg.Root)
	if err != nil {
		return fmt.Errorf("sync: trust list: %w", err)
	}
	if cur := s.Trust(); cur != nil && l.Version <= cur.Version {
		if l.Version < cur.Version {
			return fmt.Errorf("%w: trust list %d, holding %d", ErrRollback, l.Version, cur.Version)
		}
		return nil
	}
	if l.Version < want {
		return fmt.Errorf("%w: trust list %d, the authority said %d", ErrRollback, l.Version, want)
	}
	if now := s.est.Now(); now.Uncertainty >= 0 && now.Time.After(l.Expires) {
		return fmt.Errorf("%w: trust list %d expired at %v", ErrExpired, l.Version, l.Expires)
	}
	if err := s.box.SetTrustList(raw); err != nil {
		return err
	}
	s.trust.Store(l)
	s.mu.Lock()
	s.status.TrustVersion = l.Version
	s.mu.Unlock()
	s.log.Info("trust list updated", "version", l.Version, "issuer_keys", len(l.Issuers))
	return nil
}

// upload sends the events the authority does not hold, in batches, until
// it acknowledges them all. theirs is the mark from the status call: if it
// is below ours the authority lost events (a restore from a backup) and
// they are sent again.
func (s *Syncer) upload(ctx context.Context, dev string, theirs uint64) error {
	ours, err := s.box.Mark()
	if err != nil {
		return err
	}
	if theirs != ours {
		if theirs < ours {
			s.log.Warn("the authority holds fewer events than it acknowledged: sending them again", "ours", ours, "theirs", theirs)
		}
		if err := s.box.SetMark(theirs); err != nil {
			return err
		}
		ours = theirs
	}
	for {
		raws, err := s.box.RawEvents(ours+1, int(s.batch.Load()))
		if err != nil {
			return err
		}
		if len(raws) == 0 {
			break
		}
		// Keep a batch well under the authority's upload limit (8 MiB by
		// default), whatever the size of the events.
		size := 0
		for i, raw := range raws {
			if size += len(raw); size > maxBatchBytes && i > 0 {
				raws = raws[:i]
				break
			}
		}
		first, _ := store.DecodeEvent(raws[0])
		last, _ := store.DecodeEvent(raws[len(raws)-1])
		var purged *protocol.Purged
		if first.Seq != ours+1 {
			// A supervisor's forced purge took events before the
			// authority had them: say so, or the authority cannot go on.
			forced, err := s.box.ForcedPurges()
			if err != nil {
				return err
			}
			for _, f := range forced {
				if f.From <= ours+1 && f.To+1 == first.Seq {
					purged = &protocol.Purged{From: ours + 1, To: f.To, Last: f.Last[:]}
				}
			}
			if purged == nil {
				return fmt.Errorf("sync: the authority needs event %d, which this box no longer has", ours+1)
			}
			s.log.Warn("declaring events purged before upload", "from", purged.From, "to", purged.To)
		}
		body, err := protocol.Enc.Marshal(protocol.EventBatch{DeviceID: dev, From: first.Seq, To: last.Seq, Events: raws,
			Purged: purged})
		if err != nil {
			return err
		}
		nonce := newNonce()
		raw, _, err := s.do(ctx, http.MethodPost, s.url(protocol.PathEvents, nil), body, dev, nonce, ackBytes)
		if err != nil {
			if timedOut(err) && ctx.Err() == nil {
				// A link too slow for the batch: send less at a time.
				n := max(int64(MinBatch), int64(len(raws))/2)
				s.batch.Store(min(n, s.batch.Load()))
				s.log.Warn("upload timed out: sending fewer events at a time", "events", len(raws), "next", s.batch.Load())
			}
			return err
		}
		if b := s.batch.Load(); b < int64(s.cfg.Batch) {
			s.batch.Store(min(int64(s.cfg.Batch), b+b/4+1))
		}
		var ack protocol.Ack
		if err := s.open(raw, protocol.TypeAck, &ack, func(any) time.Time { return s.est.Now().Time }); err != nil {
			return err
		}
		if !bytes.Equal(ack.Nonce, nonce) || ack.DeviceID != dev {
			return ErrNonce
		}
		if err := s.box.SetMark(ack.Mark); err != nil {
			return err
		}
		if ack.Mark <= ours {
			return fmt.Errorf("sync: the authority did not take events %d to %d", first.Seq, last.Seq)
		}
		ours = ack.Mark
	}
	unsent, _ := s.box.Unsent()
	s.mu.Lock()
	s.status.Mark, s.status.Unsent = ours, unsent
	s.mu.Unlock()
	return nil
}

// revocations brings the revocations up to the authority's version.
func (s *Syncer) revocations(ctx context.Context, dev string) error {
	for attempt := 0; attempt < 3; attempt++ {
		err := s.revocationsOnce(ctx, dev)
		if !errors.Is(err, errVersionMoved) {
			return err
		}
		s.log.Info("revocations changed during the download: starting again")
	}
	return errors.New("sync: revocations kept changing during the download")
}

var errVersionMoved = errors.New("sync: revocation version moved on")

func (s *Syncer) revocationsOnce(ctx context.Context, dev string) error {
	have, _, _ := s.box.RevocationVersion()
	raw, _, err := s.do(ctx, http.MethodGet, s.url(protocol.PathManifest, url.Values{"since": {strconv.FormatUint(have, 10)}}),
		nil, dev, newNonce(), 0)
	if err != nil {
		return err
	}
	var m protocol.Manifest
	if err := s.open(raw, protocol.TypeManifest, &m, func(v any) time.Time { return v.(*protocol.Manifest).IssuedAt }); err != nil {
		return err
	}
	now := s.est.Now()
	switch {
	case m.Since != have:
		return fmt.Errorf("%w: manifest since %d, asked for %d", ErrNonce, m.Since, have)
	case m.Version < have:
		return fmt.Errorf("%w: revocations %d, holding %d", ErrRollback, m.Version, have)
	case now.Uncertainty >= 0 && now.Time.After(m.Expires):
		// A replayed old manifest (freeze attack) or a stalled authority:
		// keep what we have and let its staleness show.
		return fmt.Errorf("%w: revocation manifest %d expired at %v", ErrExpired, m.Version, m.Expires)
	case m.Version == have:
		if err := s.box.ExtendRevocations(have, m.Expires); err != nil {
			return err
		}
		s.setRevStatus(have)
		return nil
	}
	st := store.Staging{Version: m.Version, Since: have, Snapshot: m.Snapshot, Chunks: len(m.Chunks), Manifest: raw}
	if err := s.box.BeginRevocations(st); err != nil {
		return err
	}
	cur, err := s.box.Staging()
	if err != nil {
		return err
	}
	for i := cur.Next; i < len(m.Chunks); i++ {
		q := url.Values{"version": {strconv.FormatUint(m.Version, 10)}, "since": {strconv.FormatUint(have, 10)},
			"index": {strconv.Itoa(i)}}
		b, code, err := s.do(ctx, http.MethodGet, s.url(protocol.PathChunk, q), nil, dev, newNonce(), m.Chunks[i].Entries*chunkEntryBytes)
		if code == http.StatusGone {
			if err := s.box.AbortRevocations(); err != nil {
				return err
			}
			return errVersionMoved
		}
		if err != nil {
			return err // the staging stays: the next sync resumes at this chunk
		}
		if sha256.Sum256(b) != m.Chunks[i].Hash {
			return fmt.Errorf("%w: chunk %d of version %d", ErrTampered, i, m.Version)
		}
		entries, err := protocol.DecodeChunk(b)
		if err != nil || len(entries) != m.Chunks[i].Entries {
			return fmt.Errorf("%w: chunk %d does not decode to its %d entries", ErrTampered, i, m.Chunks[i].Entries)
		}
		if err := s.box.ApplyChunk(m.Version, i, entries); err != nil {
			return err
		}
	}
	if err := s.box.CommitRevocations(m.Set, m.Expires); err != nil {
		return err
	}
	s.log.Info("revocations updated", "version", m.Version, "snapshot", m.Snapshot, "entries", m.Set.Count)
	s.setRevStatus(m.Version)
	if _, err := s.box.Compact(); err != nil {
		return fmt.Errorf("sync: compacting revocations: %w", err)
	}
	return nil
}

func (s *Syncer) setRevStatus(v uint64) {
	s.mu.Lock()
	s.status.RevocationVersion = v
	s.mu.Unlock()
}
