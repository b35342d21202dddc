package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/checkpointd/checkpoint/internal/clock/clocktest"
)

var testKey = &[32]byte{7, 1, 7}

// openFast opens a box with the test key on a fake clock at t0. Its
// commits are not fsynced: nothing these tests look at depends on it, and
// it spares a disk flush per event.
func openFast(t *testing.T, path string) (*Box, *clocktest.Fake) {
	t.Helper()
	clk := clocktest.New(t0)
	b, err := OpenBox(path, Options{Clock: clk, Key: testKey})
	if err != nil {
		t.Fatal(err)
	}
	b.db.NoSync = true
	t.Cleanup(func() { b.Close() })
	return b, clk
}

// recordAll records evs one after the other: event i gets sequence number
// first+i.
func recordAll(t *testing.T, b *Box, evs []Event) {
	t.Helper()
	for i, e := range evs {
		if _, err := b.Record(context.Background(), e); err != nil {
			t.Fatalf("recording event %d: %v", i, err)
		}
	}
}

// allEvents reads back every event the box holds, decoded, with its
// private fields opened.
func allEvents(t *testing.T, b *Box) []Event {
	t.Helper()
	evs, err := b.Events(0, math.MaxInt)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// bruteForce returns the sequence numbers of the events f.Match chooses,
// with f's Before and After, oldest first or newest first.
func bruteForce(all []Event, f Filter, newestFirst bool) []uint64 {
	var out []uint64
	for _, e := range all {
		if f.Match(e) && (f.Before == 0 || e.Seq < f.Before) && e.Seq > f.After {
			out = append(out, e.Seq)
		}
	}
	if newestFirst {
		slices.Reverse(out)
	}
	return out
}

const (
	thirdGuard = "g-chen" // acts only as the third guard of a passage
	maskedName = "张*丰"
	cardMasked = "李*明 …4518"
)

var testGuards = []string{"g-wang", "g-li", "g-zhao"}

// varied returns n events like a checkpoint's afternoon from t0: passages
// on two lanes (passes, some on an ID card alone, referrals, refusals for
// fever and other reasons, guards acting, overrides, every 25th with three
// guards), scans, fire alarms and audits, a minute apart on average with
// nanoseconds in their times. Event n/3 comes 300 ns before a whole hour;
// event n/2 has its time set back 100 minutes, as a clock corrected
// for one event would.
func varied(n int, seed uint64) []Event {
	r := rand.New(rand.NewPCG(seed, 1))
	pick := func(xs ...string) string { return xs[r.IntN(len(xs))] }
	at := t0
	evs := make([]Event, 0, n)
	for i := 0; i < n; i++ {
		at = at.Add(time.Duration(r.IntN(110_000))*time.Millisecond + time.Duration(r.IntN(1000)))
		e := Event{Time: at, ClockUncertainty: time.Second, Gate: fmt.Sprintf("gate-marker-%05d", i),
			Subject: []byte(fmt.Sprintf("subj%06d", i))}
		switch i {
		case n / 3:
			e.Time = at.Truncate(time.Hour).Add(time.Hour - 300*time.Nanosecond)
			at = e.Time
		case n / 2:
			e.Time = at.Add(-100 * time.Minute)
		}
		switch x := r.IntN(100); {
		case x < 60:
			e.Kind, e.Lane, e.OpenedBy, e.GateAction = "passage", pick("lane-1", "lane-2"), "code", "pulse"
			e.Temperature = int16(360 + r.IntN(20))
			e.MaskedName = maskedName
			switch y := r.IntN(100); {
			case y < 12:
				e.Decision, e.Reasons, e.OpenedBy = "pass", []string{"id_only"}, "id"
				e.ID = &IDRecord{Check: "only", Source: "reader", Masked: cardMasked}
			case y < 68:
				e.Decision, e.Status = "pass", "green"
			case y < 82:
				e.Decision, e.Status, e.Reasons = "refer", "yellow", []string{pick("status_yellow", "temperature_missing")}
			default:
				e.Decision, e.Status, e.GateAction = "refuse", pick("red", "green"), "closed"
				e.Reasons = []string{pick("fever", "expired", "revoked", "status_red")}
				if e.Reasons[0] != "fever" && r.IntN(3) == 0 {
					e.Reasons = append(e.Reasons, "fever")
				}
			}
			guards := r.Perm(len(testGuards))[:r.IntN(3)]
			if r.IntN(8) == 0 {
				e.Reasons = append(e.Reasons, "guard_override")
				if len(guards) == 0 {
					guards = []int{r.IntN(len(testGuards))}
				}
			}
			for _, g := range guards {
				e.Actions = append(e.Actions, ActionRecord{Kind: "confirm", Guard: testGuards[g], At: at})
			}
			if len(guards) > 0 && r.IntN(4) == 0 { // the same guard twice
				e.Actions = append(e.Actions, ActionRecord{Kind: "note", Guard: testGuards[guards[0]], At: at})
			}
			if i%25 == 0 {
				e.Actions = []ActionRecord{{Kind: "confirm", Guard: "g-wang", At: at}, {Kind: "confirm", Guard: "g-zhao", At: at},
					{Kind: "override", Guard: thirdGuard, At: at, Outcome: "pass", Reason: "medical"}}
			}
		case x < 85:
			e.Kind, e.Decision = "scan", pick("pass", "pass", "pass", "refer", "refuse")
			e.Status = map[string]string{"pass": "green", "refer": "yellow", "refuse": "red"}[e.Decision]
			if e.Decision == "refuse" {
				e.Reasons = []string{pick("status_red", "revoked", "replayed")}
			}
		case x < 88:
			e.Kind = "fire_alarm"
		default:
			e.Kind = "audit"
			e.Audit = &AuditRecord{Who: "sup-1", Action: pick("logs", "stats", "export"), Rows: r.IntN(100)}
		}
		evs = append(evs, e)
	}
	return evs
}

// TestFilterMatch checks Match itself, field by field, since the other
// tests take it as the truth.
func TestFilterMatch(t *testing.T) {
	e := Event{Time: t0, Kind: "passage", Decision: "refuse", Reasons: []string{"expired", "fever"}, Status: "red",
		Lane: "lane-1", Actions: []ActionRecord{{Guard: "g-li"}, {Guard: "g-wang"}}}
	for _, tc := range []struct {
		name string
		f    Filter
		want bool
	}{
		{"empty", Filter{}, true},
		{"from at", Filter{From: t0}, true},
		{"from after", Filter{From: t0.Add(time.Microsecond)}, false},
		{"to at", Filter{To: t0}, false},
		{"to after", Filter{To: t0.Add(time.Microsecond)}, true},
		{"kind", Filter{Kind: "passage"}, true},
		{"other kind", Filter{Kind: "scan"}, false},
		{"outcome", Filter{Outcome: "refuse"}, true},
		{"other outcome", Filter{Outcome: "pass"}, false},
		{"second reason", Filter{Reason: "fever"}, true},
		{"other reason", Filter{Reason: "revoked"}, false},
		{"colour", Filter{Colour: "red"}, true},
		{"other colour", Filter{Colour: "green"}, false},
		{"lane", Filter{Lane: "lane-1"}, true},
		{"other lane", Filter{Lane: "lane-2"}, false},
		{"second guard", Filter{Guard: "g-wang"}, true},
		{"other guard", Filter{Guard: "g-zhao"}, false},
		{"all at once", Filter{From: t0, To: t0.Add(time.Hour), Kind: "passage", Outcome: "refuse", Reason: "expired",
			Colour: "red", Lane: "lane-1", Guard: "g-li"}, true},
		{"all but one", Filter{From: t0, To: t0.Add(time.Hour), Kind: "passage", Outcome: "refuse", Reason: "expired",
			Colour: "red", Lane: "lane-2", Guard: "g-li"}, false},
	} {
		if got := tc.f.Match(e); got != tc.want {
			t.Errorf("%s: Match %v, want %v", tc.name, got, tc.want)
		}
	}
}

// queryAll pages through Query with f at the given limit, checking each
// page, and returns the sequence numbers in the order the pages gave them.
func queryAll(t *testing.T, b *Box, f Filter, limit int) []uint64 {
	t.Helper()
	f.Limit = limit
	size := limit
	if size <= 0 {
		size = 50
	}
	size = min(size, MaxPage)
	var got []uint64
	for pages := 0; ; pages++ {
		if pages > 10000 {
			t.Fatalf("%+v: paging does not end", f)
		}
		p, err := b.Query(f)
		if err != nil {
			t.Fatalf("%+v: %v", f, err)
		}
		if p.Unreadable != 0 || p.Sealed != 0 {
			t.Fatalf("%+v: %d unreadable, %d sealed", f, p.Unreadable, p.Sealed)
		}
		if len(p.Events) > size || p.Next != 0 && len(p.Events) != size {
			t.Fatalf("%+v: a page of %d events with next %d, pages of %d", f, len(p.Events), p.Next, size)
		}
		for _, e := range p.Events {
			if f.Before != 0 && e.Seq >= f.Before {
				t.Fatalf("%+v: event %d on a page before %d", f, e.Seq, f.Before)
			}
			got = append(got, e.Seq)
		}
		if p.Next == 0 {
			return got
		}
		if last := p.Events[len(p.Events)-1].Seq; p.Next != last {
			t.Fatalf("%+v: next %d, but the page ends at %d", f, p.Next, last)
		}
		f.Before = p.Next
	}
}

func TestQuery(t *testing.T) {
	const n = 400
	b, _ := openFast(t, filepath.Join(t.TempDir(), "box.db"))
	evs := varied(n, 1)
	recordAll(t, b, evs)
	all := allEvents(t, b)
	if len(all) != n {
		t.Fatalf("%d events read back, want %d", len(all), n)
	}
	edge := evs[n/3].Time.Add(300) // a whole hour, 300 ns after event n/3
	back := evs[n/2].Time.Truncate(time.Hour)
	hour := func(h int) time.Time { return t0.Add(time.Duration(h) * time.Hour) }

	for _, tc := range []struct {
		name string
		f    Filter
		none bool // nothing matches
	}{
		{"everything", Filter{}, false},
		{"passages", Filter{Kind: "passage"}, false},
		{"scans", Filter{Kind: "scan"}, false},
		{"fire alarms", Filter{Kind: "fire_alarm"}, false},
		{"audits", Filter{Kind: "audit"}, false},
		{"passes", Filter{Outcome: "pass"}, false},
		{"referrals", Filter{Outcome: "refer"}, false},
		{"refusals", Filter{Outcome: "refuse"}, false},
		{"fever", Filter{Reason: "fever"}, false},
		{"id only", Filter{Reason: "id_only"}, false},
		{"overrides", Filter{Reason: "guard_override"}, false},
		{"replayed", Filter{Reason: "replayed"}, false},
		{"green", Filter{Colour: "green"}, false},
		{"red", Filter{Colour: "red"}, false},
		{"lane 1", Filter{Lane: "lane-1"}, false},
		{"lane 2", Filter{Lane: "lane-2"}, false},
		{"guard wang", Filter{Guard: "g-wang"}, false},
		{"guard li", Filter{Guard: "g-li"}, false},
		{"the third guard", Filter{Guard: thirdGuard}, false},
		{"fever refusals on lane 1", Filter{Kind: "passage", Outcome: "refuse", Reason: "fever", Lane: "lane-1"}, false},
		{"passes guard li saw", Filter{Outcome: "pass", Guard: "g-li"}, false},
		{"red refusals", Filter{Outcome: "refuse", Colour: "red"}, false},
		{"an hour", Filter{From: hour(1), To: hour(2)}, false},
		{"from an hour on", Filter{From: hour(3)}, false},
		{"until an hour", Filter{To: hour(2)}, false},
		{"from the whole hour after event n/3", Filter{From: edge}, false},
		{"until the whole hour after event n/3", Filter{To: edge}, false},
		{"the hour the clock went back to", Filter{From: back, To: back.Add(time.Hour)}, false},
		{"passages in the hour the clock went back to", Filter{From: back, To: back.Add(time.Hour), Kind: "passage"}, false},
		{"refusals in two hours", Filter{From: hour(2), To: hour(4), Outcome: "refuse"}, false},
		{"a second", Filter{From: evs[10].Time, To: evs[10].Time.Add(time.Second)}, false},
		{"unknown kind", Filter{Kind: "parade"}, true},
		{"unknown outcome", Filter{Outcome: "maybe"}, true},
		{"unknown reason", Filter{Reason: "no_such_reason"}, true},
		{"unknown colour", Filter{Colour: "purple"}, true},
		{"unknown lane", Filter{Lane: "lane-9"}, true},
		{"unknown guard", Filter{Guard: "g-nobody"}, true},
		{"unknown lane with a known kind", Filter{Kind: "passage", Lane: "lane-9"}, true},
		{"before the events", Filter{From: t0.Add(-10 * time.Hour), To: t0.Add(-9 * time.Hour)}, true},
		{"after the events", Filter{From: t0.Add(48 * time.Hour)}, true},
		{"an empty range", Filter{From: hour(2), To: hour(2)}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := bruteForce(all, tc.f, true)
			if tc.none != (len(want) == 0) {
				t.Fatalf("the events give %d matches: the case does not test what it says", len(want))
			}
			for _, limit := range []int{0, 3, 1000} {
				if got := queryAll(t, b, tc.f, limit); !slices.Equal(got, want) {
					t.Errorf("limit %d: Query gives %d events %v,\nwant %d %v", limit, len(got), got, len(want), want)
				}
			}
			// The events returned are the events recorded, private fields
			// opened.
			p, err := b.Query(tc.f)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range p.Events {
				r := all[e.Seq-1]
				if e.Hash != r.Hash || !e.Time.Equal(r.Time) || e.Gate != evs[e.Seq-1].Gate || e.MaskedName != evs[e.Seq-1].MaskedName ||
					e.ID != nil && e.ID.Masked != cardMasked {
					t.Fatalf("event %d comes back as %+v", e.Seq, e)
				}
			}
		})
	}

	// Page by page, one event at a time, the whole log.
	if got, want := queryAll(t, b, Filter{}, 1), bruteForce(all, Filter{}, true); !slices.Equal(got, want) {
		t.Errorf("pages of one: %v, want %v", got, want)
	}
	// Before the first event there is nothing; Before beyond the last is
	// the same as none.
	for _, tc := range []struct {
		before uint64
		want   int
	}{{1, 0}, {2, 1}, {n + 1, 50}, {n + 100, 50}, {math.MaxUint64, 50}} {
		p, err := b.Query(Filter{Before: tc.before})
		if err != nil || len(p.Events) != tc.want {
			t.Errorf("before %d: %d events, %v; want %d", tc.before, len(p.Events), err, tc.want)
		}
	}
	// The page size: 50 when unset or negative.
	for _, tc := range []struct{ limit, want int }{{0, 50}, {-3, 50}, {1, 1}, {77, 77}, {MaxPage, n}} {
		p, err := b.Query(Filter{Limit: tc.limit})
		if err != nil || len(p.Events) != tc.want {
			t.Errorf("limit %d: %d events, %v; want %d", tc.limit, len(p.Events), err, tc.want)
		}
	}
}

// TestQueryReasonOverflow: past 63 reasons the dictionary is full and the
// summaries say "another reason"; queries and figures still come out
// right, also once the box is opened again.
func TestQueryReasonOverflow(t *testing.T) {
	path := filepath.Join(t.TempDir(), "box.db")
	b, clk := openFast(t, path)
	reason := func(i int) string { return fmt.Sprintf("reason-%02d", i) }
	var evs []Event
	for i := 0; i < 240; i++ {
		e := event(i)
		e.Kind, e.Decision = "passage", "refuse"
		e.Reasons = []string{reason(i % 80)}
		switch i % 7 {
		case 0:
			e.Reasons = append(e.Reasons, "fever")
		case 3:
			e.Decision, e.Reasons = "pass", append(e.Reasons, "id_only")
		}
		evs = append(evs, e)
	}
	recordAll(t, b, evs)
	b.dicts.mu.RLock()
	held := len(b.dicts.reason.names)
	b.dicts.mu.RUnlock()
	if held != reasonOther {
		t.Fatalf("the reason dictionary holds %d names, want it full (%d)", held, reasonOther)
	}
	check := func(b *Box) {
		t.Helper()
		all := allEvents(t, b)
		for i := 0; i < 82; i++ {
			for _, f := range []Filter{{Reason: reason(i)}, {Reason: reason(i), Outcome: "pass"}} {
				want := bruteForce(all, f, true)
				if i < 80 && f.Outcome == "" && len(want) != 3 {
					t.Fatalf("%s: %d events, want 3", reason(i), len(want))
				}
				if got := queryAll(t, b, f, 0); !slices.Equal(got, want) {
					t.Errorf("%+v: %v, want %v", f, got, want)
				}
			}
		}
		for _, f := range []Filter{{Reason: "fever"}, {Reason: "id_only"}} {
			if got, want := queryAll(t, b, f, 10), bruteForce(all, f, true); !slices.Equal(got, want) || len(want) == 0 {
				t.Errorf("%+v: %v, want %v", f, got, want)
			}
		}
		st, err := b.Stats(t0, t0.Add(time.Hour), Hour)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]int{}
		for _, e := range all {
			if e.Decision == "refuse" {
				for _, r := range e.Reasons {
					want[r]++
				}
			}
		}
		if len(want) != 81 || !mapsEqual(st.Total.RefusedFor, want) {
			t.Errorf("refused for %v,\nwant %v", st.Total.RefusedFor, want)
		}
	}
	check(b)
	b.Close()
	b, err := OpenBox(path, Options{Clock: clk, Key: testKey})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	e := event(500)
	e.Reasons = []string{"reason-new"}
	if _, err := b.Record(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	if p, err := b.Query(Filter{Reason: "reason-new"}); err != nil || len(p.Events) != 1 || p.Events[0].Seq != 241 {
		t.Errorf("a new reason after reopening: %+v, %v", p, err)
	}
	check(b)
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestExport: oldest first, the events brute force chooses, across the
// batches Export reads in (1024 events).
func TestExport(t *testing.T) {
	const n = 1500
	b, _ := openFast(t, filepath.Join(t.TempDir(), "box.db"))
	recordAll(t, b, varied(n, 2))
	all := allEvents(t, b)
	for _, tc := range []struct {
		name string
		f    Filter
		min  int // brute force gives at least this many
	}{
		{"everything", Filter{}, n},
		{"after", Filter{After: 200}, 1300},
		{"limit past a batch", Filter{Limit: 1100}, 1100},
		{"after and limit", Filter{After: 333, Limit: 1030}, 1030},
		{"before", Filter{Before: 1200}, 1199},
		{"after and before", Filter{After: 10, Before: 1100}, 1089},
		{"limit of one", Filter{Limit: 1}, 1},
		{"passages", Filter{Kind: "passage"}, 800},
		{"from an hour on", Filter{From: t0.Add(3 * time.Hour)}, 1024},
		{"refusals in some hours", Filter{Outcome: "refuse", From: t0.Add(5 * time.Hour), To: t0.Add(9 * time.Hour)}, 10},
		{"the third guard", Filter{Guard: thirdGuard}, 10},
		{"never seen", Filter{Lane: "lane-9"}, 0},
		{"after the last", Filter{After: n}, 0},
		{"after the largest sequence number", Filter{After: math.MaxUint64}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := bruteForce(all, tc.f, false)
			if tc.f.Limit > 0 && len(want) > tc.f.Limit {
				want = want[:tc.f.Limit]
			}
			if len(want) < tc.min {
				t.Fatalf("brute force gives %d events: the case does not test what it says", len(want))
			}
			var got []uint64
			k, err := b.Export(tc.f, func(e Event) error {
				if e.Kind == "passage" && e.MaskedName != maskedName {
					return fmt.Errorf("event %d: masked name %q", e.Seq, e.MaskedName)
				}
				got = append(got, e.Seq)
				return nil
			})
			if err != nil || k != len(got) {
				t.Fatalf("Export: %d, %v; fn saw %d", k, err, len(got))
			}
			if !slices.Equal(got, want) {
				t.Errorf("Export gives %d events %v,\nwant %d %v", len(got), got, len(want), want)
			}
		})
	}
	// fn's error stops the export and comes back as it is.
	stop := errors.New("disk full")
	seen := 0
	k, err := b.Export(Filter{}, func(Event) error {
		if seen++; seen == 1030 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || k != 1029 || seen != 1030 {
		t.Errorf("an export stopped at the 1030th event: %d, %v (fn called %d times)", k, err, seen)
	}
	// Nothing comes after the largest sequence number.
	if p, err := b.Query(Filter{After: math.MaxUint64}); err != nil || len(p.Events) != 0 {
		t.Errorf("a page after the largest sequence number: %d events, %v", len(p.Events), err)
	}
	// Query's page is at most MaxPage.
	if p, err := b.Query(Filter{Limit: 5000}); err != nil || len(p.Events) != MaxPage || p.Next != n-MaxPage+1 {
		t.Errorf("a page of 5000 asked: %d events, next %d, %v", len(p.Events), p.Next, err)
	}
}

// TestQueryAfterPrune: what retention removed is neither listed, nor
// exported, nor counted.
func TestQueryAfterPrune(t *testing.T) {
	b, clk := openFast(t, filepath.Join(t.TempDir(), "box.db"))
	recordAll(t, b, varied(300, 4))
	if err := b.SetMark(120); err != nil {
		t.Fatal(err)
	}
	clk.Advance(15 * 24 * time.Hour)
	if r, err := b.Prune(14 * 24 * time.Hour); err != nil || r.Deleted != 120 {
		t.Fatalf("Prune: %+v, %v", r, err)
	}
	all := allEvents(t, b)
	if len(all) != 180 || all[0].Seq != 121 {
		t.Fatalf("after the prune %d events from %d", len(all), all[0].Seq)
	}
	for _, f := range []Filter{{}, {Kind: "passage"}, {From: t0, To: t0.Add(2 * time.Hour)}, {To: t0.Add(3 * time.Hour)}, {Outcome: "refuse"}} {
		want := bruteForce(all, f, true)
		if got := queryAll(t, b, f, 7); !slices.Equal(got, want) {
			t.Errorf("%+v: Query %v, want %v", f, got, want)
		}
		var got []uint64
		if _, err := b.Export(f, func(e Event) error { got = append(got, e.Seq); return nil }); err != nil {
			t.Fatal(err)
		}
		if want := bruteForce(all, f, false); !slices.Equal(got, want) {
			t.Errorf("%+v: Export %v, want %v", f, got, want)
		}
	}
	st, err := b.Stats(t0.Add(-time.Hour), t0.Add(24*time.Hour), Day)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := st.Total.Passes+st.Total.Referrals+st.Total.Refusals, decided(all); got != want {
		t.Errorf("after the prune Stats counts %d decisions, want %d", got, want)
	}
}

func decided(evs []Event) int {
	n := 0
	for _, e := range evs {
		switch e.Decision {
		case "pass", "refer", "refuse":
			n++
		}
	}
	return n
}
