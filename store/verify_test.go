package store

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/checkpointd/checkpoint/internal/clock/clocktest"
)

// markedEvents returns n events, each with a Gate no other event's
// contains: where it is in the file can be found.
func markedEvents(n int) []Event {
	evs := varied(n, 5)
	for i := range evs {
		evs[i].Gate = marker(i + 1)
	}
	return evs
}

func marker(seq int) string { return fmt.Sprintf("gate-marker-%05d", seq) }

// boxFile records evs in a box, closes it and returns its file.
func boxFile(t *testing.T, evs []Event) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "box.db")
	b, err := OpenBox(path, Options{Clock: clocktest.New(t0), Key: testKey})
	if err != nil {
		t.Fatal(err)
	}
	b.db.NoSync = true
	recordAll(t, b, evs)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// copyFile copies a closed box's file, as someone taking it away would.
func copyFile(t *testing.T, path string) string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cp := filepath.Join(t.TempDir(), "copy.db")
	if err := os.WriteFile(cp, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	return cp
}

// flipByte changes one byte inside event seq's stored value, in the raw
// file: the 'g' of its marker. bbolt leaves earlier copies of a page in
// free pages, so every copy of the marker is changed; only one is live.
func flipByte(seq int) func(t *testing.T, path string) {
	return func(t *testing.T, path string) {
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		m := []byte(marker(seq))
		n := 0
		for i := bytes.Index(raw, m); i >= 0; i = bytes.Index(raw, m) {
			raw[i] = 'G'
			n++
		}
		if n == 0 {
			t.Fatalf("event %d's marker is not in the file", seq)
		}
		if err := os.WriteFile(path, raw, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// withBolt changes the file through bbolt, as someone holding the file
// could.
func withBolt(fn func(tx *bolt.Tx) error) func(t *testing.T, path string) {
	return func(t *testing.T, path string) {
		db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if err := db.Update(fn); err != nil {
			t.Fatal(err)
		}
	}
}

// remove deletes events and their summaries.
func remove(seqs ...uint64) func(t *testing.T, path string) {
	return withBolt(func(tx *bolt.Tx) error {
		for _, s := range seqs {
			if tx.Bucket(bucketEvents).Get(u64(s)) == nil {
				return fmt.Errorf("no event %d to remove", s)
			}
			if err := tx.Bucket(bucketEvents).Delete(u64(s)); err != nil {
				return err
			}
			if err := tx.Bucket(bucketSummaries).Delete(u64(s)); err != nil {
				return err
			}
		}
		return nil
	})
}

func cut(from, to uint64) func(t *testing.T, path string) {
	var seqs []uint64
	for s := from; s <= to; s++ {
		seqs = append(seqs, s)
	}
	return remove(seqs...)
}

// rewrite changes event seq with change and stores it with its hash
// computed anew: the event holds, the link from the next one does not.
func rewrite(seq uint64, change func(*Event)) func(t *testing.T, path string) {
	return withBolt(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucketEvents)
		e, err := DecodeEvent(bk.Get(u64(seq)))
		if err != nil {
			return err
		}
		change(&e)
		if e.Hash, err = ChainHash(e); err != nil {
			return err
		}
		raw, err := EncodeEvent(e)
		if err != nil {
			return err
		}
		return bk.Put(u64(seq), raw)
	})
}

func both(fns ...func(t *testing.T, path string)) func(t *testing.T, path string) {
	return func(t *testing.T, path string) {
		for _, fn := range fns {
			fn(t, path)
		}
	}
}

// smallBatches makes VerifyLog read n events a transaction until the
// test ends.
func smallBatches(t *testing.T, n int) {
	old := verifyBatch
	verifyBatch = n
	t.Cleanup(func() { verifyBatch = old })
}

// verifyBoth runs VerifyLog on the file opened read-only, then read-write,
// reading the log in one transaction and in batches of 7 events.
func verifyBoth(t *testing.T, path string, check func(how string, lc LogCheck)) {
	t.Helper()
	for _, how := range []string{"read-only", "read-write"} {
		open := OpenBoxReadOnly
		if how == "read-write" {
			open = OpenBox
		}
		b, err := open(path, Options{Clock: clocktest.New(t0)})
		if err != nil {
			t.Fatalf("%s: %v", how, err)
		}
		for _, batch := range []int{verifyBatch, 7} {
			old := verifyBatch
			verifyBatch = batch
			lc, err := b.VerifyLog()
			verifyBatch = old
			if err != nil {
				b.Close()
				t.Fatalf("%s: VerifyLog: %v", how, err)
			}
			check(fmt.Sprintf("%s, batches of %d", how, batch), lc)
		}
		b.Close()
	}
}

// TestVerifyLogTampered tampers with copies of a box's file and checks
// that VerifyLog names what was done and the first event it touched.
func TestVerifyLogTampered(t *testing.T) {
	const n = 40
	orig := boxFile(t, markedEvents(n))
	for _, tc := range []struct {
		name    string
		tamper  func(t *testing.T, path string)
		problem string
		at      uint64
	}{
		{"untouched", nil, "", 0},
		{"a byte of event 17", flipByte(17), "changed", 17},
		{"a byte of the first event", flipByte(1), "changed", 1},
		{"a byte of the last event", flipByte(n), "changed", n},
		{"event 23 removed", remove(23), "missing", 23},
		{"events 5 and 6 removed", remove(5, 6), "missing", 5},
		{"the first event removed", remove(1), "missing", 1},
		{"the last 5 cut off", cut(n-4, n), "cut", n - 4},
		{"the last event cut off", cut(n, n), "cut", n},
		{"every event cut off", cut(1, n), "cut", 1},
		{"event 12 rewritten with its hash", rewrite(12, func(e *Event) { e.Decision = "pass"; e.Reasons = nil }), "changed", 12},
		{"the first event rewritten with its hash", rewrite(1, func(e *Event) { e.Temperature++ }), "changed", 1},
		{"the last event rewritten with its hash", rewrite(n, func(e *Event) { e.Temperature++ }), "changed", n},
		{"event 20 renumbered", rewrite(20, func(e *Event) { e.Seq = 21 }), "changed", 20},
		// Event 8 no longer links to 7: either could have been changed, and
		// the first is named.
		{"event 8 relinked", rewrite(8, func(e *Event) { e.Prev[0] ^= 1 }), "changed", 7},
		{"removed at 10, changed at 30", both(remove(10), flipByte(30)), "missing", 10},
		{"changed at 10, cut from 30", both(flipByte(10), cut(30, n)), "changed", 10},
		{"an event that does not decode", withBolt(func(tx *bolt.Tx) error {
			return tx.Bucket(bucketEvents).Put(u64(33), []byte{0xff, 0x00})
		}), "changed", 33},
		{"an event added after the last", withBolt(func(tx *bolt.Tx) error {
			raw := tx.Bucket(bucketEvents).Get(u64(n))
			return tx.Bucket(bucketEvents).Put(u64(n+1), append([]byte(nil), raw...))
		}), "changed", n + 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := copyFile(t, orig)
			if tc.tamper != nil {
				tc.tamper(t, path)
			}
			verifyBoth(t, path, func(how string, lc LogCheck) {
				if lc.OK != (tc.problem == "") || lc.Problem != tc.problem || lc.At != tc.at || lc.Recorded != n {
					t.Errorf("%s: %+v; want problem %q at %d", how, lc, tc.problem, tc.at)
				}
				if lc.Problem != "" && lc.Detail == "" {
					t.Errorf("%s: a problem without detail", how)
				}
				if tc.problem == "" && (lc.First != 1 || lc.Last != n || lc.Checked != n) {
					t.Errorf("%s: untouched: %+v", how, lc)
				}
			})
		})
	}
}

// TestVerifyLogAfterRetention: what retention and a forced purge removed
// is not a hole; tampering with what they kept still shows.
func TestVerifyLogAfterRetention(t *testing.T) {
	const keep = 14 * 24 * time.Hour
	path := filepath.Join(t.TempDir(), "box.db")
	clk := clocktest.New(t0)
	b, err := OpenBox(path, Options{Clock: clk, Key: testKey})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { b.Close() }()
	b.db.NoSync = true
	recordAll(t, b, markedEvents(60))
	if err := b.SetMark(30); err != nil {
		t.Fatal(err)
	}
	clk.Advance(15 * 24 * time.Hour)
	if r, err := b.Prune(keep); err != nil || r.Deleted != 30 {
		t.Fatalf("Prune: %+v, %v", r, err)
	}
	if lc, err := b.VerifyLog(); err != nil || !lc.OK || lc.First != 31 || lc.Last != 60 || lc.Checked != 30 || lc.Pruned != 30 || lc.Recorded != 60 {
		t.Fatalf("after the prune: %+v, %v", lc, err)
	}
	b.Close()
	for _, tc := range []struct {
		name    string
		tamper  func(t *testing.T, path string)
		problem string
		at      uint64
	}{
		{"the first kept event removed", remove(31), "missing", 31},
		{"the first kept event relinked", rewrite(31, func(e *Event) { e.Prev[5] ^= 1 }), "changed", 31},
		{"a byte of event 45", flipByte(45), "changed", 45},
		{"the last 10 cut off", cut(51, 60), "cut", 51},
		// A version before the pruning record: the events missing at the
		// start are fine if the authority acknowledged them.
		{"no pruning record", withBolt(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Delete(keyPruned) }), "", 0},
		{"no pruning record, fewer acknowledged", withBolt(func(tx *bolt.Tx) error {
			if err := tx.Bucket(bucketMeta).Put(keyMark, u64(29)); err != nil {
				return err
			}
			return tx.Bucket(bucketMeta).Delete(keyPruned)
		}), "missing", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cp := copyFile(t, path)
			tc.tamper(t, cp)
			verifyBoth(t, cp, func(how string, lc LogCheck) {
				if lc.OK != (tc.problem == "") || lc.Problem != tc.problem || lc.At != tc.at || lc.Problem != "missing" && lc.Pruned != 30 {
					t.Errorf("%s: %+v; want problem %q at %d", how, lc, tc.problem, tc.at)
				}
				if lc.OK && (lc.First != 31 || lc.Last != 60 || lc.Checked != 30) {
					t.Errorf("%s: %+v", how, lc)
				}
			})
		})
	}

	// A forced purge takes every event: nothing is left to check, and
	// nothing is missing; the events recorded next link to the last one
	// purged.
	if b, err = OpenBox(path, Options{Clock: clk, Key: testKey}); err != nil {
		t.Fatal(err)
	}
	b.db.NoSync = true
	clk.Advance(15 * 24 * time.Hour)
	if r, err := b.Purge(keep); err != nil || r.Deleted != 30 || r.Unsent != 30 || r.Forced == nil || r.Forced.From != 31 || r.Forced.To != 60 {
		t.Fatalf("Purge: %+v, %v", r, err)
	}
	if lc, err := b.VerifyLog(); err != nil || !lc.OK || lc.Checked != 0 || lc.Pruned != 60 || len(lc.Forced) != 1 {
		t.Fatalf("after the forced purge: %+v, %v", lc, err)
	}
	for i := 0; i < 5; i++ {
		e := event(i)
		e.Time = clk.Now()
		if _, err := b.Record(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	if lc, err := b.VerifyLog(); err != nil || !lc.OK || lc.First != 61 || lc.Last != 65 || lc.Checked != 5 || lc.Pruned != 60 {
		t.Fatalf("events after the forced purge: %+v, %v", lc, err)
	}
}

// TestVerifyLogWhileRecording: a box that records and prunes while the log
// is checked is not reported changed, cut or holed.
func TestVerifyLogWhileRecording(t *testing.T) {
	smallBatches(t, 16) // the walk takes many transactions
	b, clk := openFast(t, filepath.Join(t.TempDir(), "box.db"))
	recordAll(t, b, varied(100, 6))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			e := event(i)
			e.Time = clk.Now()
			if _, err := b.Record(context.Background(), e); err != nil {
				t.Error(err)
				return
			}
			if i%10 == 9 { // acknowledge all, and let retention take the oldest
				if err := b.SetMark(b.LastSeq()); err != nil {
					t.Error(err)
					return
				}
				clk.Advance(time.Hour)
				if _, err := b.Prune(10 * time.Hour); err != nil {
					t.Error(err)
					return
				}
			}
		}
	}()
	bad := 0
	const checks = 100
	for i := 0; i < checks; i++ {
		lc, err := b.VerifyLog()
		if err != nil {
			t.Fatal(err)
		}
		if !lc.OK {
			if bad++; bad <= 3 {
				t.Errorf("check %d: %+v", i, lc)
			}
		}
	}
	close(stop)
	wg.Wait()
	if bad > 0 {
		t.Errorf("%d checks of %d found a problem in an untouched log", bad, checks)
	}
	if p, ok, err := b.PrunedThrough(); err != nil || !ok || p.Seq == 0 {
		t.Errorf("retention took nothing while the log was checked: %+v, %v, %v", p, ok, err)
	}
}
