package store

import (
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// bruteStats counts evs into periods the way Period documents it, from
// the decoded events.
func bruteStats(evs []Event, periods []Period) []Period {
	out := make([]Period, len(periods))
	for i, p := range periods {
		out[i] = Period{Start: p.Start, End: p.End, RefusedFor: map[string]int{}}
	}
	for _, e := range evs {
		for i := range out {
			p := &out[i]
			if !(Filter{From: p.Start, To: p.End}).Match(e) {
				continue
			}
			switch e.Kind {
			case "fire_alarm":
				p.FireAlarms++
			case "audit":
				p.Audits++
			}
			switch e.Decision {
			case "pass":
				p.Passes++
				if slices.Contains(e.Reasons, "id_only") {
					p.IDOnly++
				}
			case "refer":
				p.Referrals++
			case "refuse":
				p.Refusals++
				for _, r := range e.Reasons {
					p.RefusedFor[r]++
				}
			}
			if slices.Contains(e.Reasons, "fever") {
				p.Fevers++
			}
			if slices.Contains(e.Reasons, "guard_override") {
				p.Overrides++
			}
		}
	}
	return out
}

// overlap is how much of [a, z) the intervals cover.
func overlap(intervals [][2]time.Time, a, z time.Time) time.Duration {
	var d time.Duration
	for _, iv := range intervals {
		from, to := iv[0], iv[1]
		if from.Before(a) {
			from = a
		}
		if to.After(z) {
			to = z
		}
		if to.After(from) {
			d += to.Sub(from)
		}
	}
	return d
}

// samePeriod compares two periods' figures, offline time aside.
func samePeriod(a, b Period) bool {
	return a.Passes == b.Passes && a.Referrals == b.Referrals && a.Refusals == b.Refusals && mapsEqual(a.RefusedFor, b.RefusedFor) &&
		a.Fevers == b.Fevers && a.IDOnly == b.IDOnly && a.Overrides == b.Overrides && a.FireAlarms == b.FireAlarms && a.Audits == b.Audits
}

// checkStats checks st against brute force over evs, and the offline time
// against the down intervals (already clipped at now).
func checkStats(t *testing.T, st Stats, from, to time.Time, step Step, periods int, evs []Event, downs [][2]time.Time) {
	t.Helper()
	if st.Step != step || len(st.Periods) != periods {
		t.Fatalf("step %q, %d periods; want %q, %d", st.Step, len(st.Periods), step, periods)
	}
	loc := from.Location()
	for i, p := range st.Periods {
		switch {
		case i == 0 && !p.Start.Equal(from), i == len(st.Periods)-1 && !p.End.Equal(to):
			t.Errorf("period %d: %v to %v; the range is %v to %v", i, p.Start, p.End, from, to)
		case i > 0 && !p.Start.Equal(st.Periods[i-1].End):
			t.Errorf("period %d starts at %v, the one before ends at %v", i, p.Start, st.Periods[i-1].End)
		case !p.End.After(p.Start):
			t.Errorf("period %d: %v to %v", i, p.Start, p.End)
		}
		if i > 0 {
			s := p.Start.In(loc)
			if s.Minute() != 0 || s.Second() != 0 || s.Nanosecond() != 0 || step == Day && s.Hour() != 0 {
				t.Errorf("period %d starts at %v, not at a whole %s in %v", i, s, step, loc)
			}
		}
	}
	want := bruteStats(evs, st.Periods)
	var total Period
	total.RefusedFor = map[string]int{}
	for i, p := range st.Periods {
		if !samePeriod(p, want[i]) {
			t.Errorf("period %d (%v): %+v,\nwant %+v", i, p.Start, p, want[i])
		}
		if off := overlap(downs, p.Start, p.End); p.Offline != off {
			t.Errorf("period %d (%v): offline %v, want %v", i, p.Start, p.Offline, off)
		}
		total.Passes += p.Passes
		total.Referrals += p.Referrals
		total.Refusals += p.Refusals
		total.Fevers += p.Fevers
		total.IDOnly += p.IDOnly
		total.Overrides += p.Overrides
		total.FireAlarms += p.FireAlarms
		total.Audits += p.Audits
		total.Offline += p.Offline
		for r, n := range p.RefusedFor {
			total.RefusedFor[r] += n
		}
	}
	if !samePeriod(st.Total, total) || st.Total.Offline != total.Offline || !st.Total.Start.Equal(from) || !st.Total.End.Equal(to) {
		t.Errorf("total %+v,\nthe periods add up to %+v", st.Total, total)
	}
	whole := bruteStats(evs, []Period{{Start: from, End: to}})[0]
	if !samePeriod(st.Total, whole) {
		t.Errorf("total %+v,\nbrute force over the range %+v", st.Total, whole)
	}
}

func TestStats(t *testing.T) {
	cst := time.FixedZone("CST", 8*3600)
	b, clk := openFast(t, filepath.Join(t.TempDir(), "box.db"))
	recordAll(t, b, varied(300, 3))
	all := allEvents(t, b)
	utc := func(h, m int) time.Time { return time.Date(2026, 11, 25, h, m, 0, 0, time.UTC) }
	local := func(d, h, m int) time.Time { return time.Date(2026, 11, d, h, m, 0, 0, cst) }
	if first, last := all[0].Time, all[len(all)-1].Time; !first.Before(utc(12, 5)) || !last.After(utc(16, 20)) {
		t.Fatalf("the events run from %v to %v: the cases below assume 12:00 to past 16:20 UTC", first, last)
	}

	// The link: down before the first range and up in it; down twice,
	// then up; up again while up; down, and not up again.
	for _, l := range []struct {
		at time.Time
		up bool
	}{
		{utc(11, 0), false}, {utc(11, 40), true},
		{utc(12, 50), false}, {utc(12, 55), false}, {utc(13, 20), true},
		{utc(14, 0), true},
		{utc(15, 30), false},
	} {
		if err := b.SetLink(l.at, l.up); err != nil {
			t.Fatal(err)
		}
	}
	downs := func(now time.Time) [][2]time.Time {
		return [][2]time.Time{{utc(11, 0), utc(11, 40)}, {utc(12, 50), utc(13, 20)}, {utc(15, 30), now}}
	}

	for _, tc := range []struct {
		name     string
		from, to time.Time
		step     Step
		periods  int
		now      time.Time
		offline  time.Duration // in all
	}{
		// 19:30 to 00:20 in China, 11:30 to 16:20 UTC.
		{"hours", local(25, 19, 30), local(26, 0, 20), Hour, 6, utc(16, 10), 80 * time.Minute},
		{"hours, now past the range", local(25, 19, 30), local(26, 0, 20), Hour, 6, utc(20, 0), 90 * time.Minute},
		{"days", local(25, 0, 0), local(27, 0, 0), Day, 2, utc(16, 10), 110 * time.Minute},
		{"days, now later", local(25, 0, 0), local(27, 0, 0), Day, 2, utc(20, 0), 340 * time.Minute},
		{"days from an evening", local(25, 21, 10), local(26, 12, 0), Day, 2, utc(20, 0), 280 * time.Minute},
		{"one hour", local(25, 21, 0), local(25, 22, 0), Hour, 1, utc(20, 0), 20 * time.Minute},
		{"hours before the events", local(25, 10, 0), local(25, 13, 0), Hour, 3, utc(20, 0), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk.Set(tc.now)
			st, err := b.Stats(tc.from, tc.to, tc.step)
			if err != nil {
				t.Fatal(err)
			}
			checkStats(t, st, tc.from, tc.to, tc.step, tc.periods, all, downs(tc.now))
			if st.Total.Offline != tc.offline {
				t.Errorf("offline %v in all, want %v", st.Total.Offline, tc.offline)
			}
		})
	}
	// Every figure is exercised.
	st, err := b.Stats(local(25, 0, 0), local(27, 0, 0), Day)
	if err != nil {
		t.Fatal(err)
	}
	if tt := st.Total; tt.Passes == 0 || tt.Referrals == 0 || tt.Refusals == 0 || tt.Fevers == 0 || tt.IDOnly == 0 ||
		tt.Overrides == 0 || tt.FireAlarms == 0 || tt.Audits == 0 || len(tt.RefusedFor) < 4 {
		t.Errorf("the events leave figures at zero: %+v", tt)
	}

	for _, tc := range []struct {
		name     string
		from, to time.Time
		step     Step
	}{
		{"an empty range", t0, t0, Hour},
		{"a range backwards", t0, t0.Add(-time.Hour), Day},
		{"a week", t0, t0.Add(time.Hour), "week"},
		{"too many hours", t0, t0.AddDate(2, 0, 0), Hour},
	} {
		if _, err := b.Stats(tc.from, tc.to, tc.step); !errors.Is(err, ErrFilter) {
			t.Errorf("%s: %v, want ErrFilter", tc.name, err)
		}
	}
}
