package store

import (
	"path/filepath"
	"slices"
	"testing"
	"time"
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
