package store

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Authority is the reference authority's database: enrolled devices and
// their events, revocations by version, holders (their keys, colours and
// histories), registration proofs, the health departments' risk data and
// feeds, and the trust list it serves.
type Authority struct {
	db *bolt.DB
}

var (
	aMeta      = []byte("meta")
	aDevices   = []byte("devices")
	aTokens    = []byte("tokens")
	aEvents    = []byte("events")
	aMarks     = []byte("marks")
	aRevs      = []byte("revocations")
	aByVersion = []byte("revocations.by_version")
	aByDrop    = []byte("revocations.by_drop")
	// aPurged holds, per device, the ranges it declared purged before
	// upload (ForcedPurge, keyed by To).
	aPurged = []byte("purged")
	// The holders' buckets are in authority_holders.go. A file from before
	// holders declared themselves also has "holders" and "colours", the
	// operator's declarations, which nothing reads any more.

	aKeyRevVersion = []byte("revocations.version")
	aKeyRevSet     = []byte("revocations.set")
	aKeyTrust      = []byte("trust.list")
)

// Errors of the authority's database.
var (
	ErrUnknownDevice = errors.New("store: unknown device")
	ErrBadToken      = errors.New("store: enrolment token unknown, used or expired")
	ErrConflict      = errors.New("store: an event with this sequence number and different content is already held")
	ErrBadEvent      = errors.New("store: event does not verify")
	// ErrGap is an event uploaded past the next one expected: a device
	// uploads its log in order, so that every event's link to the one
	// before it is checked when it is stored.
	ErrGap = errors.New("store: event does not follow the events held without a gap")
)

// OpenAuthority opens (or creates) the authority's database at path. If
// another process holds it, it fails with ErrLocked after two seconds.
func OpenAuthority(path string) (*Authority, error) {
	db, err := openDB(path, "authority serve")
	if err != nil {
		return nil, err
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range append([][]byte{aMeta, aDevices, aTokens, aEvents, aMarks, aRevs, aByVersion, aByDrop, aPurged}, holderBuckets...) {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	return &Authority{db: db}, nil
}

// Close closes the database.
func (a *Authority) Close() error { return a.db.Close() }

type deviceRecord struct {
	Name     string    `cbor:"1,keyasint"`
	Key      []byte    `cbor:"2,keyasint"`
	Enrolled time.Time `cbor:"3,keyasint"`
}

type tokenRecord struct {
	Name    string    `cbor:"1,keyasint"`
	Expires time.Time `cbor:"2,keyasint"`
}

// AddToken stores a one-time enrolment token.
func (a *Authority) AddToken(token, name string, expires time.Time) error {
	raw, err := encMode.Marshal(tokenRecord{name, expires})
	if err != nil {
		return err
	}
	return a.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(aTokens).Put([]byte(token), raw) })
}

// Enroll uses a token to enrol a device key, and returns the device id.
func (a *Authority) Enroll(token, name string, key ed25519.PublicKey, now time.Time) (string, error) {
	var id string
	err := a.db.Update(func(tx *bolt.Tx) error {
		tokens := tx.Bucket(aTokens)
		raw := tokens.Get([]byte(token))
		if raw == nil {
			return ErrBadToken
		}
		var t tokenRecord
		if err := decMode.Unmarshal(raw, &t); err != nil {
			return err
		}
		if now.After(t.Expires) {
			return ErrBadToken
		}
		if err := tokens.Delete([]byte(token)); err != nil {
			return err
		}
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return err
		}
		id = hex.EncodeToString(b[:])
		rec, err := encMode.Marshal(deviceRecord{Name: name, Key: key, Enrolled: now})
		if err != nil {
			return err
		}
		if err := tx.Bucket(aDevices).Put([]byte(id), rec); err != nil {
			return err
		}
		_, err = tx.Bucket(aEvents).CreateBucketIfNotExists([]byte(id))
		return err
	})
	return id, err
}

// DeviceKey returns an enrolled device's key.
func (a *Authority) DeviceKey(id string) (ed25519.PublicKey, error) {
	var key ed25519.PublicKey
	err := a.db.View(func(tx *bolt.Tx) error {
		raw := tx.Bucket(aDevices).Get([]byte(id))
		if raw == nil {
			return ErrUnknownDevice
		}
		var d deviceRecord
		if err := decMode.Unmarshal(raw, &d); err != nil {
			return err
		}
		key = ed25519.PublicKey(d.Key)
		return nil
	})
	return key, err
}

// StoreEvents stores a device's uploaded events, once each: an event
// already held with the same hash is skipped, one with another hash is a
// conflict. Events must come in order without a gap (ErrGap): each one is
// at most one past the mark, so that its hash and its link to the event
// before it (the zero hash for the first) are always checked. Events held
// past the mark (a database from before this rule kept events after a
// gap) are checked the same way when the mark reaches them: the mark
// moves over each one that links to the one before it. It returns the
// device's mark: the highest sequence number held, with none missing
// before it. A batch is stored whole or not at all.
func (a *Authority) StoreEvents(device string, raws [][]byte) (uint64, error) {
	var mark uint64
	err := a.db.Update(func(tx *bolt.Tx) error {
		evs := tx.Bucket(aEvents).Bucket([]byte(device))
		if evs == nil {
			return ErrUnknownDevice
		}
		marks := tx.Bucket(aMarks)
		mark = getU64(marks, []byte(device))
		purged := tx.Bucket(aPurged).Bucket([]byte(device))
		for _, raw := range raws {
			e, err := DecodeEvent(raw)
			if err != nil {
				return fmt.Errorf("%w: %v", ErrBadEvent, err)
			}
			if h, err := ChainHash(e); err != nil || h != e.Hash || e.Seq == 0 {
				return fmt.Errorf("%w: event %d", ErrBadEvent, e.Seq)
			}
			if held := evs.Get(u64(e.Seq)); held != nil {
				old, err := DecodeEvent(held)
				if err != nil {
					return err
				}
				if old.Hash != e.Hash {
					return fmt.Errorf("%w: event %d", ErrConflict, e.Seq)
				}
				if e.Seq == mark+1 {
					// Held past a gap once: it counts now that it is
					// checked against the event before it.
					if err := checkLink(evs, purged, e); err != nil {
						return err
					}
					mark = e.Seq
				}
				continue
			}
			if e.Seq != mark+1 {
				return fmt.Errorf("%w: event %d after event %d", ErrGap, e.Seq, mark)
			}
			if err := checkLink(evs, purged, e); err != nil {
				return err
			}
			if err := evs.Put(u64(e.Seq), raw); err != nil {
				return err
			}
			mark = e.Seq
		}
		// Events held past the batch, from before the gap rule, that
		// continue it.
		for {
			held := evs.Get(u64(mark + 1))
			if held == nil {
				break
			}
			e, err := DecodeEvent(held)
			if err != nil {
				return err
			}
			if h, err := ChainHash(e); err != nil || h != e.Hash || e.Seq != mark+1 || checkLink(evs, purged, e) != nil {
				break // the device's upload of this event will say what is wrong
			}
			mark = e.Seq
		}
		return marks.Put([]byte(device), u64(mark))
	})
	if err != nil {
		return 0, err
	}
	return mark, nil
}

// checkLink checks that e links to the event held before it (the zero
// hash for the first), or to the last of a range the device declared
// purged.
func checkLink(evs, purged *bolt.Bucket, e Event) error {
	var prevHash [32]byte
	if g := purgedBefore(purged, e.Seq); e.Seq > 1 && evs.Get(u64(e.Seq-1)) == nil && g != nil {
		prevHash = g.Last
	} else if e.Seq > 1 {
		p, err := DecodeEvent(evs.Get(u64(e.Seq - 1)))
		if err != nil {
			return err
		}
		prevHash = p.Hash
	}
	if e.Prev != prevHash {
		return fmt.Errorf("%w: event %d does not follow event %d", ErrBadEvent, e.Seq, e.Seq-1)
	}
	return nil
}

// purgedBefore returns the declared purge that ends just before seq, if
// any; purged is the device's bucket of them (nil: none).
func purgedBefore(purged *bolt.Bucket, seq uint64) *ForcedPurge {
	if purged == nil {
		return nil
	}
	raw := purged.Get(u64(seq - 1))
	if raw == nil {
		return nil
	}
	var g ForcedPurge
	if decMode.Unmarshal(raw, &g) != nil {
		return nil
	}
	return &g
}

// DeclarePurged records that a device's events g.From to g.To were purged
// at the checkpoint, by a supervisor, before the authority held them: the
// device says so in the upload that follows the purge, signed like every
// upload. The mark moves past the range, and the next event must link to
// g.Last. A range already behind the mark is ignored; one that does not
// start at the mark's next event is ErrGap.
func (a *Authority) DeclarePurged(device string, g ForcedPurge) (uint64, error) {
	var mark uint64
	err := a.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(aEvents).Bucket([]byte(device)) == nil {
			return ErrUnknownDevice
		}
		marks := tx.Bucket(aMarks)
		mark = getU64(marks, []byte(device))
		switch {
		case g.To <= mark:
			return nil
		case g.From != mark+1 || g.To < g.From:
			return fmt.Errorf("%w: purged events %d to %d after event %d", ErrGap, g.From, g.To, mark)
		}
		b, err := tx.Bucket(aPurged).CreateBucketIfNotExists([]byte(device))
		if err != nil {
			return err
		}
		raw, err := encMode.Marshal(g)
		if err != nil {
			return err
		}
		if err := b.Put(u64(g.To), raw); err != nil {
			return err
		}
		mark = g.To
		return marks.Put([]byte(device), u64(mark))
	})
	return mark, err
}

// Purged lists the ranges a device declared purged.
func (a *Authority) Purged(device string) ([]ForcedPurge, error) {
	var out []ForcedPurge
	err := a.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(aPurged).Bucket([]byte(device))
		if b == nil {
			return nil
		}
		return b.ForEach(func(_, v []byte) error {
			var g ForcedPurge
			if err := decMode.Unmarshal(v, &g); err != nil {
				return err
			}
			out = append(out, g)
			return nil
		})
	})
	return out, err
}

// Mark returns the device's mark.
func (a *Authority) Mark(device string) (uint64, error) {
	var m uint64
	err := a.db.View(func(tx *bolt.Tx) error {
		m = getU64(tx.Bucket(aMarks), []byte(device))
		return nil
	})
	return m, err
}

// DeviceEvents returns up to limit events of a device from seq from on.
func (a *Authority) DeviceEvents(device string, from uint64, limit int) ([]Event, error) {
	var out []Event
	err := a.db.View(func(tx *bolt.Tx) error {
		evs := tx.Bucket(aEvents).Bucket([]byte(device))
		if evs == nil {
			return ErrUnknownDevice
		}
		c := evs.Cursor()
		for k, v := c.Seek(u64(from)); k != nil && len(out) < limit; k, v = c.Next() {
			e, err := DecodeEvent(v)
			if err != nil {
				return err
			}
			out = append(out, e)
		}
		return nil
	})
	return out, err
}

// dropBatch bounds the events DropEventsBefore removes in one
// transaction, so that uploads wait for it only briefly.
const dropBatch = 10_000

// DropEventsBefore removes the events the checkpoints recorded before
// before (by the event's own time; the PostgreSQL store goes by the day it
// received them), device by device from each one's oldest, stopping at
// the first event recorded at or after before. Each device's event at its
// mark stays whatever its age, since its next upload links to it; the
// marks stay too, so that an event removed and uploaded again is refused
// as a gap, as a purged one is. It returns how many events it removed.
func (a *Authority) DropEventsBefore(before time.Time) (int, error) {
	var devices [][]byte
	err := a.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(aEvents).ForEachBucket(func(k []byte) error {
			devices = append(devices, bytes.Clone(k))
			return nil
		})
	})
	if err != nil {
		return 0, err
	}
	total := 0
	for _, dev := range devices {
		for {
			n := 0
			err := a.db.Update(func(tx *bolt.Tx) error {
				n = 0
				evs := tx.Bucket(aEvents).Bucket(dev)
				if evs == nil {
					return nil
				}
				mark := getU64(tx.Bucket(aMarks), dev)
				var old [][]byte
				c := evs.Cursor()
				for k, v := c.First(); k != nil && len(old) < dropBatch; k, v = c.Next() {
					if binary.BigEndian.Uint64(k) >= mark {
						break
					}
					e, err := DecodeEvent(v)
					if err != nil {
						return err
					}
					if !e.Time.Before(before) {
						break
					}
					old = append(old, bytes.Clone(k))
				}
				for _, k := range old {
					if err := evs.Delete(k); err != nil {
						return err
					}
				}
				n = len(old)
				return nil
			})
			if err != nil {
				return total, err
			}
			total += n
			if n < dropBatch {
				break
			}
		}
	}
	return total, nil
}

// EnrolledDevice is an enrolled checkpoint and how many of its events are
// held without a gap.
type EnrolledDevice struct {
	ID       string
	Name     string
	Enrolled time.Time
	Mark     uint64
}

// Devices returns the enrolled checkpoints.
func (a *Authority) Devices() ([]EnrolledDevice, error) {
	var out []EnrolledDevice
	err := a.db.View(func(tx *bolt.Tx) error {
		marks := tx.Bucket(aMarks)
		return tx.Bucket(aDevices).ForEach(func(k, v []byte) error {
			var d deviceRecord
			if err := decMode.Unmarshal(v, &d); err != nil {
				return err
			}
			out = append(out, EnrolledDevice{ID: string(k), Name: d.Name, Enrolled: d.Enrolled, Mark: getU64(marks, k)})
			return nil
		})
	})
	return out, err
}

// encodeARev is a revocation as the authority keeps it, with the version
// that last changed it.
func encodeARev(e RevEntry, version uint64) []byte {
	v := make([]byte, 24)
	binary.BigEndian.PutUint64(v, uint64(e.Before))
	binary.BigEndian.PutUint64(v[8:], uint64(e.DropAfter))
	binary.BigEndian.PutUint64(v[16:], version)
	return v
}

func decodeARev(s []byte, v []byte) (RevEntry, uint64) {
	return RevEntry{Subject: [SubjectSize]byte(s), Before: int64(binary.BigEndian.Uint64(v)),
		DropAfter: int64(binary.BigEndian.Uint64(v[8:]))}, binary.BigEndian.Uint64(v[16:])
}

func (a *Authority) revSet(meta *bolt.Bucket) (SetDigest, error) {
	var s SetDigest
	if raw := meta.Get(aKeyRevSet); raw != nil {
		if err := decMode.Unmarshal(raw, &s); err != nil {
			return s, err
		}
	}
	return s, nil
}

// putRevState records the current version and its set.
func putRevState(meta *bolt.Bucket, version uint64, set SetDigest) error {
	raw, err := encMode.Marshal(set)
	if err != nil {
		return err
	}
	if err := meta.Put(aKeyRevSet, raw); err != nil {
		return err
	}
	return meta.Put(aKeyRevVersion, u64(version))
}

// dropKey orders entries by the time they may be dropped.
func dropKey(e RevEntry) []byte {
	return append(u64(uint64(e.DropAfter)), e.Subject[:]...)
}

// Revoke adds revocations as one new version. A subject already revoked
// keeps the later cut-off. It returns the new version.
func (a *Authority) Revoke(entries []RevEntry) (uint64, error) {
	var version uint64
	err := a.db.Update(func(tx *bolt.Tx) error {
		var err error
		version, err = a.revoke(tx, entries)
		return err
	})
	return version, err
}

// revoke adds revocations as one new version within tx.
func (a *Authority) revoke(tx *bolt.Tx, entries []RevEntry) (uint64, error) {
	meta := tx.Bucket(aMeta)
	version := getU64(meta, aKeyRevVersion) + 1
	set, err := a.revSet(meta)
	if err != nil {
		return 0, err
	}
	revs, byv, byd := tx.Bucket(aRevs), tx.Bucket(aByVersion), tx.Bucket(aByDrop)
	for _, e := range entries {
		if old := revs.Get(e.Subject[:]); old != nil {
			o, ov := decodeARev(e.Subject[:], old)
			if o.Before >= e.Before && o.DropAfter >= e.DropAfter {
				continue // already covered
			}
			e.Before, e.DropAfter = max(e.Before, o.Before), max(e.DropAfter, o.DropAfter)
			set.Remove(o)
			if err := byv.Delete(append(u64(ov), e.Subject[:]...)); err != nil {
				return 0, err
			}
			if err := byd.Delete(dropKey(o)); err != nil {
				return 0, err
			}
		}
		set.Add(e)
		if err := revs.Put(e.Subject[:], encodeARev(e, version)); err != nil {
			return 0, err
		}
		if err := byv.Put(append(u64(version), e.Subject[:]...), []byte{0}); err != nil {
			return 0, err
		}
		if err := byd.Put(dropKey(e), nil); err != nil {
			return 0, err
		}
	}
	return version, putRevState(meta, version, set)
}

// Expire removes the entries whose drop-after time has passed, as one new
// version with tombstones for them. It reads only those entries, by their
// drop-after time. It returns the version and how many it removed (none:
// no new version).
func (a *Authority) Expire(now time.Time) (uint64, int, error) {
	var version uint64
	n := 0
	err := a.db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(aMeta)
		version = getU64(meta, aKeyRevVersion)
		set, err := a.revSet(meta)
		if err != nil {
			return err
		}
		revs, byv, byd := tx.Bucket(aRevs), tx.Bucket(aByVersion), tx.Bucket(aByDrop)
		c := byd.Cursor()
		for k, _ := c.First(); k != nil && int64(binary.BigEndian.Uint64(k)) <= now.Unix(); k, _ = c.First() {
			subject := k[8:]
			e, ver := decodeARev(subject, revs.Get(subject))
			if n == 0 {
				version++
			}
			set.Remove(e)
			if err := byv.Delete(append(u64(ver), subject...)); err != nil {
				return err
			}
			if err := byv.Put(append(u64(version), subject...), []byte{1}); err != nil {
				return err
			}
			if err := revs.Delete(subject); err != nil {
				return err
			}
			if err := c.Delete(); err != nil {
				return err
			}
			n++
		}
		if n == 0 {
			return nil
		}
		return putRevState(meta, version, set)
	})
	return version, n, err
}

// RevocationState returns the current version and its set's digest.
func (a *Authority) RevocationState() (uint64, SetDigest, error) {
	var v uint64
	var s SetDigest
	err := a.db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(aMeta)
		v = getU64(meta, aKeyRevVersion)
		var err error
		s, err = a.revSet(meta)
		return err
	})
	return v, s, err
}

// RevocationItems returns what a checkpoint at version since needs to
// reach the current version, sorted by subject: the changes since then,
// or the whole set (snapshot) when that is smaller or since is too old for
// the changes to be known. It also returns the current version and set.
func (a *Authority) RevocationItems(since uint64) (items []RevEntry, snapshot bool, version uint64, set SetDigest, err error) {
	err = a.db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(aMeta)
		version = getU64(meta, aKeyRevVersion)
		if set, err = a.revSet(meta); err != nil {
			return err
		}
		revs := tx.Bucket(aRevs)
		if since >= version {
			return nil
		}
		// Every change is known by version (removals as tombstones), so a
		// delta can be made from any version; a box with none gets the set.
		if since > 0 {
			// Each subject changed since then, in its current state: a live
			// entry, or a tombstone if it has none now.
			seen := map[[SubjectSize]byte]bool{}
			c := tx.Bucket(aByVersion).Cursor()
			for k, _ := c.Seek(u64(since + 1)); k != nil; k, _ = c.Next() {
				s := [SubjectSize]byte(k[8:])
				if seen[s] {
					continue
				}
				seen[s] = true
				if cur := revs.Get(s[:]); cur != nil {
					e, _ := decodeARev(s[:], cur)
					items = append(items, e)
				} else {
					items = append(items, RevEntry{Subject: s, Tombstone: true})
				}
				if uint64(len(items)) > set.Count {
					break // the whole set is smaller
				}
			}
			if uint64(len(items)) <= set.Count {
				sort.Slice(items, func(i, j int) bool { return bytes.Compare(items[i].Subject[:], items[j].Subject[:]) < 0 })
				return nil
			}
		}
		snapshot = true
		items = items[:0]
		c := revs.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			e, _ := decodeARev(k, v)
			items = append(items, e)
		}
		return nil
	})
	return items, snapshot, version, set, err
}

// TrustList returns the trust list the authority serves.
func (a *Authority) TrustList() ([]byte, error) {
	var raw []byte
	err := a.db.View(func(tx *bolt.Tx) error {
		raw = append([]byte(nil), tx.Bucket(aMeta).Get(aKeyTrust)...)
		return nil
	})
	return raw, err
}

// SetTrustList stores the trust list to serve.
func (a *Authority) SetTrustList(raw []byte) error {
	return a.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(aMeta).Put(aKeyTrust, raw) })
}
