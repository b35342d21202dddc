//go:build !linux

package clock

import "time"

// Boot is not available outside Linux: ok is always false.
func (System) Boot() (id string, sinceBoot time.Duration, ok bool) { return "", 0, false }
