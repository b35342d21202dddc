package store

import (
	"bytes"
	"context"
	"errors"
	"math"
	"net/url"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/checkpointd/checkpoint/internal/clock/clocktest"
)

func TestSummaryEncoding(t *testing.T) {
	for _, s := range []summary{
		{},
		{micros: t0.UnixMicro(), kind: 1, decision: 2, status: 3, lane: other8, reasons: 1<<0 | 1<<62 | 1<<reasonOther, guard1: 7, guard2: other16},
		{micros: -1, kind: other8, decision: other8, status: other8, lane: 1, reasons: math.MaxUint64, guard1: other16, guard2: 1},
	} {
		raw := s.encode()
		got, ok := decodeSummary(raw)
		if len(raw) != summarySize || !ok || got != s {
			t.Errorf("%+v: %d bytes, back as %+v, %v", s, len(raw), got, ok)
		}
		if exact := s.kind != other8 && s.decision != other8 && s.status != other8 && s.lane != other8 &&
			s.reasons>>reasonOther == 0 && s.guard1 != other16 && s.guard2 != other16; s.exact() != exact {
			t.Errorf("%+v: exact %v", s, s.exact())
		}
	}
	if _, ok := decodeSummary(make([]byte, summarySize-1)); ok {
		t.Error("a short summary decodes")
	}
}

// TestHourKey: hour keys sort as the hours do, before 1970 too, and every
// instant of an hour has its hour's key.
func TestHourKey(t *testing.T) {
	hours := []time.Time{time.Date(1969, 12, 31, 22, 0, 0, 0, time.UTC), time.Date(1969, 12, 31, 23, 0, 0, 0, time.UTC),
		time.Unix(0, 0), time.Unix(3600, 0), t0, t0.Add(time.Hour)}
	for i, h := range hours {
		k := hourKey(h.UnixMicro())
		for _, d := range []time.Duration{time.Microsecond, 30 * time.Minute, time.Hour - time.Microsecond} {
			if got := hourKey(h.Add(d).UnixMicro()); !bytes.Equal(got, k) {
				t.Errorf("%v: %x, the hour's key is %x", h.Add(d), got, k)
			}
		}
		if i > 0 && bytes.Compare(hourKey(hours[i-1].UnixMicro()), k) >= 0 {
			t.Errorf("the key of %v does not sort after the key of %v", h, hours[i-1])
		}
	}
}

// TestVisit pages through visit with small steps, up and down, over a log
// whose oldest events were pruned and whose newest the index lacks.
func TestVisit(t *testing.T) {
	b, _ := openFast(t, filepath.Join(t.TempDir(), "box.db"))
	recordAll(t, b, varied(50, 7))
	err := b.db.Update(func(tx *bolt.Tx) error {
		for s := uint64(1); s <= 5; s++ {
			if err := tx.Bucket(bucketEvents).Delete(u64(s)); err != nil {
				return err
			}
			if err := tx.Bucket(bucketSummaries).Delete(u64(s)); err != nil {
				return err
			}
		}
		// Indexed through 30: the summaries of 31 to 50 are not to be
		// trusted (an indexing that failed half-way, say).
		return tx.Bucket(bucketMeta).Put(keyIndexed, u64(30))
	})
	if err != nil {
		t.Fatal(err)
	}
	type seen struct {
		seq     uint64
		summary bool
	}
	for _, tc := range []struct {
		from, bound uint64
		up          bool
	}{
		{1, 60, true}, {10, 40, true}, {31, 31, true}, {30, 31, true}, {48, 1000, true},
		{60, 1, false}, {45, 20, false}, {30, 30, false}, {31, 30, false}, {4, 1, false},
	} {
		var want []seen
		for s := uint64(6); s <= 50; s++ {
			if tc.up && s >= tc.from && s <= tc.bound || !tc.up && s <= tc.from && s >= tc.bound {
				want = append(want, seen{s, s <= 30})
			}
		}
		if !tc.up {
			slices.Reverse(want)
		}
		for _, n := range []int{1, 2, 3, 7, 100} {
			var got []seen
			from := tc.from
			for calls := 0; calls < 1000; calls++ {
				var last uint64
				var done bool
				err := b.db.View(func(tx *bolt.Tx) error {
					var err error
					last, done, err = visit(tx, from, tc.bound, tc.up, n, func(seq uint64, s *summary, get func() (Event, error)) (bool, error) {
						e, err := get()
						if err != nil || e.Seq != seq {
							return true, errors.Join(err, errors.New("decoded as another event"))
						}
						if s != nil && s.micros != e.Time.Round(time.Microsecond).UnixMicro() {
							t.Errorf("event %d: summary time %d, event %v", seq, s.micros, e.Time)
						}
						got = append(got, seen{seq, s != nil})
						return false, nil
					})
					return err
				})
				if err != nil {
					t.Fatal(err)
				}
				if done || last == 0 {
					break
				}
				if from = last + 1; !tc.up {
					from = last - 1
				}
			}
			if !slices.Equal(got, want) {
				t.Errorf("from %d to %d, up %v, %d at a time: %v,\nwant %v", tc.from, tc.bound, tc.up, n, got, want)
			}
		}
	}
	// fn stops the visit.
	var got []uint64
	err = b.db.View(func(tx *bolt.Tx) error {
		_, done, err := visit(tx, 50, 1, false, 100, func(seq uint64, _ *summary, _ func() (Event, error)) (bool, error) {
			got = append(got, seq)
			return len(got) == 3, nil
		})
		if !done {
			t.Error("a visit fn stopped is not done")
		}
		return err
	})
	if err != nil || !slices.Equal(got, []uint64{50, 49, 48}) {
		t.Errorf("stopped after three: %v, %v", got, err)
	}
}

func TestFilterValues(t *testing.T) {
	for _, f := range []Filter{
		{},
		{From: t0, To: t0.Add(time.Hour), Kind: "passage", Outcome: "refuse", Reason: "fever", Colour: "red", Lane: "lane-1",
			Guard: "g-li", Before: 1234, After: 5, Limit: 20},
		{From: t0.Add(1500 * time.Millisecond).In(time.FixedZone("CST", 8*3600)), Reason: "id_only"},
		{To: t0.Add(time.Microsecond)},
	} {
		got, err := ParseFilter(f.Values())
		if err != nil {
			t.Errorf("%+v: %v", f, err)
			continue
		}
		if !got.From.Equal(f.From) || !got.To.Equal(f.To) {
			t.Errorf("times %v %v come back as %v %v", f.From, f.To, got.From, got.To)
		}
		got.From, got.To, f.From, f.To = time.Time{}, time.Time{}, time.Time{}, time.Time{}
		if !reflect.DeepEqual(got, f) {
			t.Errorf("%+v comes back as %+v", f, got)
		}
	}
	for _, q := range []string{"colour=red&size=3", "from=yesterday", "to=2026-11-25", "before=-1", "after=x", "limit=2000000000",
		"lane=" + string(bytes.Repeat([]byte("x"), 65))} {
		v, err := url.ParseQuery(q)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseFilter(v); !errors.Is(err, ErrFilter) {
			t.Errorf("%s: %v, want ErrFilter", q, err)
		}
	}
}

// TestReadOnly opens a box's file read-only: it reads, it changes
// nothing, and two can read at once.
func TestReadOnly(t *testing.T) {
	path := boxFile(t, varied(200, 8))
	b, err := OpenBoxReadOnly(path, Options{Clock: clocktest.New(t0), Key: testKey})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if !b.ReadOnly() || b.LastSeq() != 200 {
		t.Fatalf("read-only %v, last %d", b.ReadOnly(), b.LastSeq())
	}
	if _, err := b.Record(context.Background(), event(1)); !errors.Is(err, ErrReadOnly) {
		t.Errorf("Record: %v", err)
	}
	if _, err := b.Prune(0); !errors.Is(err, ErrReadOnly) {
		t.Errorf("Prune: %v", err)
	}
	if _, err := b.Purge(0); !errors.Is(err, ErrReadOnly) {
		t.Errorf("Purge: %v", err)
	}
	if err := b.SetLink(t0, false); !errors.Is(err, ErrReadOnly) {
		t.Errorf("SetLink: %v", err)
	}
	second, err := OpenBoxReadOnly(path, Options{})
	if err != nil {
		t.Fatalf("a second reader: %v", err)
	}
	second.Close()
	all := allEvents(t, b)
	for _, f := range []Filter{{}, {Outcome: "refuse"}, {Guard: thirdGuard}, {From: t0.Add(time.Hour), To: t0.Add(2 * time.Hour)}} {
		if got, want := queryAll(t, b, f, 9), bruteForce(all, f, true); !slices.Equal(got, want) || len(want) == 0 {
			t.Errorf("%+v: %v, want %v", f, got, want)
		}
	}
	if lc, err := b.VerifyLog(); err != nil || !lc.OK || lc.Checked != 200 {
		t.Errorf("VerifyLog: %+v, %v", lc, err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	// Nothing was written: the file opens read-write as it was.
	rw, err := OpenBox(path, Options{Clock: clocktest.New(t0)})
	if err != nil {
		t.Fatal(err)
	}
	defer rw.Close()
	if lc, err := rw.VerifyLog(); err != nil || !lc.OK || lc.Last != 200 {
		t.Errorf("read-write after read-only: %+v, %v", lc, err)
	}
}

// answers is what a box says to a set of questions, to compare boxes.
type answers struct {
	Pages  [][]uint64
	Export []uint64
	Stats  []Stats
}

func ask(t *testing.T, b *Box, all []Event) answers {
	t.Helper()
	cst := time.FixedZone("CST", 8*3600)
	var a answers
	for _, f := range []Filter{{}, {Kind: "passage", Outcome: "refuse"}, {Reason: "fever"}, {Guard: thirdGuard}, {Lane: "lane-2", Outcome: "pass"},
		{From: t0.Add(time.Hour), To: t0.Add(3 * time.Hour)}, {From: t0.Add(2 * time.Hour), Colour: "red"}, {Lane: "lane-9"}} {
		got, want := queryAll(t, b, f, 11), bruteForce(all, f, true)
		if !slices.Equal(got, want) {
			t.Errorf("%+v: %v, want %v", f, got, want)
		}
		a.Pages = append(a.Pages, got)
	}
	f := Filter{From: t0.Add(30 * time.Minute), Kind: "passage"}
	if _, err := b.Export(f, func(e Event) error { a.Export = append(a.Export, e.Seq); return nil }); err != nil {
		t.Fatal(err)
	}
	if want := bruteForce(all, f, false); !slices.Equal(a.Export, want) || len(want) == 0 {
		t.Errorf("Export: %v, want %v", a.Export, want)
	}
	for _, q := range []struct {
		from, to time.Time
		step     Step
	}{
		{t0.In(cst), t0.Add(6 * time.Hour).In(cst), Hour},
		{t0.Add(-24 * time.Hour).In(cst), t0.Add(24 * time.Hour).In(cst), Day},
	} {
		st, err := b.Stats(q.from, q.to, q.step)
		if err != nil {
			t.Fatal(err)
		}
		want := bruteStats(all, st.Periods)
		for i := range st.Periods {
			if !samePeriod(st.Periods[i], want[i]) {
				t.Errorf("Stats per %s, period %d: %+v, want %+v", q.step, i, st.Periods[i], want[i])
			}
		}
		a.Stats = append(a.Stats, st)
	}
	return a
}

// TestIndexMissing: a database whose index is gone (or that is from
// before the index) answers the same read-only, through the events
// themselves, and OpenBox builds the index again.
func TestIndexMissing(t *testing.T) {
	const n = 500
	path := filepath.Join(t.TempDir(), "box.db")
	clk := clocktest.New(t0)
	b, err := OpenBox(path, Options{Clock: clk, Key: testKey})
	if err != nil {
		t.Fatal(err)
	}
	b.db.NoSync = true
	recordAll(t, b, varied(n, 9))
	for _, l := range []struct {
		at time.Time
		up bool
	}{{t0.Add(40 * time.Minute), false}, {t0.Add(90 * time.Minute), true}, {t0.Add(5 * time.Hour), false}} {
		if err := b.SetLink(l.at, l.up); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	clk.Advance(8 * time.Hour)
	opts := Options{Clock: clk, Key: testKey}

	ref, err := OpenBoxReadOnly(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	all := allEvents(t, ref)
	want := ask(t, ref, all)
	ref.Close()
	if want.Stats[0].Total.Offline != 50*time.Minute+time.Hour {
		t.Fatalf("offline %v with the index", want.Stats[0].Total.Offline)
	}

	for _, tc := range []struct {
		name    string
		buckets [][]byte // deleted with the index.upto mark
	}{
		{"summaries gone", [][]byte{bucketSummaries}},
		{"from before the index", [][]byte{bucketSummaries, bucketHours, bucketDicts}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cp := copyFile(t, path)
			withBolt(func(tx *bolt.Tx) error {
				for _, name := range tc.buckets {
					if err := tx.DeleteBucket(name); err != nil {
						return err
					}
				}
				return tx.Bucket(bucketMeta).Delete(keyIndexed)
			})(t, cp)

			ro, err := OpenBoxReadOnly(cp, opts)
			if err != nil {
				t.Fatal(err)
			}
			if got := ask(t, ro, all); !reflect.DeepEqual(got, want) {
				t.Errorf("read-only without the index:\n%+v,\nwant %+v", got, want)
			}
			ro.Close()

			rw, err := OpenBox(cp, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer rw.Close()
			var sums int
			var upto uint64
			rw.db.View(func(tx *bolt.Tx) error {
				sums = tx.Bucket(bucketSummaries).Stats().KeyN
				upto = indexedThrough(tx)
				return nil
			})
			if sums != n || upto != n {
				t.Fatalf("after OpenBox: %d summaries, indexed through %d; want %d", sums, upto, n)
			}
			if got := ask(t, rw, all); !reflect.DeepEqual(got, want) {
				t.Errorf("indexed again:\n%+v,\nwant %+v", got, want)
			}
		})
	}
}

// TestIndexingFails: an event that does not decode stops the indexing at
// open; the events from it on are read decoded, also once more are
// recorded, and none is lost to the queries.
func TestIndexingFails(t *testing.T) {
	const n, bad = 300, 120
	path := boxFile(t, varied(n, 10))
	withBolt(func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket(bucketSummaries); err != nil {
			return err
		}
		if err := tx.Bucket(bucketMeta).Delete(keyIndexed); err != nil {
			return err
		}
		return tx.Bucket(bucketEvents).Put(u64(bad), []byte{0xa1, 0xff})
	})(t, path)
	b, err := OpenBox(path, Options{Clock: clocktest.New(t0), Key: testKey})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for i := 0; i < 3; i++ {
		e := event(i)
		e.Time = t0.Add(10 * time.Hour)
		if _, err := b.Record(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	var all []Event
	b.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketEvents).ForEach(func(k, v []byte) error {
			if e, err := DecodeEvent(v); err == nil {
				all = append(all, e)
			}
			return nil
		})
	})
	if len(all) != n+2 {
		t.Fatalf("%d events decode, want %d", len(all), n+2)
	}
	for _, f := range []Filter{{}, {Outcome: "refuse"}, {From: t0.Add(time.Hour)}} {
		want := bruteForce(all, f, true)
		var got []uint64
		unreadable := 0
		for f.Limit = 40; ; {
			p, err := b.Query(f)
			if err != nil {
				t.Fatal(err)
			}
			unreadable += p.Unreadable
			for _, e := range p.Events {
				got = append(got, e.Seq)
			}
			if f.Before = p.Next; p.Next == 0 {
				break
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("%+v: %d events %v,\nwant %d %v", f, len(got), got, len(want), want)
		}
		if f.From.IsZero() && f.Outcome == "" && unreadable == 0 {
			t.Errorf("%+v: the event that does not decode is not counted", f)
		}
	}
	if lc, err := b.VerifyLog(); err != nil || lc.Problem != "changed" || lc.At != bad {
		t.Errorf("VerifyLog: %+v, %v", lc, err)
	}
}
