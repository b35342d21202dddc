package store

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func subj(c byte) [SubjectSize]byte {
	var s [SubjectSize]byte
	for i := range s {
		s[i] = c
	}
	return s
}

func entry(c byte, before time.Time) RevEntry {
	return RevEntry{Subject: subj(c), Before: before.Unix(), DropAfter: before.Add(30 * 24 * time.Hour).Unix()}
}

// digestOf is what the authority would sign for a set.
func digestOf(es ...RevEntry) SetDigest {
	var d SetDigest
	for _, e := range es {
		d.Add(e)
	}
	return d
}

func revoked(b *Box, c byte, issued time.Time) bool {
	s := subj(c)
	return b.Revoked(s[:], issued)
}

func countEntries(t *testing.T, b *Box) int {
	t.Helper()
	n := 0
	err := b.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRevs).ForEach(func(k, _ []byte) error {
			n += tx.Bucket(bucketRevs).Bucket(k).Stats().KeyN
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestRevocationVersions(t *testing.T) {
	path := filepath.Join(t.TempDir(), "box.db")
	b, _ := open(t, path)
	before := t0.Add(-time.Hour)
	issued := t0.Add(-2 * time.Hour)
	a, bb, c := entry('a', before), entry('b', before), entry('c', before)

	if revoked(b, 'a', issued) || !b.ValidUntil().IsZero() {
		t.Fatal("a new box knows revocations")
	}
	// Version 1, a snapshot in two chunks.
	if err := b.BeginRevocations(Staging{Version: 1, Snapshot: true, Chunks: 2, Manifest: []byte("m1")}); err != nil {
		t.Fatal(err)
	}
	if err := b.ApplyChunk(1, 0, []RevEntry{a, bb}); err != nil {
		t.Fatal(err)
	}
	if revoked(b, 'a', issued) {
		t.Fatal("a half-downloaded version is in force")
	}
	// The box restarts in the middle of the download, and resumes.
	b.Close()
	b, _ = open(t, path)
	st, err := b.Staging()
	if err != nil || st == nil || st.Next != 1 || st.Version != 1 {
		t.Fatalf("download state after restart: %+v, %v", st, err)
	}
	if err := b.BeginRevocations(Staging{Version: 1, Snapshot: true, Chunks: 2, Manifest: []byte("m1")}); err != nil {
		t.Fatal(err)
	}
	if err := b.ApplyChunk(1, 0, []RevEntry{a, bb}); err != nil {
		t.Fatal(err) // already applied: a no-op
	}
	if err := b.ApplyChunk(1, 1, []RevEntry{c}); err != nil {
		t.Fatal(err)
	}
	if err := b.CommitRevocations(digestOf(a, bb, c), t0.Add(72*time.Hour)); err != nil {
		t.Fatal(err)
	}
	// Revoked means issued at or before the cut-off, to the second.
	if !revoked(b, 'a', issued) || !revoked(b, 'c', issued) || !revoked(b, 'a', before) || revoked(b, 'a', before.Add(time.Second)) ||
		revoked(b, 'd', issued) {
		t.Fatal("version 1 lookups wrong")
	}

	// Version 2, a delta: a is revoked again later, b is lifted, d is new.
	later := t0.Add(-10 * time.Minute)
	a2, d := entry('a', later), entry('d', before)
	tombB := RevEntry{Subject: subj('b'), Tombstone: true}
	if err := b.BeginRevocations(Staging{Version: 2, Since: 1, Chunks: 1, Manifest: []byte("m2")}); err != nil {
		t.Fatal(err)
	}
	if err := b.ApplyChunk(2, 0, []RevEntry{a2, tombB, d}); err != nil {
		t.Fatal(err)
	}
	if !revoked(b, 'b', issued) || revoked(b, 'd', issued) {
		t.Fatal("a staged delta is in force before its commit")
	}
	if err := b.CommitRevocations(digestOf(a2, c, d), t0.Add(72*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if revoked(b, 'b', issued) || !revoked(b, 'd', issued) || !revoked(b, 'a', t0.Add(-30*time.Minute)) {
		t.Fatal("version 2 lookups wrong")
	}

	// Version 3 does not add up: rolled back, version 2 stays in force.
	e := entry('e', before)
	if err := b.BeginRevocations(Staging{Version: 3, Since: 2, Chunks: 1, Manifest: []byte("m3")}); err != nil {
		t.Fatal(err)
	}
	if err := b.ApplyChunk(3, 0, []RevEntry{e}); err != nil {
		t.Fatal(err)
	}
	if err := b.CommitRevocations(digestOf(a2, c, d), t0.Add(96*time.Hour)); !errors.Is(err, ErrMismatch) {
		t.Fatalf("commit of a set that does not match: %v", err)
	}
	if v, _, _ := b.RevocationVersion(); v != 2 || revoked(b, 'e', issued) {
		t.Fatalf("after a failed commit: version %d, e revoked %v", v, revoked(b, 'e', issued))
	}
	if st, _ := b.Staging(); st != nil {
		t.Fatal("the failed download was not rolled back")
	}

	// An older version is refused.
	if err := b.BeginRevocations(Staging{Version: 1, Snapshot: true, Chunks: 1}); err == nil {
		t.Fatal("rolled back to version 1")
	}

	// Compaction drops superseded entries and keeps every answer.
	// Six entries: a, b, c at version 1; a, b's tombstone, d at 2. Gone:
	// a@1 (superseded), b@1 and the tombstone in force.
	if total := countEntries(t, b); total != 6 {
		t.Fatalf("%d entries before compaction, want 6", total)
	}
	if n, err := b.Compact(); err != nil || n != 3 {
		t.Fatalf("compacted %d, want 3 (%v)", n, err)
	}
	if revoked(b, 'b', issued) || !revoked(b, 'd', issued) || !revoked(b, 'a', t0.Add(-30*time.Minute)) || !revoked(b, 'c', issued) {
		t.Fatal("compaction changed an answer")
	}
	if got := countEntries(t, b); got != 3 {
		t.Errorf("%d entries after compaction, want 3 (a, c, d)", got)
	}

	// A snapshot replaces everything.
	f := entry('f', before)
	if err := b.BeginRevocations(Staging{Version: 4, Since: 2, Snapshot: true, Chunks: 1, Manifest: []byte("m4")}); err != nil {
		t.Fatal(err)
	}
	if err := b.ApplyChunk(4, 0, []RevEntry{f}); err != nil {
		t.Fatal(err)
	}
	if err := b.CommitRevocations(digestOf(f), t0.Add(100*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if revoked(b, 'a', issued) || !revoked(b, 'f', issued) {
		t.Fatal("the snapshot did not replace the old set")
	}
	if _, err := b.Compact(); err != nil || countEntries(t, b) != 1 {
		t.Errorf("after compacting the snapshot: %d entries, %v", countEntries(t, b), err)
	}
	// The same version re-signed with a later expiry extends it.
	if err := b.ExtendRevocations(4, t0.Add(200*time.Hour)); err != nil || !b.ValidUntil().Equal(t0.Add(200*time.Hour)) {
		t.Errorf("extend: %v, until %v", err, b.ValidUntil())
	}
}
