package passage

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/checkpointd/checkpoint/hardware"
	"github.com/checkpointd/checkpoint/internal/credential"
	"github.com/checkpointd/checkpoint/internal/credential/credentialtest"
	"github.com/checkpointd/checkpoint/verify"
)

var update = flag.Bool("update", false, "rewrite configs/policy.json")

// The example policy in configs/ is the built-in one, written out: a
// technician can start from it and know what they change.
func TestExamplePolicyIsTheDefault(t *testing.T) {
	want, err := json.MarshalIndent(DefaultPolicy(), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	want = append(want, '\n')
	const path = "../configs/policy.json"
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
		t.Errorf("%s differs from DefaultPolicy (go test ./passage -update rewrites it)", path)
	}
	p, err := ParsePolicy(got)
	if err != nil || p != DefaultPolicy() {
		t.Errorf("%s parses to %+v, %v", path, p, err)
	}
}

// TestPolicyDefaults: the rules of the issue, as defaults.
func TestPolicyDefaults(t *testing.T) {
	p := DefaultPolicy()
	if !p.TemperatureRequired || p.FeverThreshold != 37.3 || p.SensorMin != 34.0 || p.SensorMax != 43.0 ||
		p.IDOnly != verify.Pass || p.IDCheck != IDNone || p.Policy != verify.DefaultPolicy() {
		t.Errorf("defaults %+v", p)
	}
}

// TestPolicyErrors: a rule out of range is a one-line error naming its key.
func TestPolicyErrors(t *testing.T) {
	for json, key := range map[string]string{
		`{"fever_threshold": 35.9}`:   "fever_threshold",
		`{"fever_threshold": 40.1}`:   "fever_threshold",
		`{"sensor_min": 37.5}`:        "sensor_min",
		`{"sensor_max": 37.0}`:        "sensor_max",
		`{"id_check": "camera"}`:      "id_check",
		`{"id_only": "maybe"}`:        "id_only",
		`{"passage_window": "0s"}`:    "passage_window",
		`{"code_window": "20s"}`:      "code_window",
		`{"fever": 38}`:               "fever",
		`{"presentation_window": -1}`: "presentation_window",
	} {
		_, err := ParsePolicy([]byte(json))
		if err == nil || !strings.Contains(err.Error(), key) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v (want a one-line error naming %s)", json, err, key)
		}
	}
	if p, err := ParsePolicy([]byte(`{"fever_threshold": 37.5, "id_check": "reader", "id_only": "refer"}`)); err != nil ||
		p.FeverThreshold != 37.5 || p.IDCheck != IDReader || p.IDOnly != verify.Refer || !p.TemperatureRequired {
		t.Errorf("a policy changing three rules: %+v %v", p, err)
	}
}

// codes are the verifications of the fixture holder's codes, made once.
type codes struct {
	f                                 *credentialtest.Fixture
	green, yellow, red, stale, forged verify.Decision
	paper                             verify.Decision
}

func newCodes() *codes {
	f := credentialtest.New()
	c := &codes{f: f}
	in := func(text string) verify.Decision {
		return verify.Verify(verify.Input{Text: text, Trust: f.Trust, Policy: verify.DefaultPolicy(), Now: verify.Instant{Time: f.Now}})
	}
	issued := func(edit func(*credential.Credential)) []byte { return f.Issue(f.Credential(edit)) }
	c.green = in(f.Text())
	// Each its own credential (id), as different people's are; the
	// screenshot is of the green one.
	c.yellow = in(f.Present(issued(func(c *credential.Credential) { c.Status = credential.Yellow; c.ID[0] = 2 }), f.Now))
	c.red = in(f.Present(issued(func(c *credential.Credential) { c.Status = credential.Red; c.ID[0] = 3 }), f.Now))
	c.stale = in(f.Present(issued(nil), f.Now.Add(-2*time.Minute)))
	c.forged = in(f.Present(f.IssueWith(f.Credential(nil), credentialtest.Key("forger")), f.Now))
	c.paper = in(credential.EncodeText(issued(func(c *credential.Credential) { c.HolderKey = nil })))
	return c
}

// The holder's number and another valid one.
const (
	theirs = credentialtest.IDNumber
	other  = "440305198805061238"
)

func reading(at time.Time, c float64) hardware.Reading {
	return hardware.Reading{Body: c, Source: "lane-1/thermometer", At: at}
}

// TestPassageTable: every combination of a code (or none), the
// temperature readings and the ID card gives the policy's decision with
// the right reasons, whatever order the card and the code come in.
func TestPassageTable(t *testing.T) {
	c := newCodes()
	t0 := c.f.Now
	codeCases := []struct {
		name    string
		dec     *verify.Decision
		outcome verify.Outcome
		reasons []verify.Reason
	}{
		{"green", &c.green, verify.Pass, nil},
		{"yellow", &c.yellow, verify.Refer, []verify.Reason{verify.StatusYellow}},
		{"red", &c.red, verify.Refuse, []verify.Reason{verify.StatusRed}},
		{"screenshot", &c.stale, verify.Refuse, []verify.Reason{verify.PresentationStale}},
		{"no code", nil, verify.Pass, nil},
	}
	tempCases := []struct {
		name    string
		temps   []float64
		outcome verify.Outcome
		reasons []verify.Reason
	}{
		{"no reading", nil, verify.Refer, []verify.Reason{verify.TemperatureMissing}},
		{"normal", []float64{36.5}, verify.Pass, nil},
		{"just below the threshold", []float64{37.2}, verify.Pass, nil},
		{"fever confirmed", []float64{38.2, 38.1}, verify.Refuse, []verify.Reason{verify.Fever}},
		{"fever at the threshold confirmed", []float64{37.3, 37.3}, verify.Refuse, []verify.Reason{verify.Fever}},
		{"fever, normal re-measure", []float64{37.6, 36.8}, verify.Pass, nil},
		{"fever, no re-measure", []float64{38.0}, verify.Refer, []verify.Reason{verify.TemperatureMissing}},
		{"sensor error, normal re-measure", []float64{12.5, 36.7}, verify.Pass, nil},
		{"sensor error, fever confirmed", []float64{45.0, 38.0, 38.3}, verify.Refuse, []verify.Reason{verify.Fever}},
		{"sensor error only", []float64{33.9}, verify.Refer, []verify.Reason{verify.TemperatureMissing}},
	}
	idCases := []struct {
		name    string
		number  string
		first   bool // the card before the code
		outcome verify.Outcome
		reasons []verify.Reason // for a code
	}{
		{"no card", "", false, verify.Pass, nil},
		{"matching card", theirs, false, verify.Pass, nil},
		{"matching card first", theirs, true, verify.Pass, nil},
		{"another's card", other, false, verify.Refuse, []verify.Reason{verify.IDMismatch}},
	}
	for _, code := range codeCases {
		for _, temp := range tempCases {
			for _, id := range idCases {
				if code.dec == nil && id.first {
					continue // without a code, the order means nothing
				}
				if code.dec == nil && id.number == "" {
					continue // TestReadingsAloneOpenNothing
				}
				name := code.name + "/" + temp.name + "/" + id.name
				t.Run(name, func(t *testing.T) {
					l := NewLane("lane-1", DefaultPolicy())
					var closed []Passage
					take := func(e Effects) { closed = append(closed, e.Closed...) }
					at := t0
					if id.number != "" && (id.first || code.dec == nil) {
						take(l.ID(IDRead{Number: id.number, Source: "reader", At: at}))
					}
					if code.dec != nil {
						take(l.Code(at.Add(100*time.Millisecond), *code.dec))
					}
					if id.number != "" && !id.first && code.dec != nil {
						take(l.ID(IDRead{Number: id.number, Source: "reader", At: at.Add(200 * time.Millisecond)}))
					}
					for i, v := range temp.temps {
						take(l.Reading(reading(at.Add(time.Duration(i+1)*time.Second), v)))
					}
					take(l.Tick(at.Add(time.Minute)))
					if len(closed) != 1 {
						t.Fatalf("%d passages closed, want 1", len(closed))
					}
					p := closed[0]

					// What the rules say, part by part.
					want, reasons := max(code.outcome, temp.outcome), slices.Clone(code.reasons)
					switch {
					case code.dec != nil:
						want = max(want, id.outcome)
						reasons = append(reasons, id.reasons...)
					case id.number != "":
						reasons = append(reasons, verify.IDOnly) // a person without a phone
					default:
						want = max(want, verify.Refer)
						reasons = append(reasons, verify.CodeMissing)
					}
					reasons = append(reasons, temp.reasons...)
					if code.dec != nil {
						// The code's reasons come in the verifier's order.
						slices.SortStableFunc(reasons, func(a, b verify.Reason) int {
							return order(a) - order(b)
						})
					}
					if p.Outcome != want || !slices.Equal(p.Reasons, reasons) {
						t.Errorf("got %v %v, want %v %v", p.Outcome, p.Reasons, want, reasons)
					}
					if len(p.Readings) != len(temp.temps) {
						t.Errorf("%d readings kept of %d", len(p.Readings), len(temp.temps))
					}
					if p.Closed.IsZero() || p.Lane != "lane-1" {
						t.Errorf("closed %v in lane %q", p.Closed, p.Lane)
					}
				})
			}
		}
	}
}

// order ranks reasons as decisions list them: the code's, then the
// passage's.
func order(r verify.Reason) int {
	if i := slices.Index(verify.Reasons, r); i >= 0 {
		return i
	}
	return len(verify.Reasons) + slices.Index(verify.PassageReasons, r)
}

// TestReadingsAloneOpenNothing: a reading with no code, card or guard is
// nobody's passage yet; it waits for one.
func TestReadingsAloneOpenNothing(t *testing.T) {
	l := NewLane("lane-1", DefaultPolicy())
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	e := l.Reading(reading(t0, 36.5))
	e2 := l.Tick(t0.Add(time.Hour))
	if len(e.Closed)+len(e2.Closed) != 0 || e2.Current != nil {
		t.Errorf("a reading alone: %+v %+v", e, e2)
	}
	if _, ok := l.Next(); ok {
		t.Error("a tick is wanted with no passage open")
	}
}

// TestPaperCodeWithCard: a paper code passes only with its holder's card.
func TestPaperCodeWithCard(t *testing.T) {
	c := newCodes()
	for _, tc := range []struct {
		number  string
		outcome verify.Outcome
		reasons []verify.Reason
	}{
		{"", verify.Refer, []verify.Reason{verify.StaticCode}},
		{theirs, verify.Pass, []verify.Reason{verify.StaticCode}},
		{other, verify.Refuse, []verify.Reason{verify.IDMismatch, verify.StaticCode}},
	} {
		l := NewLane("lane-1", DefaultPolicy())
		l.Code(c.f.Now, c.paper)
		if tc.number != "" {
			l.ID(IDRead{Number: tc.number, At: c.f.Now.Add(time.Second)})
		}
		e := l.Reading(reading(c.f.Now.Add(2*time.Second), 36.4))
		if len(e.Closed) != 1 || e.Closed[0].Outcome != tc.outcome || !slices.Equal(e.Closed[0].Reasons, tc.reasons) {
			t.Errorf("paper code with card %q: %+v", tc.number, e.Closed)
		}
	}
}

// TestPeopleOneSecondApart: readings go with the passage of the person
// they were taken of, when people come one after another.
func TestPeopleOneSecondApart(t *testing.T) {
	c := newCodes()
	l := NewLane("lane-1", DefaultPolicy())
	temps := []float64{36.1, 36.2, 36.3, 36.4, 36.5, 36.6}
	var closed []Passage
	for i, v := range temps {
		at := c.f.Now.Add(time.Duration(i) * time.Second)
		dec := c.green
		if i%2 == 1 {
			dec = c.yellow
		}
		e := l.Code(at, dec)
		if !e.Measure {
			t.Errorf("person %d: no reading asked for", i)
		}
		closed = append(closed, e.Closed...)
		closed = append(closed, l.Reading(reading(at.Add(300*time.Millisecond), v)).Closed...)
	}
	if len(closed) != len(temps) {
		t.Fatalf("%d passages for %d people", len(closed), len(temps))
	}
	for i, p := range closed {
		if len(p.Readings) != 1 || p.Readings[0].Body != temps[i] || p.Temperature.Body != temps[i] {
			t.Errorf("person %d got readings %v", i, p.Readings)
		}
		if want := []verify.Outcome{verify.Pass, verify.Refer}[i%2]; p.Outcome != want {
			t.Errorf("person %d: %v %v", i, p.Outcome, p.Reasons)
		}
	}
}

// TestReadingBeforeCode: a reading taken just before the code is shown
// goes with it; one taken long before does not.
func TestReadingBeforeCode(t *testing.T) {
	c := newCodes()
	t0 := c.f.Now
	l := NewLane("lane-1", DefaultPolicy())
	l.Reading(reading(t0.Add(-time.Minute), 39.0)) // someone long gone
	l.Reading(reading(t0.Add(-2*time.Second), 36.6))
	e := l.Code(t0, c.green)
	if len(e.Closed) != 1 || e.Closed[0].Outcome != verify.Pass || len(e.Closed[0].Readings) != 1 || e.Measure {
		t.Errorf("code after its reading: %+v, measure %v", e.Closed, e.Measure)
	}
}

// TestRepeatsAndStrayCodes: the same phone seen again changes nothing; a
// code nobody issued is refused at once without waiting for a reading.
func TestRepeatsAndStrayCodes(t *testing.T) {
	c := newCodes()
	t0 := c.f.Now
	l := NewLane("lane-1", DefaultPolicy())
	l.Code(t0, c.green)
	again := c.green
	again.Repeat = true
	if e := l.Code(t0.Add(time.Second), again); len(e.Closed) != 0 || e.Current == nil || e.Current.Opened != t0 {
		t.Errorf("a repeat: %+v", e)
	}
	e := l.Code(t0.Add(2*time.Second), c.forged)
	if len(e.Closed) != 2 || e.Closed[1].Outcome != verify.Refuse || slices.Contains(e.Closed[1].Reasons, verify.TemperatureMissing) || e.Measure {
		t.Errorf("a forged code after a green one: %+v, measure %v", e.Closed, e.Measure)
	}
	if e.Closed[0].Outcome != verify.Refer || !slices.Equal(e.Closed[0].Reasons, []verify.Reason{verify.TemperatureMissing}) {
		t.Errorf("the green code cut short by the next person: %v %v", e.Closed[0].Outcome, e.Closed[0].Reasons)
	}

	// A repeat of an earlier credential than the last one is someone
	// else's turn: a new passage.
	l.Code(t0.Add(3*time.Second), c.yellow)
	stale := c.stale
	stale.Repeat = true
	if e := l.Code(t0.Add(4*time.Second), stale); len(e.Closed) != 1 || e.Current == nil || e.Current.Outcome != verify.Refuse {
		t.Errorf("a screenshot of the first code after another person's: %+v", e)
	}
}

// TestRemeasure: a fever or a sensor error asks for a re-measure, a few
// times at most; the re-measure gets its own window.
func TestRemeasure(t *testing.T) {
	c := newCodes()
	t0 := c.f.Now
	p := DefaultPolicy()
	l := NewLane("lane-1", p)
	if e := l.Code(t0, c.green); !e.Measure || e.Current.Waiting[0] != "temperature" {
		t.Fatalf("open: %+v", e)
	}
	var asked int
	for i := 1; i <= 8; i++ {
		e := l.Reading(reading(t0.Add(time.Duration(i)*time.Second), 50))
		if e.Measure {
			asked++
		}
		if len(e.Closed) != 0 {
			t.Fatalf("closed on sensor errors: %+v", e.Closed)
		}
	}
	if asked != maxRemeasure {
		t.Errorf("asked for %d re-measures, want %d", asked, maxRemeasure)
	}
	dl, _ := l.Next()
	if want := t0.Add(time.Second + time.Duration(p.RemeasureWindow)); !dl.Equal(want) {
		t.Errorf("deadline %v, want %v: the re-measure window from the first bad reading", dl, want)
	}
	e := l.Tick(dl)
	if len(e.Closed) != 1 || e.Closed[0].Outcome != verify.Refer || len(e.Closed[0].Readings) != 8 {
		t.Errorf("after the re-measure window: %+v", e.Closed)
	}
}

// TestIDModes: a lane with a reader waits for the card; one with a guard
// waits for the guard; each refers when its window ends without.
func TestIDModes(t *testing.T) {
	c := newCodes()
	t0 := c.f.Now
	for _, tc := range []struct {
		mode    IDMode
		act     func(l *Lane) Effects
		outcome verify.Outcome
		reasons []verify.Reason
	}{
		{IDReader, nil, verify.Refer, []verify.Reason{verify.IDMissing}},
		{IDReader, func(l *Lane) Effects { return l.ID(IDRead{Number: theirs, At: t0.Add(time.Second)}) }, verify.Pass, nil},
		{IDGuard, nil, verify.Refer, []verify.Reason{verify.IDUnconfirmed}},
		{IDGuard, func(l *Lane) Effects {
			return l.Guard(Action{Kind: ConfirmID, Guard: "李明", At: t0.Add(time.Second)})
		}, verify.Pass, nil},
		{IDGuard, func(l *Lane) Effects { return l.ID(IDRead{Number: other, At: t0.Add(time.Second)}) },
			verify.Refuse, []verify.Reason{verify.IDMismatch}},
		{IDNone, nil, verify.Pass, nil},
	} {
		p := DefaultPolicy()
		p.IDCheck = tc.mode
		l := NewLane("lane-1", p)
		l.Code(t0, c.green)
		e := l.Reading(reading(t0.Add(500*time.Millisecond), 36.5))
		if tc.act != nil {
			e = tc.act(l)
		}
		closed := append(e.Closed, l.Tick(t0.Add(time.Minute)).Closed...)
		if len(closed) != 1 || closed[0].Outcome != tc.outcome || !slices.Equal(closed[0].Reasons, tc.reasons) {
			t.Errorf("%s: %+v", tc.mode, closed)
		}
	}
}

// TestIDOnly: a card without a code waits the code window, then passes on
// a normal temperature (or what the policy says); a code that comes within
// the window makes it a code passage.
func TestIDOnly(t *testing.T) {
	c := newCodes()
	t0 := c.f.Now
	p := DefaultPolicy()
	l := NewLane("lane-1", p)
	if e := l.ID(IDRead{Number: theirs, Source: "reader", At: t0}); !e.Measure {
		t.Error("no reading asked for a person without a phone")
	}
	if e := l.Reading(reading(t0.Add(time.Second), 36.5)); len(e.Closed) != 0 {
		t.Fatalf("closed before the code window ended: %+v", e.Closed)
	}
	next, ok := l.Next()
	if !ok || !next.Equal(t0.Add(time.Duration(p.CodeWindow))) {
		t.Errorf("next tick %v, want the end of the code window", next)
	}
	e := l.Tick(next)
	if len(e.Closed) != 1 || !e.Closed[0].IDOnly() || e.Closed[0].Outcome != verify.Pass ||
		!slices.Equal(e.Closed[0].Reasons, []verify.Reason{verify.IDOnly}) {
		t.Errorf("a person without a phone: %+v", e.Closed)
	}

	p.IDOnly = verify.Refer
	l = NewLane("lane-1", p)
	l.ID(IDRead{Number: theirs, At: t0})
	l.Reading(reading(t0.Add(time.Second), 36.5))
	if e := l.Tick(t0.Add(time.Minute)); len(e.Closed) != 1 || e.Closed[0].Outcome != verify.Refer {
		t.Errorf("id_only set to refer: %+v", e.Closed)
	}

	l = NewLane("lane-1", DefaultPolicy())
	l.ID(IDRead{Number: theirs, At: t0})
	e = l.Code(t0.Add(time.Second), c.green)
	e = l.Reading(reading(t0.Add(2*time.Second), 36.5))
	if len(e.Closed) != 1 || e.Closed[0].IDOnly() || e.Closed[0].Outcome != verify.Pass || !e.Closed[0].Code.IDMatched {
		t.Errorf("card then code: %+v", e.Closed)
	}

	l = NewLane("lane-1", DefaultPolicy())
	l.ID(IDRead{Number: "440305zz1224", At: t0})
	l.Reading(reading(t0.Add(time.Second), 36.5))
	if e := l.Tick(t0.Add(time.Minute)); len(e.Closed) != 1 || e.Closed[0].Outcome != verify.Refer ||
		!slices.Equal(e.Closed[0].Reasons, []verify.Reason{verify.IDInvalid}) {
		t.Errorf("an invalid number without a code: %+v", e.Closed)
	}
}

// TestGuard: the guard's temperature and typed number count like a
// device's; an override decides at once, with its reason; the typed number
// is never kept in the action.
func TestGuard(t *testing.T) {
	c := newCodes()
	t0 := c.f.Now
	l := NewLane("lane-1", DefaultPolicy())
	l.Code(t0, c.paper)
	l.Guard(Action{Kind: TypedID, Guard: "李明", Number: theirs, At: t0.Add(time.Second)})
	e := l.Guard(Action{Kind: Temperature, Guard: "李明", Celsius: 36.4, At: t0.Add(2 * time.Second)})
	if len(e.Closed) != 1 || e.Closed[0].Outcome != verify.Pass || e.Closed[0].Readings[0].Source != "guard" {
		t.Fatalf("paper code, typed number, guard's reading: %+v", e.Closed)
	}
	for _, a := range e.Closed[0].Actions {
		if a.Number != "" {
			t.Errorf("action %s keeps the typed number", a.Kind)
		}
	}

	l = NewLane("lane-1", DefaultPolicy())
	l.Code(t0, c.green)
	l.Reading(reading(t0.Add(time.Second), 38.5))
	e = l.Guard(Action{Kind: Override, Guard: "李明", Outcome: verify.Pass, Reason: "clinical_thermometer_normal", At: t0.Add(2 * time.Second)})
	// The reasons keep what the guard overrode.
	if len(e.Closed) != 1 || e.Closed[0].Outcome != verify.Pass || e.Closed[0].Actions[0].Guard != "李明" ||
		!slices.Equal(e.Closed[0].Reasons, []verify.Reason{verify.TemperatureMissing, verify.GuardOverride}) {
		t.Errorf("override after a fever: %+v", e.Closed)
	}
	e = l.Guard(Action{Kind: Override, Guard: "李明", Outcome: verify.Refuse, Reason: "device_fault", At: t0.Add(3 * time.Second)})
	if len(e.Closed) != 1 || e.Closed[0].OpenedBy != "guard" || e.Closed[0].Outcome != verify.Refuse {
		t.Errorf("override with no passage open: %+v", e.Closed)
	}
}

// TestNextMovesOn: a passage the guard opened without a card waits for a
// code until its deadline, so the next tick is the deadline, not the end
// of the code window (which, once past, would call for a tick at once,
// again and again).
func TestNextMovesOn(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	p := DefaultPolicy()
	for _, a := range []Action{
		{Kind: ConfirmID, Guard: "李明", At: t0},
		{Kind: Temperature, Guard: "李明", Celsius: 36.5, At: t0},
	} {
		l := NewLane("lane-1", p)
		l.Guard(a)
		now := t0
		for i := 0; ; i++ {
			next, ok := l.Next()
			if !ok {
				break
			}
			if i > 0 && !next.After(now) {
				t.Fatalf("%s: next tick %v, not after the last one at %v", a.Kind, next.Sub(t0), now.Sub(t0))
			}
			if i > 3 {
				t.Fatalf("%s: still open after %d ticks", a.Kind, i)
			}
			now = next
			l.Tick(now)
		}
		if !now.Equal(t0.Add(time.Duration(p.Window))) {
			t.Errorf("%s: closed at %v, want the passage window's end", a.Kind, now.Sub(t0))
		}
	}
}

func Example() {
	c := newCodes()
	l := NewLane("lane-1", DefaultPolicy())
	e := l.Code(c.f.Now, c.green)
	fmt.Println("measure:", e.Measure, "waiting:", e.Current.Waiting)
	e = l.Reading(reading(c.f.Now.Add(time.Second), 36.6))
	fmt.Println(e.Closed[0].Outcome, e.Closed[0].Temperature.Body)
	// Output:
	// measure: true waiting: [temperature]
	// pass 36.6
}

// FuzzParsePolicy: a policy file either parses to rules that validate and
// survive being written out and read again, or is refused with an error.
func FuzzParsePolicy(f *testing.F) {
	f.Add([]byte(`{"fever_threshold": 37.5, "id_check": "reader"}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"passage_window": "1s", "code_window": "2s"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParsePolicy(data)
		if err != nil {
			return
		}
		if err := p.Validate(); err != nil {
			t.Fatalf("parsed a policy that does not validate: %v", err)
		}
		out, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		if again, err := ParsePolicy(out); err != nil || again != p {
			t.Errorf("written out and read again: %+v, %v; was %+v", again, err, p)
		}
	})
}
