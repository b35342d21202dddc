package store

import (
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestAuthorityExpiryAndDeltas: entries leave the authority's set at their
// drop-after time, as one new version with tombstones, and a box at any
// earlier version gets exactly the subjects changed since.
func TestAuthorityExpiryAndDeltas(t *testing.T) {
	a, err := OpenAuthority(filepath.Join(t.TempDir(), "authority.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	drop := func(c byte, after time.Duration) RevEntry {
		return RevEntry{Subject: subj(c), Before: t0.Unix(), DropAfter: t0.Add(after).Unix()}
	}
	if v, err := a.Revoke([]RevEntry{drop('a', time.Hour), drop('b', 3*time.Hour), drop('e', 9*time.Hour), drop('f', 9*time.Hour)}); err != nil || v != 1 {
		t.Fatalf("version %d, %v", v, err)
	}
	// a again, to be kept longer: its first drop-after no longer counts.
	if v, err := a.Revoke([]RevEntry{drop('a', 2*time.Hour), drop('c', time.Hour)}); err != nil || v != 2 {
		t.Fatalf("version %d, %v", v, err)
	}
	if v, n, err := a.Expire(t0.Add(30 * time.Minute)); err != nil || n != 0 || v != 2 {
		t.Fatalf("nothing due: version %d, %d removed, %v", v, n, err)
	}
	if v, n, err := a.Expire(t0.Add(90 * time.Minute)); err != nil || n != 1 || v != 3 {
		t.Fatalf("c due: version %d, %d removed, %v", v, n, err)
	}
	if v, n, err := a.Expire(t0.Add(150 * time.Minute)); err != nil || n != 1 || v != 4 {
		t.Fatalf("a due: version %d, %d removed, %v", v, n, err)
	}
	if v, err := a.Revoke([]RevEntry{drop('h', 9*time.Hour)}); err != nil || v != 5 {
		t.Fatalf("version %d, %v", v, err)
	}
	v, set, err := a.RevocationState()
	if err != nil || v != 5 || set != digestOf(drop('b', 3*time.Hour), drop('e', 9*time.Hour), drop('f', 9*time.Hour), drop('h', 9*time.Hour)) {
		t.Fatalf("state: version %d, %+v, %v", v, set, err)
	}

	subjects := func(es []RevEntry) (live, gone []byte) {
		for _, e := range es {
			if e.Tombstone {
				gone = append(gone, e.Subject[0])
			} else {
				live = append(live, e.Subject[0])
			}
		}
		return
	}
	for _, tc := range []struct {
		since      uint64
		snapshot   bool
		live, gone string
	}{
		{0, true, "befh", ""}, // a new box gets the set
		{1, false, "h", "ac"}, // c expired, a expired after its renewal, h is new
		{2, false, "h", "ac"},
		{3, false, "h", "a"},
		{4, false, "h", ""},
		{5, false, "", ""},
		{6, false, "", ""}, // a box ahead of the authority (restored from a backup) is told nothing
	} {
		items, snapshot, version, _, err := a.RevocationItems(tc.since)
		live, gone := subjects(items)
		if err != nil || snapshot != tc.snapshot || version != 5 || string(live) != tc.live || string(gone) != tc.gone {
			t.Errorf("since %d: snapshot %v, live %q, gone %q (%v); want %v, %q, %q",
				tc.since, snapshot, live, gone, err, tc.snapshot, tc.live, tc.gone)
		}
		if !slices.IsSortedFunc(items, func(x, y RevEntry) int { return int(x.Subject[0]) - int(y.Subject[0]) }) {
			t.Errorf("since %d: items not in subject order", tc.since)
		}
	}
}

// TestStoreEventsInOrder: an upload must continue the events held without
// a gap, so that every event's link to the one before it is checked: a
// device that skips ahead is refused, and so is an event that does not
// link to its predecessor, however it arrives.
func TestStoreEventsInOrder(t *testing.T) {
	a, err := OpenAuthority(filepath.Join(t.TempDir(), "authority.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if err := a.AddToken("tok", "gate", t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	dev, err := a.Enroll("tok", "gate", make([]byte, 32), t0)
	if err != nil {
		t.Fatal(err)
	}
	// A chain of 120 events, as a box records them.
	var chain [][]byte
	var prev [32]byte
	for seq := uint64(1); seq <= 120; seq++ {
		e := Event{Seq: seq, Time: t0.Add(time.Duration(seq) * time.Second), Kind: "scan", Decision: "pass", Prev: prev}
		if e.Hash, err = ChainHash(e); err != nil {
			t.Fatal(err)
		}
		raw, err := EncodeEvent(e)
		if err != nil {
			t.Fatal(err)
		}
		chain, prev = append(chain, raw), e.Hash
	}
	if mark, err := a.StoreEvents(dev, chain[:5]); err != nil || mark != 5 {
		t.Fatalf("events 1-5: mark %d, %v", mark, err)
	}
	if mark, err := a.StoreEvents(dev, chain[99:100]); !errors.Is(err, ErrGap) || mark != 0 {
		t.Errorf("event 100 after event 5: mark %d, %v (want ErrGap)", mark, err)
	}
	if held, _ := a.DeviceEvents(dev, 6, 200); len(held) != 0 {
		t.Errorf("%d events held past the gap", len(held))
	}
	// An event that is well formed but does not link to event 5.
	forged := Event{Seq: 6, Time: t0, Kind: "scan", Decision: "pass"}
	forged.Hash, _ = ChainHash(forged)
	raw, _ := EncodeEvent(forged)
	if _, err := a.StoreEvents(dev, [][]byte{raw}); !errors.Is(err, ErrBadEvent) {
		t.Errorf("event 6 not linked to event 5: %v", err)
	}
	// A batch that starts inside what is held and goes on is fine.
	if mark, err := a.StoreEvents(dev, chain[2:120]); err != nil || mark != 120 {
		t.Errorf("events 3-120: mark %d, %v", mark, err)
	}
	if m, _ := a.Mark(dev); m != 120 {
		t.Errorf("mark %d", m)
	}
}

// chainOf returns n events as a box records them, linked from the first.
func chainOf(t *testing.T, n int) [][]byte {
	t.Helper()
	var chain [][]byte
	var prev [32]byte
	for seq := uint64(1); seq <= uint64(n); seq++ {
		e := Event{Seq: seq, Time: t0.Add(time.Duration(seq) * time.Second), Kind: "scan", Decision: "pass", Prev: prev}
		var err error
		if e.Hash, err = ChainHash(e); err != nil {
			t.Fatal(err)
		}
		raw, err := EncodeEvent(e)
		if err != nil {
			t.Fatal(err)
		}
		chain, prev = append(chain, raw), e.Hash
	}
	return chain
}

// TestStoreEventsHeldPastAGap: a database from before the gap rule holds
// events after a gap. Once the gap is filled the mark moves over them,
// checking each link, instead of stopping at the last event stored, which
// would leave the device sending the same batch forever.
func TestStoreEventsHeldPastAGap(t *testing.T) {
	a, err := OpenAuthority(filepath.Join(t.TempDir(), "authority.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if err := a.AddToken("tok", "gate", t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	dev, err := a.Enroll("tok", "gate", make([]byte, 32), t0)
	if err != nil {
		t.Fatal(err)
	}
	chain := chainOf(t, 20)
	if mark, err := a.StoreEvents(dev, chain[:5]); err != nil || mark != 5 {
		t.Fatalf("events 1-5: mark %d, %v", mark, err)
	}
	// Events 8-10 and 12-13 held past the gap, as the old rule kept them.
	holdRaw := func(seqs ...int) {
		err := a.db.Update(func(tx *bolt.Tx) error {
			evs := tx.Bucket(aEvents).Bucket([]byte(dev))
			for _, s := range seqs {
				if err := evs.Put(u64(uint64(s)), chain[s-1]); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	holdRaw(8, 9, 10, 12, 13)
	// The device sends 6 to 10: 8 to 10 are held already.
	if mark, err := a.StoreEvents(dev, chain[5:10]); err != nil || mark != 10 {
		t.Fatalf("events 6-10 with 8-10 held: mark %d, %v; want 10", mark, err)
	}
	// Event 11 fills the next gap: the mark moves over 12 and 13.
	if mark, err := a.StoreEvents(dev, chain[10:11]); err != nil || mark != 13 {
		t.Fatalf("event 11 with 12-13 held: mark %d, %v; want 13", mark, err)
	}
	// A held event that does not link to the one before it stops the mark,
	// and the upload of that event is refused.
	forged := Event{Seq: 15, Time: t0, Kind: "scan", Decision: "pass"}
	forged.Hash, _ = ChainHash(forged)
	raw, _ := EncodeEvent(forged)
	err = a.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(aEvents).Bucket([]byte(dev)).Put(u64(15), raw) })
	if err != nil {
		t.Fatal(err)
	}
	if mark, err := a.StoreEvents(dev, chain[13:14]); err != nil || mark != 14 {
		t.Fatalf("event 14 with an unlinked 15 held: mark %d, %v; want 14", mark, err)
	}
	if _, err := a.StoreEvents(dev, [][]byte{raw}); !errors.Is(err, ErrBadEvent) {
		t.Errorf("the held, unlinked event 15 uploaded: %v, want ErrBadEvent", err)
	}
	if m, _ := a.Mark(dev); m != 14 {
		t.Errorf("mark %d, want 14", m)
	}
}
