package rules

import (
	"encoding/json"
	"errors"
	"flag"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/checkpointd/checkpoint/internal/credential"
)

var update = flag.Bool("update", false, "rewrite configs/rules.json")

// The rules file in configs/ is the default, written out: an operator can
// start from it and know what they change.
func TestExampleRulesAreTheDefault(t *testing.T) {
	want, err := json.MarshalIndent(Default(), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	want = append(want, '\n')
	const path = "../../configs/rules.json"
	if *update {
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Errorf("%s differs from Default (go test ./internal/rules -update rewrites it)", path)
	}
	r, err := Parse(got)
	if err != nil || r != Default() {
		t.Errorf("%s parses to %+v, %v", path, r, err)
	}
}

// TestParse: fields left out keep their defaults, one by one; a rule out
// of range or an unknown field is an error naming it.
func TestParse(t *testing.T) {
	r, err := Parse([]byte(`{"close_contact": {"quarantine": "20s"}, "declared_fever": {"colour": "green"}}`))
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.CloseContact.Quarantine = Duration(20 * time.Second)
	want.DeclaredFever.Colour = Colour(credential.Green)
	if r != want {
		t.Errorf("got %+v, want %+v", r, want)
	}
	for data, mention := range map[string]string{
		`{"case": {"colour": "purple"}}`:             "purple",
		`{"case": {"quarantine": "0s"}}`:             "case: quarantine",
		`{"close_contact": {"quarantine": "9000h"}}`: "close_contact: quarantine",
		`{"risk_area_travel": {"lookback": "-1h"}}`:  "risk_area_travel: lookback",
		`{"declared_fever": {"lookback": "24h"}}`:    "only risk_area_travel",
		`{"declaration_interval": "200h"}`:           "declaration_interval",
		`{"declaration_interval": "soon"}`:           "soon",
		`{"quarantine_all": "1h"}`:                   "quarantine_all",
		`{"case": {"colour": "red"}} {"case": {}}`:   "more than one",
		`[]`: "rules",
		`{"case": {"colour": "red", "quarantine": 5}}`:   "quarantine",
		`{"declared_contact": {"quarantine": "-336h"}}`:  "declared_contact",
		`{"declared_symptoms": {"quarantine": "336x"}}`:  "336x",
		`{"risk_area_travel": {"quarantine": "336h"}`:    "rules",
		`{"case": {"colour": "red", "unknown": true}}`:   "unknown",
		`{"case": {"colour": ""}}`:                       "colour",
		`{"close_contact": {"colour": "yellow "}}`:       "yellow ",
		`{"declared_fever": {"quarantine": "1ms"}}`:      "declared_fever: quarantine",
		`{"risk_area_travel": {"lookback": "10000h"}}`:   "lookback",
		`{"declaration_interval": "0s"}`:                 "declaration_interval",
		`{"case": {"colour": "Red"}}`:                    "Red",
		`{"close_contact": {"colour": "green", "x": 1}}`: "x",
	} {
		_, err := Parse([]byte(data))
		if !errors.Is(err, ErrRules) || !strings.Contains(err.Error(), mention) {
			t.Errorf("Parse(%s): %v; want an error naming %q", data, err, mention)
		}
	}
}

var (
	now   = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	today = time.Date(2026, 11, 25, 0, 0, 0, 0, Zone)
)

func days(n int) time.Duration { return time.Duration(n) * 24 * time.Hour }

// A listed area: Baiyun district of Guangzhou, from five days ago, still
// listed.
var baiyun = Area{Region: "440111", From: today.AddDate(0, 0, -5)}

// TestDeclareTable: each trigger alone and in combination gives the
// documented colour, reasons and end of quarantine (the default rules:
// docs/authority.md).
func TestDeclareTable(t *testing.T) {
	r := Default()
	q := func(d time.Duration) time.Time { return now.Add(d) }
	yesterdayEnds := today // the end of yesterday
	for _, tc := range []struct {
		name    string
		prev    State
		facts   Facts
		decl    Declaration
		colour  credential.Status
		reasons []string
		end     time.Time
	}{
		{name: "clean, nothing known", colour: credential.Green, reasons: []string{"clean_declaration"}},
		{name: "fever", decl: Declaration{Fever: true}, colour: credential.Yellow,
			reasons: []string{"declared_fever"}, end: q(days(3))},
		{name: "symptoms", decl: Declaration{Symptoms: true}, colour: credential.Yellow,
			reasons: []string{"declared_symptoms"}, end: q(days(3))},
		{name: "contact with a case", decl: Declaration{Contact: true}, colour: credential.Yellow,
			reasons: []string{"declared_contact"}, end: q(days(14))},
		{name: "visit to a listed area yesterday", facts: Facts{Areas: []Area{baiyun}},
			decl:   Declaration{Travel: []Visit{{"440111", today.AddDate(0, 0, -1)}}},
			colour: credential.Yellow, reasons: []string{"risk_area_travel"}, end: yesterdayEnds.Add(days(14))},
		{name: "visit to a community within a listed district", facts: Facts{Areas: []Area{baiyun}},
			decl:   Declaration{Travel: []Visit{{"440111004", today.AddDate(0, 0, -1)}}},
			colour: credential.Yellow, reasons: []string{"risk_area_travel"}, end: yesterdayEnds.Add(days(14))},
		{name: "a visit naming only the city of a listed district", facts: Facts{Areas: []Area{baiyun}},
			decl:   Declaration{Travel: []Visit{{"4401", today.AddDate(0, 0, -1)}}},
			colour: credential.Yellow, reasons: []string{"risk_area_travel"}, end: yesterdayEnds.Add(days(14))},
		{name: "a visit today counts from now", facts: Facts{Areas: []Area{baiyun}},
			decl:   Declaration{Travel: []Visit{{"440111", today}}},
			colour: credential.Yellow, reasons: []string{"risk_area_travel"}, end: q(days(14))},
		{name: "a visit to another district of the city", facts: Facts{Areas: []Area{baiyun}},
			decl:   Declaration{Travel: []Visit{{"440106", today.AddDate(0, 0, -1)}}},
			colour: credential.Green, reasons: []string{"clean_declaration"}},
		{name: "a visit before the area was listed", facts: Facts{Areas: []Area{baiyun}},
			decl:   Declaration{Travel: []Visit{{"440111", today.AddDate(0, 0, -6)}}},
			colour: credential.Green, reasons: []string{"clean_declaration"}},
		{name: "a visit after the listing ended",
			facts:  Facts{Areas: []Area{{Region: "440111", From: today.AddDate(0, 0, -9), To: today.AddDate(0, 0, -3)}}},
			decl:   Declaration{Travel: []Visit{{"440111", today.AddDate(0, 0, -3)}}},
			colour: credential.Green, reasons: []string{"clean_declaration"}},
		{name: "a visit on the listing's last day counts to its end",
			facts:  Facts{Areas: []Area{{Region: "440111", From: today.AddDate(0, 0, -9), To: today.AddDate(0, 0, -3).Add(12 * time.Hour)}}},
			decl:   Declaration{Travel: []Visit{{"440111", today.AddDate(0, 0, -3)}}},
			colour: credential.Yellow, reasons: []string{"risk_area_travel"}, end: today.AddDate(0, 0, -3).Add(12*time.Hour + days(14))},
		{name: "a visit beyond the lookback",
			facts:  Facts{Areas: []Area{{Region: "440111", From: today.AddDate(0, 0, -30)}}},
			decl:   Declaration{Travel: []Visit{{"440111", today.AddDate(0, 0, -20)}}},
			colour: credential.Green, reasons: []string{"clean_declaration"}},
		{name: "a listed area and no visit", facts: Facts{Areas: []Area{baiyun}},
			colour: credential.Green, reasons: []string{"clean_declaration"}},
		{name: "on the case list", facts: Facts{Case: now.Add(-days(1))}, colour: credential.Red,
			reasons: []string{"case"}, end: now.Add(days(13))},
		{name: "on the close-contact list", facts: Facts{CloseContact: now.Add(-days(2))}, colour: credential.Yellow,
			reasons: []string{"close_contact"}, end: now.Add(days(12))},
		{name: "a case whose quarantine has ended", facts: Facts{Case: now.Add(-days(15))},
			colour: credential.Green, reasons: []string{"clean_declaration"}},
		{name: "a case who declares a fever: the worst colour, the latest end",
			facts: Facts{Case: now.Add(-days(12))}, decl: Declaration{Fever: true},
			colour: credential.Red, reasons: []string{"case", "declared_fever"}, end: q(days(3))},
		{name: "a close contact with symptoms and a visit",
			facts:  Facts{CloseContact: now.Add(-days(1)), Areas: []Area{baiyun}},
			decl:   Declaration{Symptoms: true, Travel: []Visit{{"440111", today.AddDate(0, 0, -2)}}},
			colour: credential.Yellow, reasons: []string{"close_contact", "risk_area_travel", "declared_symptoms"},
			end: now.Add(days(13))},
		{name: "everything at once", facts: Facts{Case: now, CloseContact: now, Areas: []Area{baiyun}},
			decl:   Declaration{Fever: true, Symptoms: true, Contact: true, Travel: []Visit{{"440111", today}}},
			colour: credential.Red, reasons: []string{"case", "close_contact", "risk_area_travel", "declared_fever",
				"declared_symptoms", "declared_contact"}, end: q(days(14))},
		{name: "yellow from a fever, quarantine on, clean declaration: still yellow",
			prev: State{Colour: credential.Yellow, Since: now.Add(-days(1)), LastDeclaration: now.Add(-days(1)),
				Holds: []Hold{{DeclaredFever, credential.Yellow, now.Add(days(2))}}},
			colour: credential.Yellow, reasons: []string{"declared_fever"}, end: now.Add(days(2))},
		{name: "yellow from a fever, quarantine over, clean declaration: green",
			prev: State{Colour: credential.Yellow, Since: now.Add(-days(4)), LastDeclaration: now.Add(-days(4)),
				Holds: []Hold{{DeclaredFever, credential.Yellow, now.Add(-days(1))}}},
			colour: credential.Green, reasons: []string{"clean_declaration"}},
		{name: "yellow from a fever, quarantine over, symptoms declared: yellow again",
			prev: State{Colour: credential.Yellow, Since: now.Add(-days(4)), LastDeclaration: now.Add(-days(4)),
				Holds: []Hold{{DeclaredFever, credential.Yellow, now.Add(-days(1))}}},
			decl:   Declaration{Symptoms: true},
			colour: credential.Yellow, reasons: []string{"declared_symptoms"}, end: q(days(3))},
		{name: "red from the case list, still listed within the quarantine, clean declaration: red",
			prev: State{Colour: credential.Red, Since: now.Add(-days(3)),
				Holds: []Hold{{Case, credential.Red, now.Add(days(11))}}},
			facts:  Facts{Case: now.Add(-days(3))},
			colour: credential.Red, reasons: []string{"case"}, end: now.Add(days(11))},
		{name: "red from the case list, quarantine over, clean declaration: green",
			prev: State{Colour: credential.Red, Since: now.Add(-days(15)),
				Holds: []Hold{{Case, credential.Red, now.Add(-days(1))}}},
			facts:  Facts{Case: now.Add(-days(15))},
			colour: credential.Green, reasons: []string{"clean_declaration"}},
		{name: "red turns yellow: the case's quarantine over, a declared fever's on",
			prev: State{Colour: credential.Red, Since: now.Add(-days(15)),
				Holds: []Hold{{Case, credential.Red, now.Add(-time.Hour)}, {DeclaredFever, credential.Yellow, now.Add(days(1))}}},
			facts:  Facts{Case: now.Add(-days(14) - time.Hour)},
			colour: credential.Yellow, reasons: []string{"declared_fever"}, end: now.Add(days(1))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.decl.At = now
			got := r.Declare(tc.prev, tc.facts, tc.decl)
			if got.Colour != tc.colour || !slices.Equal(got.Reasons, tc.reasons) || !got.QuarantineEnd.Equal(tc.end) {
				t.Errorf("got %s %v until %v; want %s %v until %v", got.Colour, got.Reasons, got.QuarantineEnd,
					tc.colour, tc.reasons, tc.end)
			}
			if !got.LastDeclaration.Equal(now) {
				t.Errorf("last declaration %v", got.LastDeclaration)
			}
			if changed := got.Colour != tc.prev.Colour; changed != got.Since.Equal(now) {
				t.Errorf("colour %s -> %s, but since %v", tc.prev.Colour, got.Colour, got.Since)
			}
		})
	}
}

// TestTriggerOff: a trigger whose colour is green gives nothing.
func TestTriggerOff(t *testing.T) {
	r := Default()
	r.DeclaredFever.Colour = Colour(credential.Green)
	got := r.Declare(State{}, Facts{}, Declaration{At: now, Fever: true})
	if got.Colour != credential.Green || len(got.Holds) != 0 {
		t.Errorf("a fever with the trigger off: %+v", got)
	}
}

// TestReassessTable: new risk data between declarations can only make a
// colour worse, and says so only when something changed.
func TestReassessTable(t *testing.T) {
	r := Default()
	green := State{Colour: credential.Green, Since: now.Add(-days(1)), Reasons: []string{CleanDeclaration},
		LastDeclaration: now.Add(-days(1))}
	fever := State{Colour: credential.Yellow, Since: now.Add(-days(1)), Reasons: []string{"declared_fever"},
		LastDeclaration: now.Add(-days(1)), QuarantineEnd: now.Add(days(2)),
		Holds: []Hold{{DeclaredFever, credential.Yellow, now.Add(days(2))}}}
	red := State{Colour: credential.Red, Since: now.Add(-days(20)), Reasons: []string{"case"},
		QuarantineEnd: now.Add(-days(6)), Holds: []Hold{{Case, credential.Red, now.Add(-days(6))}}}
	for _, tc := range []struct {
		name    string
		prev    State
		facts   Facts
		changed bool
		colour  credential.Status
		reasons []string
		end     time.Time
	}{
		{"green, named a close contact", green, Facts{CloseContact: now}, true, credential.Yellow,
			[]string{"close_contact"}, now.Add(days(14))},
		{"green, named a case", green, Facts{Case: now.Add(-days(1))}, true, credential.Red,
			[]string{"case"}, now.Add(days(13))},
		{"yellow from a fever, named a case", fever, Facts{Case: now}, true, credential.Red,
			[]string{"case", "declared_fever"}, now.Add(days(14))},
		{"yellow from a fever, named a close contact: yellow, a later end", fever, Facts{CloseContact: now}, true,
			credential.Yellow, []string{"close_contact", "declared_fever"}, now.Add(days(14))},
		{"red, its listing over: never better without a declaration", red, Facts{Case: now.Add(-days(20))}, false,
			credential.Red, []string{"case"}, now.Add(-days(6))},
		{"nobody yet, named a close contact", State{}, Facts{CloseContact: now}, true, credential.Yellow,
			[]string{"close_contact"}, now.Add(days(14))},
		{"nobody yet, named with a quarantine already over", State{}, Facts{CloseContact: now.Add(-days(15))}, false,
			0, nil, time.Time{}},
		{"green, a listing already over", green, Facts{Case: now.Add(-days(30))}, false, credential.Green,
			[]string{CleanDeclaration}, time.Time{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, changed := r.Reassess(tc.prev, tc.facts, now)
			if changed != tc.changed || got.Colour != tc.colour || !slices.Equal(got.Reasons, tc.reasons) ||
				!got.QuarantineEnd.Equal(tc.end) {
				t.Errorf("got %v %s %v until %v; want %v %s %v until %v", changed, got.Colour, got.Reasons,
					got.QuarantineEnd, tc.changed, tc.colour, tc.reasons, tc.end)
			}
			if !changed && !reflect.DeepEqual(got, tc.prev) {
				t.Errorf("unchanged, yet %+v", got)
			}
			// The same data again changes nothing.
			if again, changed := r.Reassess(got, tc.facts, now); changed || !reflect.DeepEqual(again, got) {
				t.Errorf("the same data applied twice changed %+v to %+v", got, again)
			}
		})
	}
}

// TestNextDeclaration: once per interval, except after news.
func TestNextDeclaration(t *testing.T) {
	r := Default()
	last := now.Add(-time.Hour)
	for _, tc := range []struct {
		name string
		s    State
		want time.Time
	}{
		{"never declared", State{}, time.Time{}},
		{"declared an hour ago", State{LastDeclaration: last, Since: last}, last.Add(days(1))},
		{"the colour changed since by risk data, or a new phone", State{LastDeclaration: last, Since: last, DeclareNow: true},
			time.Time{}},
		{"a quarantine that ends within the day", State{LastDeclaration: last, Since: last, QuarantineEnd: now.Add(2 * time.Hour)},
			now.Add(2 * time.Hour)},
		{"a quarantine that ends later", State{LastDeclaration: last, Since: last, QuarantineEnd: now.Add(days(2))},
			last.Add(days(1))},
		{"a quarantine that ended before the last declaration", State{LastDeclaration: last, Since: last,
			QuarantineEnd: last.Add(-time.Minute)}, last.Add(days(1))},
	} {
		if got := r.NextDeclaration(tc.s); !got.Equal(tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	// A declaration clears DeclareNow.
	if s := r.Declare(State{DeclareNow: true}, Facts{}, Declaration{At: now}); s.DeclareNow {
		t.Error("a declaration left DeclareNow set")
	}
}

// TestQuarantineEndsOnlyWithACleanDeclaration walks a close contact
// through their quarantine: yellow at once, yellow on a clean declaration
// within it, still yellow after it until they declare, and green on a
// clean declaration after its end.
func TestQuarantineEndsOnlyWithACleanDeclaration(t *testing.T) {
	r := Default()
	r.CloseContact.Quarantine = Duration(20 * time.Second)
	s := r.Declare(State{}, Facts{}, Declaration{At: now})
	if s.Colour != credential.Green {
		t.Fatalf("first declaration: %s", s.Colour)
	}
	named := now.Add(time.Minute)
	facts := Facts{CloseContact: named}
	s, changed := r.Reassess(s, facts, now) // in the second of the declaration
	if !changed || s.Colour != credential.Yellow || !s.DeclareNow {
		t.Fatalf("named a close contact: %v %s", changed, s.Colour)
	}
	if next := r.NextDeclaration(s); !next.IsZero() {
		t.Errorf("after the colour changed the holder must be able to declare at once, not at %v", next)
	}
	within := named.Add(10 * time.Second)
	s = r.Declare(s, facts, Declaration{At: within})
	if s.Colour != credential.Yellow || !s.QuarantineEnd.Equal(named.Add(20*time.Second)) {
		t.Fatalf("clean declaration within the quarantine: %s until %v", s.Colour, s.QuarantineEnd)
	}
	if next := r.NextDeclaration(s); !next.Equal(s.QuarantineEnd) {
		t.Errorf("next declaration %v, want the quarantine's end %v", next, s.QuarantineEnd)
	}
	after := named.Add(30 * time.Second)
	if s2, changed := r.Reassess(s, facts, after); changed || s2.Colour != credential.Yellow {
		t.Errorf("the quarantine's end alone: %v %s", changed, s2.Colour)
	}
	s = r.Declare(s, facts, Declaration{At: after})
	if s.Colour != credential.Green || !s.Since.Equal(after) || !slices.Equal(s.Reasons, []string{CleanDeclaration}) {
		t.Errorf("clean declaration after the quarantine: %s since %v %v", s.Colour, s.Since, s.Reasons)
	}
}

func TestParseTime(t *testing.T) {
	d, err := ParseDay("2026-11-20")
	if err != nil || !d.Equal(time.Date(2026, 11, 19, 16, 0, 0, 0, time.UTC)) {
		t.Errorf("ParseDay: %v %v", d, err)
	}
	if tm, err := ParseTime("2026-11-20T08:00:00Z"); err != nil || !tm.Equal(time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)) {
		t.Errorf("ParseTime: %v %v", tm, err)
	}
	for _, bad := range []string{"", "2026-13-01", "2026-11-20 ", "20261120", "2026-11-20T08:00:00", "yesterday"} {
		if _, err := ParseTime(bad); err == nil {
			t.Errorf("ParseTime(%q) accepted", bad)
		}
	}
	for s, want := range map[string]bool{"44": true, "440111004001": true, "4": false, "4401110040011": false, "44a1": false, "": false,
		"440": false, "44011": false, "4401110": false, "44011100": false, "4401110040": false, "44011100400": false} {
		if _, ok := Region(s); ok != want {
			t.Errorf("Region(%q) ok = %v", s, !want)
		}
	}
}

// TestRegion: trailing levels of zeros are dropped, so that codes written
// at any length contain each other as their areas do.
func TestRegion(t *testing.T) {
	for in, want := range map[string]string{"44": "44", "440000": "44", "4400": "44", "440300": "4403", "440304": "440304",
		"440304000": "440304", "440304003000": "440304003", "440304003001": "440304003001", "441900003000": "441900003",
		"110100": "1101", "000000": "00"} {
		if got, ok := Region(in); !ok || got != want {
			t.Errorf("Region(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	for _, c := range []struct {
		area, visit string
		want        bool
	}{
		{"440300", "440304", true}, {"440304003000", "440304003001", true}, {"440000", "440304", true},
		{"440304", "440300000000", true}, {"440300", "440100", false}, {"440304003000", "440304004001", false},
	} {
		a, _ := Region(c.area)
		v, _ := Region(c.visit)
		if Contains(a, v) != c.want {
			t.Errorf("Contains(%s, %s) = %v", c.area, c.visit, !c.want)
		}
	}
}

// FuzzParse: any input parses to valid rules or fails cleanly, and valid
// rules written out parse back to themselves.
func FuzzParse(f *testing.F) {
	b, _ := json.Marshal(Default())
	f.Add(b)
	f.Add([]byte(`{"close_contact": {"quarantine": "20s"}}`))
	f.Add([]byte(`{"case": {"colour": "green", "quarantine": "1s"}, "declaration_interval": "1s"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := Parse(data)
		if err != nil {
			if !errors.Is(err, ErrRules) {
				t.Fatalf("error not wrapping ErrRules: %v", err)
			}
			return
		}
		if err := r.Validate(); err != nil {
			t.Fatalf("parsed rules do not validate: %v", err)
		}
		out, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		back, err := Parse(out)
		if err != nil || back != r {
			t.Fatalf("round trip: %+v, %v", back, err)
		}
	})
}
