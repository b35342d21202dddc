// Package cli holds the command-line conventions the tools share: RFC 3339
// time flags, repeatable flags, flag parsing with required flags, and the
// usage error that makes a tool exit with status 2. cmd/authority,
// cmd/holder and cmd/checkpointctl import it.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"
)

// UsageError is a mistake in how a tool was called (a missing flag, a
// missing file): the tool says so and exits with status 2.
type UsageError struct{ Msg string }

func (e UsageError) Error() string { return e.Msg }

// Usagef returns a UsageError.
func Usagef(format string, args ...any) error { return UsageError{fmt.Sprintf(format, args...)} }

// IsUsage reports whether err is a UsageError.
func IsUsage(err error) bool {
	var ue UsageError
	return errors.As(err, &ue)
}

// Parse parses args, refuses positional arguments, and checks that each
// required flag has a value. -h returns flag.ErrHelp.
func Parse(fl *flag.FlagSet, args []string, required ...string) error {
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return UsageError{err.Error()}
	}
	if fl.NArg() > 0 {
		return Usagef("unexpected argument %q", fl.Arg(0))
	}
	for _, n := range required {
		if fl.Lookup(n).Value.String() == "" {
			return Usagef("--%s is required", n)
		}
	}
	return nil
}

// Time is a flag holding an RFC 3339 time, unset until given.
type Time struct {
	T     time.Time
	Given bool
}

func (a *Time) String() string {
	if a == nil || !a.Given {
		return ""
	}
	return a.T.Format(time.RFC3339)
}

// Set parses an RFC 3339 time.
func (a *Time) Set(s string) error {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return fmt.Errorf("want an RFC 3339 time such as 2026-11-25T08:00:00+08:00")
	}
	a.T, a.Given = t, true
	return nil
}

// Or returns the flag's time, or def when it was not given.
func (a *Time) Or(def time.Time) time.Time {
	if a.Given {
		return a.T
	}
	return def
}

// List is a repeatable flag.
type List []string

func (l *List) String() string { return strings.Join(*l, ",") }

// Set adds a value.
func (l *List) Set(s string) error { *l = append(*l, s); return nil }
