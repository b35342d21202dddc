package passage

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/checkpointd/checkpoint/verify"
)

// IDMode is how a lane checks that the code belongs to the person.
type IDMode string

// The ID modes.
const (
	// IDReader needs an ID-card read whose number matches the code's ID
	// hash; a mismatch refuses.
	IDReader IDMode = "reader"
	// IDGuard needs the guard to confirm, on the screen, that the masked
	// name matches the card (or a card read or a typed number that
	// matches).
	IDGuard IDMode = "guard"
	// IDNone checks a card only when one is read.
	IDNone IDMode = "none"
)

// Policy is the local rule set, as data: the verifier's rules for a code,
// and the passage's for temperatures, ID checks, people without a phone
// and the time each may take. configs/policy.json is the default written
// out.
type Policy struct {
	verify.Policy

	// TemperatureRequired: a passage passes only with a normal reading.
	TemperatureRequired bool `json:"temperature_required"`
	// FeverThreshold: a reading at or above it is a fever (°C; 36.0 to
	// 40.0 allowed).
	FeverThreshold float64 `json:"fever_threshold"`
	// A reading below SensorMin or above SensorMax (°C) is a sensor
	// error, not a fever: the reading is kept and a re-measure asked for.
	SensorMin float64 `json:"sensor_min"`
	SensorMax float64 `json:"sensor_max"`
	// IDCheck is the lane's ID check.
	IDCheck IDMode `json:"id_check"`
	// IDOnly is the outcome for a person without a code who shows an ID
	// card and has a normal temperature.
	IDOnly verify.Outcome `json:"id_only"`

	// Window is how long a passage waits, from when it opens, for what it
	// still needs (a reading, an ID card, the guard).
	Window verify.Duration `json:"passage_window"`
	// RemeasureWindow is how long, after a fever or a sensor error, a
	// passage waits for the re-measure.
	RemeasureWindow verify.Duration `json:"remeasure_window"`
	// CodeWindow is how long a passage opened by an ID card waits for a
	// code before it is taken for a person without a phone.
	CodeWindow verify.Duration `json:"code_window"`
	// ReadingLead: a reading that arrives with no passage waiting for one
	// joins the next passage that opens within this time.
	ReadingLead verify.Duration `json:"reading_lead"`
}

// DefaultPolicy is the gate rule of the health-code years: a green code
// and a taken temperature, then pass; 37.3 °C is a fever, confirmed by a
// re-measure; people without a phone pass on their ID card and a normal
// temperature. The ID check is "none" by default, because only a lane
// with a card reader, or a guard at the screen, can check a card: such a
// lane sets "reader" or "guard", and a card read is checked in every mode.
func DefaultPolicy() Policy {
	return Policy{
		Policy:              verify.DefaultPolicy(),
		TemperatureRequired: true,
		FeverThreshold:      37.3,
		SensorMin:           34.0,
		SensorMax:           43.0,
		IDCheck:             IDNone,
		IDOnly:              verify.Pass,
		Window:              verify.Duration(10 * time.Second),
		RemeasureWindow:     verify.Duration(30 * time.Second),
		CodeWindow:          verify.Duration(3 * time.Second),
		ReadingLead:         verify.Duration(5 * time.Second),
	}
}

// ParsePolicy reads a policy written as JSON. Fields it leaves out keep
// their defaults; unknown fields are errors.
func ParsePolicy(data []byte) (Policy, error) {
	p := DefaultPolicy()
	if err := strictDecode(data, &p); err != nil {
		// Name the key that failed: decode the fields one at a time.
		var fields map[string]json.RawMessage
		if json.Unmarshal(data, &fields) == nil {
			for k, v := range fields {
				q := DefaultPolicy()
				one, _ := json.Marshal(map[string]json.RawMessage{k: v})
				if ferr := strictDecode(one, &q); ferr != nil {
					return Policy{}, fmt.Errorf("policy: %s: %w", k, ferr)
				}
			}
		}
		return Policy{}, fmt.Errorf("policy: %w", err)
	}
	if err := p.Validate(); err != nil {
		return Policy{}, err
	}
	return p, nil
}

func strictDecode(data []byte, p *Policy) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	return dec.Decode(p)
}

// Validate checks the rules, naming the key of the first one out of range.
func (p Policy) Validate() error {
	if err := p.Policy.Validate(); err != nil {
		return err
	}
	switch {
	case p.FeverThreshold < 36.0 || p.FeverThreshold > 40.0:
		return fmt.Errorf("policy: fever_threshold %.1f is outside 36.0 to 40.0", p.FeverThreshold)
	case p.SensorMin < 30.0 || p.SensorMin >= p.FeverThreshold:
		return fmt.Errorf("policy: sensor_min %.1f must be from 30.0 and below fever_threshold", p.SensorMin)
	case p.SensorMax > 45.0 || p.SensorMax <= p.FeverThreshold:
		return fmt.Errorf("policy: sensor_max %.1f must be above fever_threshold and at most 45.0", p.SensorMax)
	case p.IDCheck != IDReader && p.IDCheck != IDGuard && p.IDCheck != IDNone:
		return fmt.Errorf("policy: id_check %q is not reader, guard or none", p.IDCheck)
	case p.Window <= 0 || p.RemeasureWindow <= 0 || p.CodeWindow <= 0 || p.ReadingLead < 0:
		return fmt.Errorf("policy: passage_window, remeasure_window and code_window must be positive")
	case p.CodeWindow > p.Window:
		return fmt.Errorf("policy: code_window must not exceed passage_window")
	}
	return nil
}
