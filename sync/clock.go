package sync

import (
	stdsync "sync"
	"time"

	"github.com/checkpointd/checkpoint/internal/clock"
	"github.com/checkpointd/checkpoint/store"
	"github.com/checkpointd/checkpoint/verify"
)

// MaxDrift is how fast a checkpoint's clock is assumed to drift at most
// between syncs: 100 parts per million, 8.6 seconds a day, well above
// what quartz clocks do.
const MaxDrift = 100e-6

// restartPenalty is added to the uncertainty when the time is carried
// across a restart by the wall clock alone.
const restartPenalty = 2 * time.Second

// Estimator tells the checkpoint what time it is and how sure it can be:
// the authority's time at the last sync, carried forward by the monotonic
// clock (or, after a restart, the wall clock), with an uncertainty that
// grows with the time since the sync. A clock found running backwards, or
// earlier than a time the checkpoint has already trusted, is not trusted
// until the next sync. Without any sync the uncertainty is unknown.
type Estimator struct {
	clk      clock.Clock
	box      *store.Box
	unsynced time.Duration // the system clock's uncertainty before any sync; negative: unknown

	mu        stdsync.Mutex
	anchor    store.Anchor
	have      bool
	local     time.Time     // clk.Now() at the anchor, in this process
	localMono time.Duration // the monotonic reading then, if the clock has one
	fresh     bool          // anchored in this process
	highWater time.Time
	savedHigh time.Time
}

// NewEstimator loads the last anchor from the store. Until the first sync
// the system clock is taken with uncertainty unsynced (negative: not
// trusted at all).
func NewEstimator(clk clock.Clock, box *store.Box, unsynced time.Duration) (*Estimator, error) {
	e := &Estimator{clk: clk, box: box, unsynced: unsynced}
	a, ok, err := box.Anchor()
	if err != nil {
		return nil, err
	}
	e.anchor, e.have = a, ok
	if e.highWater, err = box.HighWater(); err != nil {
		return nil, err
	}
	e.savedHigh = e.highWater
	return e, nil
}

// anchorAt records a sync's anchor, made when the local clock read local.
// The authority's time is the truth: it also resets the high-water mark,
// which a wrong clock may have pushed too far.
func (e *Estimator) anchorAt(a store.Anchor, local time.Time) error {
	e.mu.Lock()
	e.anchor, e.have, e.local, e.fresh = a, true, local, true
	if m, ok := e.clk.(clock.Monotonic); ok {
		e.localMono = m.Monotonic()
	}
	e.highWater, e.savedHigh = a.Server, a.Server
	e.mu.Unlock()
	if err := e.box.SetAnchor(a); err != nil {
		return err
	}
	return e.box.SetHighWater(a.Server)
}

// Now returns the estimated time and its uncertainty (negative: not
// trusted).
func (e *Estimator) Now() verify.Instant {
	now := e.clk.Now()
	mono, hasMono := e.clk.(clock.Monotonic)
	var monoNow time.Duration
	if hasMono {
		monoNow = mono.Monotonic()
	}
	e.mu.Lock()
	if !e.have {
		e.mu.Unlock()
		return verify.Instant{Time: now, Uncertainty: e.unsynced}
	}
	var elapsed time.Duration
	penalty := time.Duration(0)
	switch {
	case e.fresh && hasMono:
		// Steps of the wall clock do not move the monotonic one.
		elapsed = monoNow - e.localMono
	case e.fresh:
		elapsed = now.Sub(e.local)
	default:
		elapsed = now.Sub(e.anchor.Wall)
		penalty = restartPenalty
	}
	est := e.anchor.Server.Add(elapsed)
	if elapsed < 0 || est.Before(e.highWater) {
		e.mu.Unlock()
		return verify.Instant{Time: est, Uncertainty: -1}
	}
	unc := e.anchor.RTT/2 + time.Duration(float64(elapsed)*MaxDrift) + penalty
	e.highWater = est
	// Persist the high-water mark now and then, so that a restart with the
	// clock set back is noticed.
	save := est.Sub(e.savedHigh) > time.Minute
	if save {
		e.savedHigh = est
	}
	e.mu.Unlock()
	if save {
		e.box.SetHighWater(est)
	}
	return verify.Instant{Time: est, Uncertainty: unc}
}
