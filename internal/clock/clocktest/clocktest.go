// Package clocktest provides a fake clock for tests of code that takes a
// clock.Clock.
package clocktest

import (
	"strconv"
	"sync"
	"time"
)

// Fake is a clock that moves only when told to; waiters fire when it
// passes their time. It is also a clock.Monotonic and a clock.Boot. It is
// safe for concurrent use.
type Fake struct {
	mu      sync.Mutex
	now     time.Time
	mono    time.Duration
	boots   int           // reboots so far
	boot    time.Duration // the boot clock's reading
	waiters []waiter
}

type waiter struct {
	at time.Time
	c  chan time.Time
}

// New returns a fake clock showing t.
func New(t time.Time) *Fake { return &Fake{now: t} }

// Now returns the fake time.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// After returns a channel that receives the time once the clock has been
// moved d past now.
func (f *Fake) After(d time.Duration) <-chan time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := make(chan time.Time, 1)
	if d <= 0 {
		c <- f.now
		return c
	}
	f.waiters = append(f.waiters, waiter{f.now.Add(d), c})
	return c
}

// Waiters returns how many After calls are waiting: a test can wait for
// the code under test to block before it moves the clock.
func (f *Fake) Waiters() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.waiters)
}

// Monotonic returns the fake monotonic reading: Advance moves it, Set
// does not (a step of the wall clock).
func (f *Fake) Monotonic() time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mono
}

// Boot returns the fake boot id and the boot clock's reading: Advance
// moves it, Set does not, Reboot starts a new boot.
func (f *Fake) Boot() (id string, sinceBoot time.Duration, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return "fake-boot-" + strconv.Itoa(f.boots), f.boot, true
}

// Reboot starts a new boot of the machine: a new boot id, and the boot
// clock back at zero. The wall clock and the monotonic reading stay.
func (f *Fake) Reboot() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.boots++
	f.boot = 0
}

// Set steps the wall clock to t, forwards or backwards, as an operator or
// a broken battery does; the monotonic and boot readings stay. It fires the waiters
// it passes.
func (f *Fake) Set(t time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.set(t)
}

// set moves the wall clock with f.mu held.
func (f *Fake) set(t time.Time) {
	f.now = t
	kept := f.waiters[:0]
	for _, w := range f.waiters {
		if !w.at.After(t) {
			w.c <- t
		} else {
			kept = append(kept, w)
		}
	}
	f.waiters = kept
}

// Suspend lets d pass with the machine suspended: the wall clock and the
// boot clock move, the monotonic reading does not (CLOCK_MONOTONIC stops
// in suspend). It fires the waiters it passes.
func (f *Fake) Suspend(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.boot += d
	f.set(f.now.Add(d))
}

// Advance lets d pass: the wall clock, the monotonic reading and the boot
// clock move.
func (f *Fake) Advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mono += d
	f.boot += d
	f.set(f.now.Add(d))
}

// Running is a clock that runs in real time from a chosen instant: for
// tests in which time must pass as it does (a video played at its pace, a
// device answering) on a fixed date.
type Running struct {
	from  time.Time
	start time.Time
}

// NewRunning returns a clock that shows t now and runs on from there.
func NewRunning(t time.Time) *Running { return &Running{from: t, start: time.Now()} }

// Now returns the running time.
func (r *Running) Now() time.Time { return r.from.Add(time.Since(r.start)) }

// Monotonic returns the time since the clock was made.
func (r *Running) Monotonic() time.Duration { return time.Since(r.start) }

// After sends the running time once d has passed.
func (r *Running) After(d time.Duration) <-chan time.Time {
	c := make(chan time.Time, 1)
	time.AfterFunc(d, func() { c <- r.Now() })
	return c
}
