package verify

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
)

// Policy is the local rule set, as data: what each colour, a paper code, a
// stale list or an untrusted clock leads to, and the time windows. The other
// reasons (forgery, expiry, screenshots, revocation, ...) always refuse.
type Policy struct {
	StatusYellow        Outcome `json:"status_yellow"`
	StatusRed           Outcome `json:"status_red"`
	StaticCode          Outcome `json:"static_code"`            // paper code, no ID card read
	StaticCodeIDMatched Outcome `json:"static_code_id_matched"` // paper code whose ID card matched
	RevocationListStale Outcome `json:"revocation_list_stale"`
	TrustListStale      Outcome `json:"trust_list_stale"`
	ClockUntrusted      Outcome `json:"clock_untrusted"`

	// A presentation is fresh for PresentationWindow after the phone signed
	// it, plus ClockSkew between the phone's clock and the checkpoint's,
	// plus the checkpoint clock's own uncertainty.
	PresentationWindow Duration `json:"presentation_window"`
	ClockSkew          Duration `json:"clock_skew"`

	// The same code seen again within RepeatGrace is the same person still
	// in front of the camera: a repeat, not a replay and not a new passage.
	RepeatGrace Duration `json:"repeat_grace"`

	// A checkpoint clock less certain than this is not trusted.
	MaxClockUncertainty Duration `json:"max_clock_uncertainty"`
}

// DefaultPolicy is the policy of the health-code rules in DESIGN: green
// passes; yellow goes to a second check; red is refused; a paper code needs
// an ID check; stale lists and an untrusted clock send people to a second
// check rather than pass them unchecked or turn them away.
func DefaultPolicy() Policy {
	return Policy{
		StatusYellow:        Refer,
		StatusRed:           Refuse,
		StaticCode:          Refer,
		StaticCodeIDMatched: Pass,
		RevocationListStale: Refer,
		TrustListStale:      Refer,
		ClockUntrusted:      Refer,
		PresentationWindow:  Duration(30 * time.Second),
		ClockSkew:           Duration(15 * time.Second),
		RepeatGrace:         Duration(10 * time.Second),
		MaxClockUncertainty: Duration(2 * time.Minute),
	}
}

// ParsePolicy reads a policy written as JSON. Fields it leaves out keep
// their defaults; unknown fields are errors, so a typing mistake is not a
// silent change of rules.
func ParsePolicy(data []byte) (Policy, error) {
	p := DefaultPolicy()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return Policy{}, fmt.Errorf("policy: %w", err)
	}
	if err := p.Validate(); err != nil {
		return Policy{}, err
	}
	return p, nil
}

// Validate checks that the windows make sense.
func (p Policy) Validate() error {
	switch {
	case p.PresentationWindow <= 0:
		return fmt.Errorf("policy: presentation_window must be positive")
	case p.ClockSkew < 0 || p.RepeatGrace < 0 || p.MaxClockUncertainty < 0:
		return fmt.Errorf("policy: durations must not be negative")
	case p.RepeatGrace > p.PresentationWindow:
		return fmt.Errorf("policy: repeat_grace must not exceed presentation_window")
	}
	return nil
}

// Duration is a time.Duration written in JSON as Go duration text ("30s").
type Duration time.Duration

// MarshalText writes the duration as Go duration text.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText reads Go duration text.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}
