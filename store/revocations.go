package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Revocation lists reach a checkpoint as versions: the authority's set of
// entries at version N, sent either as the changes since the box's version
// (a delta) or whole (a snapshot), in chunks. The box stores each entry
// under (subject, version), so that a version being downloaded sits beside
// the one in force without disturbing it: lookups read only versions
// between the last snapshot (Base) and the version in force (Active). When
// the last chunk is in and the count and digest of the resulting set match
// what the authority signed, one small transaction makes the new version
// the one in force; until then scanning uses the old one, and a failed or
// abandoned download is rolled back. Old versions are compacted away
// afterwards in bounded transactions.

// SubjectSize is the size of a subject pseudonym.
const SubjectSize = 10

// RevEntry is one item of a revocation version: the subject's credentials
// issued at or before Before are revoked, and the entry may be forgotten
// at DropAfter. A Tombstone says the subject's entry was removed.
type RevEntry struct {
	Subject   [SubjectSize]byte
	Before    int64 // Unix seconds
	DropAfter int64
	Tombstone bool
}

// hash is the entry's contribution to a set digest.
func (e RevEntry) hash() [32]byte {
	var b [SubjectSize + 16]byte
	copy(b[:], e.Subject[:])
	binary.BigEndian.PutUint64(b[SubjectSize:], uint64(e.Before))
	binary.BigEndian.PutUint64(b[SubjectSize+8:], uint64(e.DropAfter))
	return sha256.Sum256(b[:])
}

// SetDigest is an order-independent digest of a set of entries: the XOR of
// their hashes, with their count. Adding and removing an entry are the
// same operation, so it is kept up to date as entries change.
type SetDigest struct {
	Count  uint64   `cbor:"1,keyasint"`
	Digest [32]byte `cbor:"2,keyasint"`
}

// toggle adds e to the set or removes it: the same XOR, a different count.
func (d *SetDigest) toggle(e RevEntry, add bool) {
	h := e.hash()
	for i := range d.Digest {
		d.Digest[i] ^= h[i]
	}
	if add {
		d.Count++
	} else {
		d.Count--
	}
}

// Add and Remove keep a digest for a set the caller holds.
func (d *SetDigest) Add(e RevEntry)    { d.toggle(e, true) }
func (d *SetDigest) Remove(e RevEntry) { d.toggle(e, false) }

// revState is which revocation version is in force.
type revState struct {
	Active  uint64    `cbor:"1,keyasint"` // the version in force; 0: none yet
	Base    uint64    `cbor:"2,keyasint"` // the last snapshot at or below Active
	Expires time.Time `cbor:"3,keyasint"` // when the version in force goes stale
	Set     SetDigest `cbor:"4,keyasint"`
}

// Staging is a download in progress.
type Staging struct {
	Version  uint64    `cbor:"1,keyasint"`
	Since    uint64    `cbor:"2,keyasint"`
	Snapshot bool      `cbor:"3,keyasint"`
	Chunks   int       `cbor:"4,keyasint"`
	Next     int       `cbor:"5,keyasint"` // chunks applied so far
	Set      SetDigest `cbor:"6,keyasint"` // the set as it will be
	Manifest []byte    `cbor:"7,keyasint"` // the signed manifest, as received
}

// Errors of revocation updates.
var (
	ErrStaleStaging = errors.New("store: no such revocation download in progress")
	ErrMismatch     = errors.New("store: revocation set does not match the authority's count and digest")
)

func (b *Box) loadRevState(meta *bolt.Bucket) error {
	b.revState = revState{}
	if v := meta.Get(keyRevState); v != nil {
		return decMode.Unmarshal(v, &b.revState)
	}
	return nil
}

// RevocationVersion returns the version in force, when it goes stale, and
// its set's count and digest.
func (b *Box) RevocationVersion() (version uint64, expires time.Time, set SetDigest) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.revState.Active, b.revState.Expires, b.revState.Set
}

// ValidUntil is when the revocation list in force goes stale (zero when
// there is none): the verify.Revocations interface.
func (b *Box) ValidUntil() time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.revState.Expires
}

func revKey(s [SubjectSize]byte, version uint64) []byte {
	k := make([]byte, SubjectSize+8)
	copy(k, s[:])
	binary.BigEndian.PutUint64(k[SubjectSize:], version)
	return k
}

func encodeRev(e RevEntry) []byte {
	v := make([]byte, 16)
	if e.Tombstone {
		return v[:0] // an empty value is a tombstone
	}
	binary.BigEndian.PutUint64(v, uint64(e.Before))
	binary.BigEndian.PutUint64(v[8:], uint64(e.DropAfter))
	return v
}

func decodeRev(s [SubjectSize]byte, v []byte) RevEntry {
	if len(v) < 16 {
		return RevEntry{Subject: s, Tombstone: true}
	}
	return RevEntry{Subject: s, Before: int64(binary.BigEndian.Uint64(v)), DropAfter: int64(binary.BigEndian.Uint64(v[8:]))}
}

// current returns the subject's entry in the highest version within
// [lo, hi], if any.
func current(part *bolt.Bucket, s [SubjectSize]byte, lo, hi uint64) (RevEntry, bool) {
	c := part.Cursor()
	var found RevEntry
	ok := false
	for k, v := c.Seek(s[:]); k != nil && bytes.HasPrefix(k, s[:]); k, v = c.Next() {
		ver := binary.BigEndian.Uint64(k[SubjectSize:])
		if ver < lo || ver > hi {
			continue
		}
		found, ok = decodeRev(s, v), true // keys ascend by version
	}
	if ok && found.Tombstone {
		return RevEntry{}, false
	}
	return found, ok
}

// Revoked reports whether a credential of subject issued at issuedAt is
// revoked by the version in force: the verify.Revocations interface. It
// is one short read transaction.
func (b *Box) Revoked(subject []byte, issuedAt time.Time) bool {
	if len(subject) != SubjectSize {
		return false
	}
	s := [SubjectSize]byte(subject)
	b.mu.Lock()
	st := b.revState
	b.mu.Unlock()
	if st.Active == 0 {
		return false
	}
	revoked := false
	b.db.View(func(tx *bolt.Tx) error {
		e, ok := current(tx.Bucket(bucketRevs).Bucket(s[:1]), s, st.Base, st.Active)
		revoked = ok && issuedAt.Unix() <= e.Before
		return nil
	})
	return revoked
}

// Staging returns the download in progress, if any.
func (b *Box) Staging() (*Staging, error) {
	var st *Staging
	err := b.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketMeta).Get(keyStaging)
		if v == nil {
			return nil
		}
		st = new(Staging)
		return decMode.Unmarshal(v, st)
	})
	return st, err
}

// BeginRevocations starts downloading a version. A download in progress
// for another version (or base) is rolled back first.
func (b *Box) BeginRevocations(st Staging) error {
	cur, err := b.Staging()
	if err != nil {
		return err
	}
	if cur != nil {
		if cur.Version == st.Version && cur.Since == st.Since && cur.Snapshot == st.Snapshot && bytes.Equal(cur.Manifest, st.Manifest) {
			return nil // resume
		}
		if err := b.AbortRevocations(); err != nil {
			return err
		}
	}
	b.mu.Lock()
	active := b.revState
	b.mu.Unlock()
	if st.Version <= active.Active {
		return fmt.Errorf("store: revocation version %d is not newer than %d", st.Version, active.Active)
	}
	st.Next = 0
	st.Set = active.Set
	if st.Snapshot {
		st.Set = SetDigest{}
	}
	raw, err := encMode.Marshal(st)
	if err != nil {
		return err
	}
	return b.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keyStaging, raw)
	})
}

// ApplyChunk stores chunk index of the download in progress, in one
// transaction. Chunks must come in order; applying one again is a no-op.
func (b *Box) ApplyChunk(version uint64, index int, entries []RevEntry) error {
	b.mu.Lock()
	active := b.revState
	b.mu.Unlock()
	return b.db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		var st Staging
		v := meta.Get(keyStaging)
		if v == nil {
			return ErrStaleStaging
		}
		if err := decMode.Unmarshal(v, &st); err != nil {
			return err
		}
		if st.Version != version {
			return ErrStaleStaging
		}
		if index < st.Next {
			return nil // already applied
		}
		if index != st.Next {
			return fmt.Errorf("store: chunk %d before chunk %d", index, st.Next)
		}
		revs := tx.Bucket(bucketRevs)
		staged, err := tx.CreateBucketIfNotExists([]byte("revocations.staged"))
		if err != nil {
			return err
		}
		// Keys go in ascending, so pages can be filled: bbolt inserts into
		// sorted pages, and in order it only appends.
		staged.FillPercent = 0.9
		entries = slices.Clone(entries)
		slices.SortFunc(entries, func(a, b RevEntry) int { return bytes.Compare(a.Subject[:], b.Subject[:]) })
		for _, e := range entries {
			part := revs.Bucket(e.Subject[:1])
			part.FillPercent = 0.9
			if !st.Snapshot {
				if old, ok := current(part, e.Subject, active.Base, active.Active); ok {
					st.Set.Remove(old)
				}
			}
			if !e.Tombstone {
				st.Set.Add(e)
			}
			if err := part.Put(revKey(e.Subject, version), encodeRev(e)); err != nil {
				return err
			}
			if err := staged.Put(e.Subject[:], nil); err != nil {
				return err
			}
		}
		st.Next++
		raw, err := encMode.Marshal(st)
		if err != nil {
			return err
		}
		return meta.Put(keyStaging, raw)
	})
}

// CommitRevocations makes the downloaded version the one in force, if
// every chunk is in and the resulting set has the count and digest the
// authority signed. On a mismatch the download is rolled back.
func (b *Box) CommitRevocations(want SetDigest, expires time.Time) error {
	st, err := b.Staging()
	if err != nil {
		return err
	}
	if st == nil {
		return ErrStaleStaging
	}
	if st.Next != st.Chunks {
		return fmt.Errorf("store: %d of %d chunks applied", st.Next, st.Chunks)
	}
	if st.Set != want {
		if err := b.AbortRevocations(); err != nil {
			return err
		}
		return fmt.Errorf("%w: %d entries here, %d there", ErrMismatch, st.Set.Count, want.Count)
	}
	b.mu.Lock()
	next := b.revState
	b.mu.Unlock()
	next.Active, next.Expires, next.Set = st.Version, expires, st.Set
	if st.Snapshot {
		next.Base = st.Version
	}
	raw, err := encMode.Marshal(next)
	if err != nil {
		return err
	}
	err = b.db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if err := meta.Put(keyRevState, raw); err != nil {
			return err
		}
		return meta.Delete(keyStaging)
	})
	if err != nil {
		return err
	}
	b.mu.Lock()
	b.revState = next
	b.mu.Unlock()
	return b.clearStaged(0)
}

// ExtendRevocations records a later expiry for the version in force: the
// authority re-signs an unchanged list so that it does not go stale.
func (b *Box) ExtendRevocations(version uint64, expires time.Time) error {
	b.mu.Lock()
	next := b.revState
	b.mu.Unlock()
	if version != next.Active || !expires.After(next.Expires) {
		return nil
	}
	next.Expires = expires
	raw, err := encMode.Marshal(next)
	if err != nil {
		return err
	}
	if err := b.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keyRevState, raw) }); err != nil {
		return err
	}
	b.mu.Lock()
	b.revState = next
	b.mu.Unlock()
	return nil
}

// AbortRevocations rolls back the download in progress: the staged
// entries are deleted in bounded transactions.
func (b *Box) AbortRevocations() error {
	st, err := b.Staging()
	if err != nil || st == nil {
		return err
	}
	if err := b.clearStaged(st.Version); err != nil {
		return err
	}
	return b.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Delete(keyStaging) })
}

// clearStaged empties the list of staged subjects, deleting their entries
// of version drop when drop is not zero (a rollback).
func (b *Box) clearStaged(drop uint64) error {
	for {
		more := false
		err := b.db.Update(func(tx *bolt.Tx) error {
			staged := tx.Bucket([]byte("revocations.staged"))
			if staged == nil {
				return nil
			}
			revs := tx.Bucket(bucketRevs)
			c := staged.Cursor()
			n := 0
			for k, _ := c.First(); k != nil; k, _ = c.First() {
				if n == 20000 {
					more = true
					return nil
				}
				if drop != 0 {
					s := [SubjectSize]byte(k)
					if err := revs.Bucket(k[:1]).Delete(revKey(s, drop)); err != nil {
						return err
					}
				}
				if err := c.Delete(); err != nil {
					return err
				}
				n++
			}
			return tx.DeleteBucket([]byte("revocations.staged"))
		})
		if err != nil || !more {
			return err
		}
	}
}

// Compact deletes what lookups no longer read: entries older than the
// last snapshot, entries superseded by a later version in force, and
// tombstones in force. It works partition by partition, one transaction
// each, and leaves versions above the one in force (a download in
// progress) alone. It returns how many entries it deleted.
func (b *Box) Compact() (int, error) {
	b.mu.Lock()
	st := b.revState
	b.mu.Unlock()
	removed := 0
	for p := 0; p < 256; p++ {
		err := b.db.Update(func(tx *bolt.Tx) error {
			part := tx.Bucket(bucketRevs).Bucket([]byte{byte(p)})
			var del [][]byte
			type key struct {
				k    []byte
				tomb bool
			}
			var group []key // versions in force of one subject, ascending
			flush := func() {
				if len(group) == 0 {
					return
				}
				last := group[len(group)-1]
				for _, g := range group[:len(group)-1] {
					del = append(del, g.k)
				}
				if last.tomb {
					del = append(del, last.k)
				}
				group = group[:0]
			}
			c := part.Cursor()
			for k, v := c.First(); k != nil; k, v = c.Next() {
				if len(group) > 0 && !bytes.Equal(group[0].k[:SubjectSize], k[:SubjectSize]) {
					flush()
				}
				switch ver := binary.BigEndian.Uint64(k[SubjectSize:]); {
				case ver > st.Active:
				case ver < st.Base:
					del = append(del, append([]byte(nil), k...))
				default:
					group = append(group, key{append([]byte(nil), k...), len(v) < 16})
				}
			}
			flush()
			for _, k := range del {
				if err := part.Delete(k); err != nil {
					return err
				}
			}
			removed += len(del)
			return nil
		})
		if err != nil {
			return removed, err
		}
	}
	return removed, nil
}
