// Package rules decides a holder's health-code colour: from what the holder
// declared (fever, symptoms, travel, contact with a case) and the
// authority's risk data (case and close-contact lists, risk areas), by
// rules that are data (a JSON rules file; configs/rules.json is the
// default written out, docs/authority.md describes it). It is pure: no
// I/O, and the time is always the caller's. The authority's server
// (internal/authority) imports it; so do cmd/authority, to check a rules
// file, and the feed parser, for its dates.
//
// Each trigger that applies gives a colour and a quarantine: the worst
// colour wins and the latest end of quarantine wins. A colour never turns
// green on the risk data alone: only a declaration that triggers nothing,
// made once every quarantine in force has ended, does.
package rules

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/checkpointd/checkpoint/internal/credential"
	"github.com/checkpointd/checkpoint/verify"
)

// Trigger is a reason a colour is not green: a reason code holders see.
type Trigger string

// The triggers, in the order reasons are listed.
const (
	Case             Trigger = "case"              // on a case list
	CloseContact     Trigger = "close_contact"     // on a close-contact list
	RiskAreaTravel   Trigger = "risk_area_travel"  // declared a visit to a listed risk area
	DeclaredFever    Trigger = "declared_fever"    // declared a fever
	DeclaredSymptoms Trigger = "declared_symptoms" // declared symptoms
	DeclaredContact  Trigger = "declared_contact"  // declared contact with a case
)

// Triggers are all the triggers, in reason order.
var Triggers = []Trigger{Case, CloseContact, RiskAreaTravel, DeclaredFever, DeclaredSymptoms, DeclaredContact}

// CleanDeclaration is the reason of a green colour: a declaration that
// triggered nothing, with no quarantine in force.
const CleanDeclaration = "clean_declaration"

// fromLists reports whether t comes from the authority's lists (feeds)
// rather than from a declaration.
func fromLists(t Trigger) bool { return t == Case || t == CloseContact }

// Duration is a time.Duration written in JSON as Go duration text
// ("336h"), as in the checkpoint's policy files.
type Duration = verify.Duration

// Colour is a colour written in JSON as "green", "yellow" or "red".
type Colour credential.Status

// MarshalText writes the colour's name.
func (c Colour) MarshalText() ([]byte, error) { return []byte(credential.Status(c).String()), nil }

// UnmarshalText reads a colour's name.
func (c *Colour) UnmarshalText(b []byte) error {
	s, err := credential.ParseStatus(string(b))
	if err != nil {
		return err
	}
	*c = Colour(s)
	return nil
}

// Rule is what one trigger gives: a colour (green: the trigger is off)
// and a quarantine, counted from the exposure (the listing's since, the
// end of the visit, the declaration).
type Rule struct {
	Colour     Colour   `json:"colour"`
	Quarantine Duration `json:"quarantine"`
	// Lookback is how far back declared visits count (risk_area_travel
	// only).
	Lookback Duration `json:"lookback,omitempty"`
}

// Rules are the authority's rules, as data.
type Rules struct {
	// DeclarationInterval is the least time between two declarations of a
	// holder (the seed's once a day), except as NextDeclaration says.
	DeclarationInterval Duration `json:"declaration_interval"`
	Case                Rule     `json:"case"`
	CloseContact        Rule     `json:"close_contact"`
	RiskAreaTravel      Rule     `json:"risk_area_travel"`
	DeclaredFever       Rule     `json:"declared_fever"`
	DeclaredSymptoms    Rule     `json:"declared_symptoms"`
	DeclaredContact     Rule     `json:"declared_contact"`
}

const day = 24 * time.Hour

// Default returns the reference rules: a case is red for 14 days from
// its listing's date, a close contact yellow for 14 days, a visit to a
// listed risk area in the last 14 days yellow for 14 days from the
// visit, a declared contact with a case yellow for 14 days, a declared
// fever or symptoms yellow for 3 days; one declaration a day.
// configs/rules.json is this, written out.
func Default() Rules {
	two := Duration(14 * day)
	return Rules{
		DeclarationInterval: Duration(day),
		Case:                Rule{Colour: Colour(credential.Red), Quarantine: two},
		CloseContact:        Rule{Colour: Colour(credential.Yellow), Quarantine: two},
		RiskAreaTravel:      Rule{Colour: Colour(credential.Yellow), Quarantine: two, Lookback: two},
		DeclaredFever:       Rule{Colour: Colour(credential.Yellow), Quarantine: Duration(3 * day)},
		DeclaredSymptoms:    Rule{Colour: Colour(credential.Yellow), Quarantine: Duration(3 * day)},
		DeclaredContact:     Rule{Colour: Colour(credential.Yellow), Quarantine: two},
	}
}

// ErrRules is a rules file that cannot be used (wrapped with the reason).
var ErrRules = errors.New("rules")

// maxDuration bounds every duration of the rules.
const maxDuration = 366 * day

// Parse reads a rules file written as JSON. Fields it leaves out keep
// their defaults (a rule's fields one by one); unknown fields are errors.
func Parse(data []byte) (Rules, error) {
	r := Default()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return Rules{}, fmt.Errorf("%w: %v", ErrRules, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Rules{}, fmt.Errorf("%w: more than one JSON value", ErrRules)
	}
	if err := r.Validate(); err != nil {
		return Rules{}, err
	}
	return r, nil
}

// Validate checks the rules, naming the key of the first one out of range.
func (r Rules) Validate() error {
	if d := time.Duration(r.DeclarationInterval); d < time.Second || d > 7*day {
		return fmt.Errorf("%w: declaration_interval %v is outside 1s to 168h", ErrRules, d)
	}
	for _, t := range Triggers {
		rule := r.rule(t)
		switch c := credential.Status(rule.Colour); {
		case c < credential.Green || c > credential.Red:
			return fmt.Errorf("%w: %s: a colour (green, yellow or red) is required", ErrRules, t)
		case rule.Quarantine < Duration(time.Second) || rule.Quarantine > Duration(maxDuration):
			return fmt.Errorf("%w: %s: quarantine %v is outside 1s to 8784h", ErrRules, t, time.Duration(rule.Quarantine))
		case t == RiskAreaTravel && (rule.Lookback < Duration(time.Second) || rule.Lookback > Duration(maxDuration)):
			return fmt.Errorf("%w: %s: lookback %v is outside 1s to 8784h", ErrRules, t, time.Duration(rule.Lookback))
		case t != RiskAreaTravel && rule.Lookback != 0:
			return fmt.Errorf("%w: %s: only risk_area_travel has a lookback", ErrRules, t)
		}
	}
	return nil
}

func (r *Rules) rule(t Trigger) Rule {
	switch t {
	case Case:
		return r.Case
	case CloseContact:
		return r.CloseContact
	case RiskAreaTravel:
		return r.RiskAreaTravel
	case DeclaredFever:
		return r.DeclaredFever
	case DeclaredSymptoms:
		return r.DeclaredSymptoms
	case DeclaredContact:
		return r.DeclaredContact
	}
	return Rule{}
}

// Hold is a trigger that applied: the colour it gives and the end of its
// quarantine.
type Hold struct {
	Reason Trigger
	Colour credential.Status
	End    time.Time
}

// State is what the authority holds about a subject's colour.
type State struct {
	// Colour is 0 until the subject was first assessed.
	Colour credential.Status
	// Since is when the colour last changed.
	Since time.Time
	// Reasons are the triggers in force when the colour was last
	// assessed (CleanDeclaration for green), in Triggers order.
	Reasons []string
	// QuarantineEnd is the latest end of the holds' quarantines (zero
	// when there are none).
	QuarantineEnd time.Time
	// Holds are the triggers that applied and have not been cleared by a
	// clean declaration.
	Holds []Hold
	// LastDeclaration is the time of the subject's last declaration.
	LastDeclaration time.Time
	// DeclareNow allows the next declaration at once: risk data changed
	// the colour, or a new holder key was registered, since the last
	// declaration.
	DeclareNow bool
}

// Visit is a place a holder declared being at: a region code (GB/T 2260,
// any level) on a calendar day (Day is its start; see Zone).
type Visit struct {
	Region string
	Day    time.Time
}

// Area is a risk area on a list: a region code, risky from From until To
// (To excluded; zero: still listed, with no end yet).
type Area struct {
	Region   string
	From, To time.Time
}

// Declaration is a holder's declaration at At.
type Declaration struct {
	At       time.Time
	Fever    bool
	Symptoms bool
	Contact  bool // contact with a case
	Travel   []Visit
}

// Facts are the authority's risk data about a subject: since when it is
// on the case list and on the close-contact list (zero: not on it), and
// the listed risk areas that may concern the declaration's visits (the
// caller may give more; only those that match count).
type Facts struct {
	Case         time.Time
	CloseContact time.Time
	Areas        []Area
}

// Contains reports whether a visit to region falls within listed area
// area, or the other way round: a holder who names only a city where a
// community is listed counts as having been in it. Both are codes as
// Region returns them.
func Contains(area, region string) bool {
	return strings.HasPrefix(region, area) || strings.HasPrefix(area, region)
}

// listHolds are the holds the lists give at now: those whose quarantine
// has not ended.
func (r *Rules) listHolds(f Facts, now time.Time) []Hold {
	var out []Hold
	for _, l := range []struct {
		t     Trigger
		since time.Time
	}{{Case, f.Case}, {CloseContact, f.CloseContact}} {
		if l.since.IsZero() {
			continue
		}
		rule := r.rule(l.t)
		if end := l.since.Add(time.Duration(rule.Quarantine)); end.After(now) {
			out = append(out, Hold{l.t, credential.Status(rule.Colour), end})
		}
	}
	return out
}

// declarationHolds are the holds a declaration gives: a declared fever,
// symptoms or contact from the declaration's time; a visit to a listed
// area within the lookback, from the last moment of the visit within the
// listing, while its quarantine has not ended.
func (r *Rules) declarationHolds(f Facts, d Declaration) []Hold {
	var out []Hold
	for _, x := range []struct {
		t  Trigger
		on bool
	}{{DeclaredFever, d.Fever}, {DeclaredSymptoms, d.Symptoms}, {DeclaredContact, d.Contact}} {
		if x.on {
			rule := r.rule(x.t)
			out = append(out, Hold{x.t, credential.Status(rule.Colour), d.At.Add(time.Duration(rule.Quarantine))})
		}
	}
	rule := r.RiskAreaTravel
	since := d.At.Add(-time.Duration(rule.Lookback))
	for _, v := range d.Travel {
		start, end := v.Day, v.Day.AddDate(0, 0, 1)
		if !end.After(since) || start.After(d.At) {
			continue // outside the lookback, or a day to come
		}
		for _, a := range f.Areas {
			open := a.To.IsZero()
			if !Contains(a.Region, v.Region) || !a.From.Before(end) || (!open && !start.Before(a.To)) {
				continue
			}
			exposed := earliest(end, d.At)
			if !open {
				exposed = earliest(exposed, a.To)
			}
			if q := exposed.Add(time.Duration(rule.Quarantine)); q.After(d.At) {
				out = append(out, Hold{RiskAreaTravel, credential.Status(rule.Colour), q})
			}
		}
	}
	return out
}

// merge keeps one hold per trigger (the worst colour, the latest end),
// without the triggers that are off (green), in Triggers order.
func merge(hs []Hold) []Hold {
	var out []Hold
	for _, t := range Triggers {
		var m *Hold
		for _, h := range hs {
			if h.Reason != t || h.Colour <= credential.Green {
				continue
			}
			if m == nil {
				m = &Hold{Reason: t}
			}
			m.Colour = max(m.Colour, h.Colour)
			if h.End.After(m.End) {
				m.End = h.End
			}
		}
		if m != nil {
			out = append(out, *m)
		}
	}
	return out
}

// worst is the worst colour of hs (0 for none).
func worst(hs []Hold) credential.Status {
	var c credential.Status
	for _, h := range hs {
		c = max(c, h.Colour)
	}
	return c
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func latest(hs []Hold) time.Time {
	var t time.Time
	for _, h := range hs {
		if h.End.After(t) {
			t = h.End
		}
	}
	return t
}

func reasons(hs []Hold) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = string(h.Reason)
	}
	return out
}

// Declare assesses a declaration: the colour is the worst of the holds
// in force at d.At (those of earlier declarations whose quarantine has
// not ended, those the lists give now, and those of this declaration),
// the quarantine's end the latest of theirs. With none in force the
// declaration is clean and the colour green: every quarantine has ended
// and nothing new applies. The caller checks first that the declaration
// is allowed (NextDeclaration).
func (r *Rules) Declare(prev State, f Facts, d Declaration) State {
	var hs []Hold
	for _, h := range prev.Holds {
		if !fromLists(h.Reason) && h.End.After(d.At) {
			hs = append(hs, h)
		}
	}
	hs = append(hs, r.listHolds(f, d.At)...)
	hs = merge(append(hs, r.declarationHolds(f, d)...))
	next := State{Holds: hs, LastDeclaration: d.At, Since: prev.Since}
	if len(hs) == 0 {
		next.Colour, next.Reasons, next.Holds = credential.Green, []string{CleanDeclaration}, nil
	} else {
		next.Colour, next.Reasons, next.QuarantineEnd = worst(hs), reasons(hs), latest(hs)
	}
	if next.Colour != prev.Colour {
		next.Since = d.At
	}
	return next
}

// Reassess applies new risk data at now, between declarations: the holds
// the lists give now join those held (a quarantine may grow, never
// shrink); the colour becomes the worse of the one held and theirs, never
// better (only a clean declaration clears a colour, and the next
// declaration takes the lists as they are then). It reports whether
// anything changed.
func (r *Rules) Reassess(prev State, f Facts, now time.Time) (State, bool) {
	lists := r.listHolds(f, now)
	hs := merge(append(slices.Clone(prev.Holds), lists...))
	next := prev
	next.Holds = hs
	next.Colour = max(prev.Colour, worst(lists))
	if next.Colour != prev.Colour {
		next.Since, next.DeclareNow = now, true
	}
	var inForce []Hold
	for _, h := range hs {
		if h.End.After(now) {
			inForce = append(inForce, h)
		}
	}
	if len(inForce) > 0 {
		next.Reasons = reasons(inForce)
	}
	next.QuarantineEnd = latest(hs)
	if len(hs) == 0 {
		next.QuarantineEnd = prev.QuarantineEnd
	}
	changed := next.Colour != prev.Colour || !slices.Equal(next.Reasons, prev.Reasons) ||
		!next.QuarantineEnd.Equal(prev.QuarantineEnd) || !slices.EqualFunc(next.Holds, prev.Holds, sameHold)
	if !changed {
		return prev, false
	}
	return next, true
}

func sameHold(a, b Hold) bool {
	return a.Reason == b.Reason && a.Colour == b.Colour && a.End.Equal(b.End)
}

// NextDeclaration returns when the subject may next declare; zero means
// now. One declaration per DeclarationInterval, except that a colour
// changed by risk data or a holder key registered since the last
// declaration (DeclareNow) allows the next one at once, and a quarantine
// that ends within the interval allows it at the quarantine's end: the
// once-a-day rule limits corrections, and never keeps a holder from
// declaring on news, or from the clean declaration that ends a
// quarantine.
func (r *Rules) NextDeclaration(s State) time.Time {
	last := s.LastDeclaration
	if last.IsZero() || s.DeclareNow {
		return time.Time{}
	}
	next := last.Add(time.Duration(r.DeclarationInterval))
	if end := s.QuarantineEnd; end.After(last) && end.Before(next) {
		next = end
	}
	return next
}

// Zone is the time zone of calendar dates in declarations and feeds:
// China Standard Time (UTC+8, no daylight saving).
var Zone = time.FixedZone("CST", 8*3600)

// ParseDay reads a calendar date, YYYY-MM-DD, as the start of that day in
// Zone.
func ParseDay(s string) (time.Time, error) {
	if len(s) != len("2006-01-02") {
		return time.Time{}, fmt.Errorf("date %q: want YYYY-MM-DD", s)
	}
	t, err := time.ParseInLocation("2006-01-02", s, Zone)
	if err != nil {
		return time.Time{}, fmt.Errorf("date %q: want YYYY-MM-DD", s)
	}
	return t, nil
}

// ParseTime reads a calendar date (the start of the day in Zone) or an
// RFC 3339 time.
func ParseTime(s string) (time.Time, error) {
	if len(s) == len("2006-01-02") {
		return ParseDay(s)
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("time %q: want YYYY-MM-DD or RFC 3339", s)
	}
	return t, nil
}

// regionLevels are the lengths of GB/T 2260 codes (with the statistical
// extension): province, city, county, township, village.
var regionLevels = []int{2, 4, 6, 9, 12}

// Region reads a region code: GB/T 2260, of 2, 4, 6, 9 or 12 digits (a
// province, a city, a county, a township, a village). Trailing levels of
// zeros name no smaller area and are dropped: 440000 is 44, 440300 is
// 4403, 440304003000 is 440304003. Codes written at any of these lengths
// are then contained in each other as prefixes (Contains), as their
// areas are.
func Region(s string) (string, bool) {
	i := slices.Index(regionLevels, len(s))
	if i < 0 || strings.Trim(s, "0123456789") != "" {
		return "", false
	}
	for ; i > 0 && strings.Trim(s[regionLevels[i-1]:], "0") == ""; i-- {
		s = s[:regionLevels[i-1]]
	}
	return s, true
}
