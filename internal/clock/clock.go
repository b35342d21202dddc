// Package clock is the one place that reads the system clock. Everything
// that decides freshness, expiry, backoff or pacing takes a Clock, so that
// tests (with clocktest.Fake) and the --at flags of the tools can say what
// time it is. The commands, the scanner and the verifier's callers import
// it.
package clock

import "time"

// Clock tells the time and waits.
type Clock interface {
	Now() time.Time
	// After sends the time on the returned channel once d has passed.
	After(d time.Duration) <-chan time.Time
}

// Monotonic is a clock that also has a monotonic reading, which steps of
// the wall clock do not move. Code that measures elapsed time across wall
// clock changes uses it when the clock has it.
type Monotonic interface {
	Monotonic() time.Duration
}

// Boot is a clock that also reads the kernel's boot clock: an id that
// changes at every boot of the machine, and the time since that boot,
// which steps of the wall clock do not move. It carries time across a
// restart of the process, not of the machine. ok is false where the boot
// clock cannot be read.
type Boot interface {
	Boot() (id string, sinceBoot time.Duration, ok bool)
}

// System is the machine's clock. On Linux it is also a Boot clock
// (/proc/sys/kernel/random/boot_id and CLOCK_BOOTTIME).
type System struct{}

var start = time.Now()

// Monotonic returns the time since the process started, measured by the
// monotonic clock.
func (System) Monotonic() time.Duration { return time.Since(start) }

// Now returns the current system time.
func (System) Now() time.Time { return time.Now() }

// After waits on the system clock.
func (System) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Fixed is a clock stopped at one instant, for the tools' --at flags.
// Waiting on it never ends.
type Fixed time.Time

// Now returns the fixed instant.
func (f Fixed) Now() time.Time { return time.Time(f) }

// After never fires: a stopped clock does not move.
func (Fixed) After(time.Duration) <-chan time.Time { return nil }
