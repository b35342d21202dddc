// Package passage turns what happens at one lane into passages: one
// person through one lane, with one decision. A passage opens on a code
// (from the camera or a handheld scanner), an ID-card read or a guard's
// action; it gathers the code's verification, the temperature readings,
// the ID check and the guard's actions within the policy's windows; it
// closes with one outcome and the reasons for it, which the caller
// records (durably) before it drives the gate.
//
// The package is pure: no I/O, no clock, no goroutines. The caller brings
// every input with its time and carries out what each call returns (ask
// the thermometer, record and open the gate, show the guard). The daemon
// runs one Lane per lane; docs/gate.md describes the rules.
package passage

import (
	"slices"
	"time"

	"github.com/checkpointd/checkpoint/hardware"
	"github.com/checkpointd/checkpoint/internal/credential"
	"github.com/checkpointd/checkpoint/verify"
)

// IDRead is an ID number from a card reader, or typed by the guard.
type IDRead struct {
	Number string    // as read; checked by ParseID when it is used
	Name   string    // the name on the card, when the reader gives it
	Source string    // the reader's name, or "guard"
	At     time.Time // when it was read
}

// ActionKind is what a guard did.
type ActionKind string

// The guard's actions.
const (
	ConfirmID   ActionKind = "confirm_id"  // the card matches the masked name
	Override    ActionKind = "override"    // decide, with a reason
	Temperature ActionKind = "temperature" // a reading from a handheld thermometer
	TypedID     ActionKind = "id"          // the number from a card, typed
)

// OverrideReasons are the reasons a guard may give for deciding a
// passage.
var OverrideReasons = []string{
	"clinical_thermometer_normal", // re-measured with a clinical thermometer: normal
	"id_checked_by_hand",          // the card checked by hand against the person
	"device_fault",                // a device at the lane is out of order
	"medical_emergency",           // someone who must pass at once
	"official_duty",               // police, medical or rescue staff on duty
}

// Action is one thing a guard did in a passage.
type Action struct {
	Kind    ActionKind
	Guard   string    // the guard's name, as signed in
	At      time.Time // when
	Outcome verify.Outcome
	Reason  string  // an OverrideReasons code, for an override
	Celsius float64 // for a temperature
	Number  string  // for a typed ID number; never recorded as such
}

// Temp is where a passage's temperature stands.
type Temp int

// The temperature states.
const (
	TempPending   Temp = iota // no reading yet
	TempRemeasure             // a fever or a sensor error: a re-measure is wanted
	TempNormal                // a normal reading
	TempFever                 // a fever confirmed by a re-measure
)

// Passage is one person through one lane: what was gathered, and the
// outcome and reasons it leads to (so far, while it is open).
type Passage struct {
	Lane     string
	Opened   time.Time
	OpenedBy string    // "code", "id" or "guard"
	Closed   time.Time // zero while it gathers
	Deadline time.Time // when it closes with what it has

	// Code is the code's verification, with the ID card compared when a
	// card was read; nil without a code.
	Code     *verify.Decision
	Readings []hardware.Reading // every reading, as it came
	ID       *IDRead
	Actions  []Action

	Temp        Temp
	Temperature *hardware.Reading // the reading the decision rests on
	Outcome     verify.Outcome
	Reasons     []verify.Reason
	// Waiting lists what it still waits for: "code", "temperature",
	// "remeasure", "id_card", "guard".
	Waiting []string

	asked int // readings asked of the thermometer
}

// IDOnly reports whether the passage is of a person without a code.
func (p *Passage) IDOnly() bool { return p.Code == nil && p.ID != nil }

// Effects is what the caller must do after an input.
type Effects struct {
	// Closed are passages decided, in order: record each durably, then
	// drive the gate.
	Closed []Passage
	// Current is the passage gathering now (a copy), or nil.
	Current *Passage
	// Measure asks the thermometer for a reading: a passage opened and
	// needs one, or a fever or sensor error needs a re-measure.
	Measure bool
}

// Lane gathers one lane's passages, one at a time.
type Lane struct {
	name     string
	p        Policy
	cur      *Passage
	early    []hardware.Reading // readings no passage was waiting for
	lastCred string             // the credential of the last passage with a code
}

// Bounds: the readings kept for a passage yet to open, the readings one
// passage keeps, and the readings after which it asks for no re-measure.
const (
	maxEarly     = 8
	maxReadings  = 16
	maxRemeasure = 4
)

// NewLane returns a lane with no passage open.
func NewLane(name string, p Policy) *Lane { return &Lane{name: name, p: p} }

// Code takes a scanned code's verification. A repeat of the last code's
// credential (the same phone still in front of the camera, renewing its
// code) changes nothing; a code joins a passage opened by a card or the
// guard; another person's code closes the open passage and opens one.
func (l *Lane) Code(at time.Time, dec verify.Decision) Effects {
	var e Effects
	cred := credentialOf(dec)
	if dec.Repeat && cred != "" && cred == l.lastCred {
		return l.effects(e)
	}
	if cred != "" {
		l.lastCred = cred
	}
	if l.cur != nil && l.cur.Code != nil {
		l.close(&e, at)
	}
	if l.cur == nil {
		l.open(&e, at, "code")
	}
	if l.cur.ID != nil {
		dec = dec.WithID(l.cur.ID.Number, l.p.Policy)
	}
	l.cur.Code = &dec
	return l.settle(e, at)
}

// credentialOf identifies the credential of a verified code: its issuer
// key and credential id ("" for a code whose issuer is unknown).
func credentialOf(dec verify.Decision) string {
	if dec.Code == nil {
		return ""
	}
	return dec.Code.KeyID + "/" + dec.Code.CredentialID
}

// ID takes an ID-card read (or a number the guard typed). It joins the
// open passage unless that has a card already, in which case it is the
// next person's.
func (l *Lane) ID(id IDRead) Effects {
	var e Effects
	if l.cur != nil && l.cur.ID != nil {
		l.close(&e, id.At)
	}
	if l.cur == nil {
		l.open(&e, id.At, "id")
	}
	l.cur.ID = &id
	if l.cur.Code != nil {
		d := l.cur.Code.WithID(id.Number, l.p.Policy)
		l.cur.Code = &d
	}
	return l.settle(e, id.At)
}

// Reading takes a temperature reading. It goes to the open passage if that
// waits for one; otherwise it waits for the next passage to open.
func (l *Lane) Reading(r hardware.Reading) Effects {
	var e Effects
	if l.cur == nil || !l.wantsReading(l.cur) {
		l.early = append(l.early, r)
		if len(l.early) > maxEarly {
			l.early = l.early[1:]
		}
		return l.effects(e)
	}
	if len(l.cur.Readings) < maxReadings {
		l.cur.Readings = append(l.cur.Readings, r)
	}
	return l.settle(e, r.At)
}

// Guard takes a guard's action, opening a passage if none is open.
func (l *Lane) Guard(a Action) Effects {
	var e Effects
	if l.cur == nil {
		l.open(&e, a.At, "guard")
	}
	switch a.Kind {
	case Temperature:
		if len(l.cur.Readings) < maxReadings {
			l.cur.Readings = append(l.cur.Readings, hardware.Reading{Body: a.Celsius, Source: "guard", At: a.At})
		}
	case TypedID:
		if l.cur.ID == nil {
			l.cur.ID = &IDRead{Number: a.Number, Source: "guard", At: a.At}
			if l.cur.Code != nil {
				d := l.cur.Code.WithID(a.Number, l.p.Policy)
				l.cur.Code = &d
			}
		}
		a.Number = "" // the event keeps the card's number sealed, never in an action
	}
	l.cur.Actions = append(l.cur.Actions, a)
	return l.settle(e, a.At)
}

// Tick lets time pass: the open passage closes at its deadline, or as
// soon as it stops waiting for a code (a person without a phone).
func (l *Lane) Tick(now time.Time) Effects {
	var e Effects
	if l.cur != nil && !now.Before(l.cur.Deadline) {
		l.close(&e, now)
		return l.effects(e)
	}
	return l.settle(e, now)
}

// Next returns when Tick must be called next, unless another input comes
// first.
func (l *Lane) Next() (time.Time, bool) {
	if l.cur == nil {
		return time.Time{}, false
	}
	// Only a card's passage stops waiting for a code when the code window
	// ends; any other waits for one until its deadline, and a tick at the
	// window's end would change nothing, again and again.
	if l.cur.ID != nil && slices.Contains(l.cur.Waiting, "code") {
		if t := l.cur.Opened.Add(time.Duration(l.p.CodeWindow)); t.Before(l.cur.Deadline) {
			return t, true
		}
	}
	return l.cur.Deadline, true
}

// Current returns the passage gathering now (a copy), or nil.
func (l *Lane) Current() *Passage {
	if l.cur == nil {
		return nil
	}
	c := clone(*l.cur)
	return &c
}

// open starts a passage at, taking the readings that came shortly before.
func (l *Lane) open(e *Effects, at time.Time, by string) {
	p := &Passage{Lane: l.name, Opened: at, OpenedBy: by, Deadline: at.Add(time.Duration(l.p.Window))}
	for _, r := range l.early {
		if !r.At.Before(at.Add(-time.Duration(l.p.ReadingLead))) && !r.At.After(at) {
			p.Readings = append(p.Readings, r)
		}
	}
	l.early = nil
	l.cur = p
}

// settle evaluates the open passage after an input, and closes it if it
// has all it waits for. A passage that waits for a reading, with none
// asked for since its last, asks the thermometer (a few times at most).
func (l *Lane) settle(e Effects, now time.Time) Effects {
	if p := l.cur; p != nil {
		l.evaluate(p, now, false)
		if len(p.Waiting) == 0 {
			l.close(&e, now)
		} else if l.wantsReading(p) && p.asked <= len(p.Readings) && p.asked < maxRemeasure+1 {
			p.asked++
			e.Measure = true
		}
	}
	return l.effects(e)
}

// close decides the open passage with what it has.
func (l *Lane) close(e *Effects, now time.Time) {
	p := l.cur
	l.evaluate(p, now, true)
	p.Closed = now
	e.Closed = append(e.Closed, clone(*p))
	l.cur = nil
}

func (l *Lane) effects(e Effects) Effects {
	e.Current = l.Current()
	return e
}

// wantsReading reports whether p still waits for a temperature.
func (l *Lane) wantsReading(p *Passage) bool {
	return slices.Contains(p.Waiting, "temperature") || slices.Contains(p.Waiting, "remeasure")
}

// temperature classifies the readings in order: the first normal one
// settles it; two fevers (the reading and its re-measure) confirm a
// fever; a fever or a sensor error alone asks for a re-measure.
func (l *Lane) temperature(rs []hardware.Reading) (Temp, *hardware.Reading) {
	fevers := 0
	state := TempPending
	for i := range rs {
		r := &rs[i]
		switch {
		case r.Body < l.p.SensorMin || r.Body > l.p.SensorMax:
			state = TempRemeasure
		case r.Body < l.p.FeverThreshold:
			return TempNormal, r
		default:
			if fevers++; fevers == 2 {
				return TempFever, r
			}
			state = TempRemeasure
		}
	}
	return state, nil
}

// evaluate works out p's outcome, reasons, what it waits for and its
// deadline. final decides with what there is: what is missing becomes a
// reason.
func (l *Lane) evaluate(p *Passage, now time.Time, final bool) {
	pol := l.p
	p.Outcome, p.Reasons, p.Waiting = verify.Pass, nil, nil
	add := func(r verify.Reason, o verify.Outcome) {
		p.Reasons = append(p.Reasons, r)
		p.Outcome = max(p.Outcome, o)
	}
	wait := func(what string) { p.Waiting = append(p.Waiting, what) }

	// The code, or the card of a person without one.
	switch {
	case p.Code != nil:
		for _, r := range p.Code.Reasons {
			o, _ := p.Code.OutcomeOf(r)
			add(r, o)
		}
	case p.ID != nil && now.Before(p.Opened.Add(time.Duration(pol.CodeWindow))) && !final:
		wait("code")
	case p.ID != nil:
		if _, err := credential.ParseID(p.ID.Number); err != nil {
			add(verify.IDInvalid, verify.Refer)
		} else {
			add(verify.IDOnly, pol.IDOnly)
		}
	case final:
		add(verify.CodeMissing, verify.Refer)
	default:
		wait("code")
	}

	// The temperature. A refused code waits for it too, so that the
	// reading goes into that person's record, not the next person's; but
	// not a code nobody issued (a stray QR code is nobody's passage).
	needTemp := pol.TemperatureRequired && (p.Code == nil || p.Code.Code != nil)
	p.Temp, p.Temperature = l.temperature(p.Readings)
	switch p.Temp {
	case TempFever:
		add(verify.Fever, verify.Refuse)
	case TempRemeasure:
		if final {
			add(verify.TemperatureMissing, verify.Refer)
		} else {
			wait("remeasure")
		}
	case TempPending:
		if needTemp {
			if final {
				add(verify.TemperatureMissing, verify.Refer)
			} else {
				wait("temperature")
			}
		}
	}

	// The ID check of a code that is not already refused.
	if c := p.Code; c != nil && c.Code != nil && !c.IDChecked && c.Outcome != verify.Refuse {
		confirmed := slices.ContainsFunc(p.Actions, func(a Action) bool { return a.Kind == ConfirmID })
		switch {
		case pol.IDCheck == IDReader && final:
			add(verify.IDMissing, verify.Refer)
		case pol.IDCheck == IDReader:
			wait("id_card")
		case pol.IDCheck == IDGuard && !confirmed && final:
			add(verify.IDUnconfirmed, verify.Refer)
		case pol.IDCheck == IDGuard && !confirmed:
			wait("guard")
		}
	}

	// The guard's word is last: it decides, and says why.
	for _, a := range p.Actions {
		if a.Kind == Override {
			p.Reasons = append(p.Reasons, verify.GuardOverride)
			p.Outcome = a.Outcome
			p.Waiting = nil
		}
	}

	// A re-measure gets its own window, from the first reading that
	// called for one.
	p.Deadline = p.Opened.Add(time.Duration(pol.Window))
	for _, r := range p.Readings {
		if r.Body < pol.SensorMin || r.Body >= pol.FeverThreshold {
			if t := r.At.Add(time.Duration(pol.RemeasureWindow)); t.After(p.Deadline) {
				p.Deadline = t
			}
			break
		}
	}
}

// clone copies a passage so that what the caller holds does not change
// with the lane.
func clone(p Passage) Passage {
	p.Readings = slices.Clone(p.Readings)
	p.Actions = slices.Clone(p.Actions)
	p.Reasons = slices.Clone(p.Reasons)
	p.Waiting = slices.Clone(p.Waiting)
	if p.Code != nil {
		c := *p.Code
		p.Code = &c
	}
	if p.ID != nil {
		id := *p.ID
		p.ID = &id
	}
	if p.Temperature != nil {
		t := *p.Temperature
		p.Temperature = &t
	}
	return p
}
