package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/checkpointd/checkpoint/internal/clock/clocktest"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func open(t *testing.T, path string) (*Box, *clocktest.Fake) {
	t.Helper()
	clk := clocktest.New(t0)
	b, err := OpenBox(path, Options{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b, clk
}

func event(i int) Event {
	return Event{Time: t0.Add(time.Duration(i) * time.Second), Kind: "scan", Decision: "pass", Status: "green",
		Subject: []byte(fmt.Sprintf("subj%06d", i)), CredentialID: []byte("cred0001"), Gate: "gate-3"}
}

func TestRecordChainAndReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "box.db")
	b, _ := open(t, path)
	var wg sync.WaitGroup
	seqs := make([]uint64, 200)
	for i := range seqs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			e, err := b.Record(context.Background(), event(i))
			if err != nil {
				t.Error(err)
				return
			}
			seqs[i] = e.Seq
		}(i)
	}
	wg.Wait()
	seen := map[uint64]bool{}
	for _, s := range seqs {
		if s == 0 || s > 200 || seen[s] {
			t.Fatalf("sequence numbers %v are not 1..200 each once", seqs)
		}
		seen[s] = true
	}
	if n, err := b.VerifyChain(); err != nil || n != 200 {
		t.Fatalf("VerifyChain: %d, %v", n, err)
	}
	b.Close()

	b2, _ := open(t, path)
	if b2.LastSeq() != 200 {
		t.Fatalf("after reopening, last seq %d", b2.LastSeq())
	}
	e, err := b2.Record(context.Background(), event(999))
	if err != nil || e.Seq != 201 {
		t.Fatalf("next event after reopening: %d, %v", e.Seq, err)
	}
	if n, err := b2.VerifyChain(); err != nil || n != 201 {
		t.Fatalf("VerifyChain after reopening: %d, %v", n, err)
	}
}

// TestTamperingIsDetected edits and deletes events behind the store's
// back, as someone with the file would.
func TestTamperingIsDetected(t *testing.T) {
	// editFifth changes the fifth event's decision, keeping its hash or,
	// with rehash, computing it anew.
	editFifth := func(tx *bolt.Tx, rehash bool) error {
		b := tx.Bucket(bucketEvents)
		e, err := DecodeEvent(b.Get(u64(5)))
		if err != nil {
			return err
		}
		e.Decision = "refuse"
		if rehash {
			if e.Hash, err = ChainHash(e); err != nil {
				return err
			}
		}
		raw, err := EncodeEvent(e)
		if err != nil {
			return err
		}
		return b.Put(u64(5), raw)
	}
	for name, tamper := range map[string]func(*bolt.Tx) error{
		"edit":            func(tx *bolt.Tx) error { return editFifth(tx, false) },
		"delete":          func(tx *bolt.Tx) error { return tx.Bucket(bucketEvents).Delete(u64(5)) },
		"delete the last": func(tx *bolt.Tx) error { return tx.Bucket(bucketEvents).Delete(u64(10)) },
		"rehash an edit":  func(tx *bolt.Tx) error { return editFifth(tx, true) },
	} {
		t.Run(name, func(t *testing.T) {
			b, _ := open(t, filepath.Join(t.TempDir(), "box.db"))
			for i := 0; i < 10; i++ {
				if _, err := b.Record(context.Background(), event(i)); err != nil {
					t.Fatal(err)
				}
			}
			if err := b.db.Update(tamper); err != nil {
				t.Fatal(err)
			}
			if _, err := b.VerifyChain(); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("VerifyChain after %s: %v", name, err)
			}
		})
	}
}

// TestRetention: events go 14 days after the authority acknowledged
// them, not before, whatever their age; unacknowledged events stay unless
// a supervisor forces a purge, which is recorded for the syncer.
func TestRetention(t *testing.T) {
	const keep = 14 * 24 * time.Hour
	b, clk := open(t, filepath.Join(t.TempDir(), "box.db"))
	for i := 0; i < 100; i++ {
		if _, err := b.Record(context.Background(), event(i)); err != nil {
			t.Fatal(err)
		}
	}
	prune := func(want int) {
		t.Helper()
		if r, err := b.Prune(keep); err != nil || r.Deleted != want || r.Unsent != 0 {
			t.Fatalf("Prune: %+v, %v; want %d deleted", r, err, want)
		}
	}
	clk.Advance(90 * 24 * time.Hour)
	prune(0) // old, but never acknowledged
	if err := b.SetMark(60); err != nil {
		t.Fatal(err)
	}
	prune(0) // acknowledged just now
	clk.Advance(13 * 24 * time.Hour)
	prune(0)
	clk.Advance(2 * 24 * time.Hour)
	prune(60)
	if u, _ := b.Unsent(); u != 40 {
		t.Errorf("%d unsent, want 40", u)
	}
	if lc, err := b.VerifyLog(); err != nil || !lc.OK || lc.First != 61 || lc.Pruned != 60 || lc.Checked != 40 {
		t.Errorf("the kept part verifies: %+v, %v", lc, err)
	}
	// An authority restored from a backup acknowledges less: the mark goes
	// back, and nothing more is pruned.
	if err := b.SetMark(10); err != nil {
		t.Fatal(err)
	}
	clk.Advance(30 * 24 * time.Hour)
	prune(0)
	if u, _ := b.Unsent(); u != 90 {
		t.Errorf("%d unsent after the rewind, want 90", u)
	}
	// A forced purge takes the old unacknowledged events too, and says so.
	r, err := b.Purge(keep)
	if err != nil || r.Deleted != 40 || r.Unsent != 40 || r.Forced == nil || r.Forced.From != 61 || r.Forced.To != 100 {
		t.Fatalf("Purge: %+v, %v", r, err)
	}
	if f, err := b.ForcedPurges(); err != nil || len(f) != 1 || f[0].To != 100 || f[0].Last != r.Forced.Last || !f[0].At.Equal(r.Forced.At) {
		t.Errorf("ForcedPurges: %+v, %v", f, err)
	}
	if lc, err := b.VerifyLog(); err != nil || !lc.OK || lc.Pruned != 100 || len(lc.Forced) != 1 {
		t.Errorf("after the forced purge: %+v, %v", lc, err)
	}
}

func TestRecordAfterClose(t *testing.T) {
	b, _ := open(t, filepath.Join(t.TempDir(), "box.db"))
	b.Close()
	if _, err := b.Record(context.Background(), event(1)); !errors.Is(err, ErrClosed) {
		t.Errorf("Record after Close: %v", err)
	}
}

func TestDiskStatus(t *testing.T) {
	clk := clocktest.New(t0)
	b, err := OpenBox(filepath.Join(t.TempDir(), "box.db"), Options{Clock: clk, DiskLow: 1 << 62})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if d := b.Disk(); !d.Low || d.Free <= 0 {
		t.Errorf("with an impossible threshold the alarm is not raised: %+v", d)
	}
}

// TestOpenLocked opens each kind of database while it is open already
// (bbolt's file lock conflicts between two opens even in one process): the
// second open says the file is held by another process, and which.
func TestOpenLocked(t *testing.T) {
	for _, tc := range []struct {
		name, holder string
		open         func(path string) (io.Closer, error)
	}{
		{"box", "another checkpointd", func(p string) (io.Closer, error) { return OpenBox(p, Options{Clock: clocktest.New(t0)}) }},
		{"authority", "another authority serve", func(p string) (io.Closer, error) { return OpenAuthority(p) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), tc.name+".db")
			first, err := tc.open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer first.Close()
			start := time.Now()
			second, err := tc.open(path)
			if err == nil {
				second.Close()
				t.Fatal("a second open of a held database succeeded")
			}
			if !errors.Is(err, ErrLocked) {
				t.Errorf("error %v, want ErrLocked", err)
			}
			for _, want := range []string{path, "held by another process", tc.holder} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
			if d := time.Since(start); d > 3*lockWait {
				t.Errorf("the second open took %v", d)
			}
			// Once the first lets go, the file opens.
			first.Close()
			again, err := tc.open(path)
			if err != nil {
				t.Fatalf("open after the holder closed: %v", err)
			}
			again.Close()
		})
	}
}

// TestAnchorBootFields: an anchor keeps its boot id and boot clock
// reading, and one stored without them (by an earlier version) still
// loads.
func TestAnchorBootFields(t *testing.T) {
	b, _ := open(t, filepath.Join(t.TempDir(), "box.db"))
	a := Anchor{Server: t0, Wall: t0.Add(time.Minute), RTT: 80 * time.Millisecond, BootID: "boot-1", Boot: 3 * time.Hour}
	if err := b.SetAnchor(a); err != nil {
		t.Fatal(err)
	}
	got, ok, err := b.Anchor()
	if err != nil || !ok || !got.Server.Equal(a.Server) || !got.Wall.Equal(a.Wall) || got.RTT != a.RTT ||
		got.BootID != a.BootID || got.Boot != a.Boot {
		t.Fatalf("anchor %+v, %v, %v; want %+v", got, ok, err, a)
	}
	type oldAnchor struct {
		Server time.Time     `cbor:"1,keyasint"`
		Wall   time.Time     `cbor:"2,keyasint"`
		RTT    time.Duration `cbor:"3,keyasint"`
	}
	if err := b.putMeta(keyAnchor, oldAnchor{Server: t0, Wall: t0, RTT: time.Second}); err != nil {
		t.Fatal(err)
	}
	got, ok, err = b.Anchor()
	if err != nil || !ok || !got.Server.Equal(t0) || got.RTT != time.Second || got.BootID != "" || got.Boot != 0 {
		t.Fatalf("old anchor loaded as %+v, %v, %v", got, ok, err)
	}
}
