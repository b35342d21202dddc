package store

import (
	"encoding/binary"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestRetentionInBatches: Prune and Purge work through the log in several
// transactions; every event due goes with its index entries, and a forced
// purge is recorded as one range however many transactions it took.
func TestRetentionInBatches(t *testing.T) {
	const keep = 14 * 24 * time.Hour
	old := pruneBatch
	pruneBatch = 7
	t.Cleanup(func() { pruneBatch = old })
	b, clk := openFast(t, filepath.Join(t.TempDir(), "box.db"))
	recordAll(t, b, varied(100, 11))
	last := allEvents(t, b)[99]
	index := func() (sums, hours int, lowest uint64) {
		t.Helper()
		lowest = 1 << 63
		err := b.db.View(func(tx *bolt.Tx) error {
			sums = tx.Bucket(bucketSummaries).Stats().KeyN
			return tx.Bucket(bucketHours).ForEach(func(_, v []byte) error {
				hours++
				lowest = min(lowest, binary.BigEndian.Uint64(v[8:]))
				return nil
			})
		})
		if err != nil {
			t.Fatal(err)
		}
		return sums, hours, lowest
	}

	if err := b.SetMark(40); err != nil {
		t.Fatal(err)
	}
	clk.Advance(15 * 24 * time.Hour)
	if r, err := b.Prune(keep); err != nil || r.Deleted != 40 || r.Through != 40 || r.Unsent != 0 || r.Forced != nil {
		t.Fatalf("Prune: %+v, %v", r, err)
	}
	if evs := allEvents(t, b); len(evs) != 60 || evs[0].Seq != 41 {
		t.Fatalf("after the prune %d events, the first %d", len(evs), evs[0].Seq)
	}
	if sums, hours, lowest := index(); sums != 60 || hours == 0 || lowest < 41 {
		t.Errorf("after the prune %d summaries, %d hours, the lowest hour ending at %d", sums, hours, lowest)
	}

	// Acknowledged now: not yet due; forced, every event older than keep
	// goes, 30 of them unacknowledged.
	if err := b.SetMark(70); err != nil {
		t.Fatal(err)
	}
	clk.Advance(24 * time.Hour)
	if r, err := b.Prune(keep); err != nil || r.Deleted != 0 {
		t.Fatalf("Prune of events acknowledged a day ago: %+v, %v", r, err)
	}
	r, err := b.Purge(keep)
	if err != nil || r.Deleted != 60 || r.Through != 100 || r.Unsent != 30 || r.Forced == nil ||
		r.Forced.From != 71 || r.Forced.To != 100 || r.Forced.Last != last.Hash || !r.Forced.At.Equal(clk.Now()) {
		t.Fatalf("Purge: %+v, %v", r, err)
	}
	if f, err := b.ForcedPurges(); err != nil || len(f) != 1 || f[0].From != 71 || f[0].To != 100 || f[0].Last != last.Hash {
		t.Errorf("ForcedPurges: %+v, %v", f, err)
	}
	if p, ok, err := b.PrunedThrough(); err != nil || !ok || p.Seq != 100 || p.Hash != last.Hash {
		t.Errorf("PrunedThrough: %+v, %v, %v", p, ok, err)
	}
	if sums, hours, _ := index(); sums != 0 || hours != 0 {
		t.Errorf("after the purge %d summaries, %d hours are left", sums, hours)
	}
	if lc, err := b.VerifyLog(); err != nil || !lc.OK || lc.Pruned != 100 || lc.Checked != 0 || len(lc.Forced) != 1 {
		t.Errorf("VerifyLog: %+v, %v", lc, err)
	}
}
