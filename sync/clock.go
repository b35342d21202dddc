package sync

import (
	"log/slog"
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
// across a reboot by the wall clock alone.
const restartPenalty = 2 * time.Second

// StepTolerance is how far the wall clock may move against the clock the
// time is carried by (monotonic or boot clock) before it counts as
// stepped; the drift of the time since the anchor is added to it.
const StepTolerance = 2 * time.Second

// Estimator tells the checkpoint what time it is and how sure it can be:
// the authority's time at the last sync, carried forward by the kernel's
// boot clock while the boot is the anchor's (within the process and
// across a restart; it counts a suspend, which the monotonic clock does
// not), by the monotonic clock within the process where there is no boot
// clock, and by the wall clock alone after a reboot, with an uncertainty
// that grows with the time since the sync. A clock found
// running backwards, or earlier than a time the checkpoint has already
// trusted, is not trusted until the next sync. Without any sync the
// uncertainty is unknown.
//
// While the time is carried by the monotonic or the boot clock, the wall
// clock is compared with it: a wall clock that moved against the anchor by
// more than StepTolerance plus drift was stepped. The step is logged once
// and ClockStep reports it.
type Estimator struct {
	clk      clock.Clock
	box      *store.Box
	log      *slog.Logger
	unsynced time.Duration // the system clock's uncertainty before any sync; negative: unknown

	mu        stdsync.Mutex
	anchor    store.Anchor
	have      bool
	local     time.Time     // clk.Now() at the anchor, in this process
	localMono time.Duration // the monotonic reading then, if the clock has one
	fresh     bool          // anchored in this process
	highWater time.Time
	savedHigh time.Time
	step      time.Duration // the wall clock's step against the anchor, as last found; 0: none
}

// NewEstimator loads the last anchor from the store. Until the first sync
// the system clock is taken with uncertainty unsynced (negative: not
// trusted at all). log may be nil.
func NewEstimator(clk clock.Clock, box *store.Box, unsynced time.Duration, log *slog.Logger) (*Estimator, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e := &Estimator{clk: clk, box: box, unsynced: unsynced, log: log.With("component", "clock")}
	a, ok, err := box.Anchor()
	if err != nil {
		return nil, err
	}
	e.anchor, e.have = a, ok
	if e.highWater, err = box.HighWater(); err != nil {
		return nil, err
	}
	e.savedHigh = e.highWater
	if ok {
		// A clock stepped while the checkpoint was stopped shows at once.
		e.Now()
	}
	return e, nil
}

// anchorAt records a sync's anchor, made when the local clock read local.
// The authority's time is the truth: it also resets the high-water mark,
// which a wrong clock may have pushed too far, and the step found against
// the previous anchor.
func (e *Estimator) anchorAt(a store.Anchor, local time.Time) error {
	e.mu.Lock()
	if b, ok := e.clk.(clock.Boot); ok {
		if id, since, ok := b.Boot(); ok {
			a.BootID, a.Boot = id, since
		}
	}
	e.anchor, e.have, e.local, e.fresh = a, true, local, true
	if m, ok := e.clk.(clock.Monotonic); ok {
		e.localMono = m.Monotonic()
	}
	e.highWater, e.savedHigh = a.Server, a.Server
	e.step = 0
	e.mu.Unlock()
	if err := e.box.SetAnchor(a); err != nil {
		return err
	}
	return e.box.SetHighWater(a.Server)
}

// ClockStep returns how far the wall clock was last found stepped against
// the anchor in use (positive: ahead), or 0 if it was not; a new anchor
// resets it. After a reboot the wall clock is all there is, and a step
// cannot be seen.
func (e *Estimator) ClockStep() time.Duration {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.step
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
	byWall := false
	since, sameBoot := e.sameBoot()
	switch {
	case sameBoot:
		// The anchor's boot, in this process or after a restart: the
		// boot clock carries the anchor. Steps of the wall clock do not
		// move it, and it goes on counting while the box is suspended.
		elapsed = since - e.anchor.Boot
	case e.fresh && hasMono:
		// Steps of the wall clock do not move the monotonic one.
		elapsed = monoNow - e.localMono
	case e.fresh:
		elapsed, byWall = now.Sub(e.local), true
	default:
		// Rebooted, or an anchor without a boot id: the wall clock is all
		// there is.
		elapsed, byWall = now.Sub(e.anchor.Wall), true
		penalty = restartPenalty
	}
	est := e.anchor.Server.Add(elapsed)
	drift := time.Duration(float64(elapsed.Abs()) * MaxDrift)
	var logStep, logBack bool
	if !byWall {
		logStep, logBack = e.checkStep(now, est, drift)
	}
	step := e.step
	if elapsed < 0 || est.Before(e.highWater) {
		e.mu.Unlock()
		e.logStep(logStep, logBack, step)
		return verify.Instant{Time: est, Uncertainty: -1}
	}
	unc := e.anchor.RTT/2 + drift + penalty
	e.highWater = est
	// Persist the high-water mark now and then, so that a restart with the
	// clock set back is noticed.
	save := est.Sub(e.savedHigh) > time.Minute
	if save {
		e.savedHigh = est
	}
	e.mu.Unlock()
	e.logStep(logStep, logBack, step)
	if save {
		e.box.SetHighWater(est)
	}
	return verify.Instant{Time: est, Uncertainty: unc}
}

// sameBoot returns the boot clock's reading if the anchor was made in the
// current boot. e.mu is held.
func (e *Estimator) sameBoot() (time.Duration, bool) {
	b, ok := e.clk.(clock.Boot)
	if !ok || e.anchor.BootID == "" {
		return 0, false
	}
	id, since, ok := b.Boot()
	if !ok || id != e.anchor.BootID {
		return 0, false
	}
	return since, true
}

// checkStep compares the wall clock now with the estimate est, carried
// without it: the wall clock's offset from the authority's time should be
// what it was at the anchor. It records a step beyond the tolerance, and
// says whether a new step (or the end of one) is to be logged. e.mu is
// held.
func (e *Estimator) checkStep(now, est time.Time, drift time.Duration) (stepped, back bool) {
	step := now.Sub(est) - e.anchor.Wall.Sub(e.anchor.Server)
	tol := StepTolerance + drift
	switch {
	case step.Abs() <= tol:
		back = e.step != 0
		e.step = 0
	case e.step == 0 || (step-e.step).Abs() > tol:
		stepped = true
		e.step = step
	}
	return stepped, back
}

func (e *Estimator) logStep(stepped, back bool, step time.Duration) {
	switch {
	case stepped:
		e.log.Warn("the wall clock was stepped against the clock anchor; deciding by the anchor",
			"step_seconds", step.Seconds())
	case back:
		e.log.Info("the wall clock agrees with the clock anchor again")
	}
}
