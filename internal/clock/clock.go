// Package clock is the one place that reads the system clock. Everything
// that decides freshness, expiry or backoff takes a Clock, so that tests
// (with clocktest.Fake) and the --at flags of the tools can say what time it
// is. The commands import it.
package clock

import "time"

// Clock tells the time.
type Clock interface {
	Now() time.Time
}

// System is the machine's clock.
type System struct{}

// Now returns the current system time.
func (System) Now() time.Time { return time.Now() }

// Fixed is a clock stopped at one instant, for the tools' --at flags.
type Fixed time.Time

// Now returns the fixed instant.
func (f Fixed) Now() time.Time { return time.Time(f) }
