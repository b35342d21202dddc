package store

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The index that makes a supervisor's questions fast over a million
// events. Beside each event the commit that records it writes:
//
//   - a summary: 32 bytes keyed by the sequence number, with the time,
//     the kind, outcome, colour and lane as small numbers, the reasons as
//     a bit set and the guards who acted;
//   - the event's hour: hour -> the lowest and highest sequence numbers
//     with a time in it, so that a time range becomes a range of sequence
//     numbers even when the clock was set back.
//
// The link's ups and downs (SetLink) are kept beside them, by time, for
// the offline time.
//
// The small numbers come from dictionaries kept in the database (kind,
// outcome, colour, lane, reason, guard), loaded at open. A summary is a
// prefilter: a value past a dictionary's room is marked "other", and the
// reader decodes the event to decide. Events recorded before the index
// existed are indexed at open; a read-only box reads them decoded.

var (
	bucketSummaries = []byte("summaries")
	bucketHours     = []byte("hours")
	bucketLinks     = []byte("links")
	bucketDicts     = []byte("dicts")
	keyIndexed      = []byte("index.upto")
)

const summarySize = 32

// Dictionary limits: index 0 is the empty string; the last value means
// "other: read the event".
const (
	other8      = math.MaxUint8
	other16     = math.MaxUint16
	reasonOther = 63
)

// summary is an event's index entry.
type summary struct {
	micros                       int64 // Time, Unix microseconds
	kind, decision, status, lane uint8
	reasons                      uint64 // bit i: reason i of the dictionary; bit 63: another
	guard1, guard2               uint16 // 0: none; other16 in either: more than two, or another
}

func (s summary) encode() []byte {
	b := make([]byte, summarySize)
	binary.BigEndian.PutUint64(b[0:], uint64(s.micros))
	b[8], b[9], b[10], b[11] = s.kind, s.decision, s.status, s.lane
	binary.BigEndian.PutUint64(b[12:], s.reasons)
	binary.BigEndian.PutUint16(b[20:], s.guard1)
	binary.BigEndian.PutUint16(b[22:], s.guard2)
	return b
}

func decodeSummary(b []byte) (summary, bool) {
	if len(b) < summarySize {
		return summary{}, false
	}
	return summary{
		micros: int64(binary.BigEndian.Uint64(b[0:])),
		kind:   b[8], decision: b[9], status: b[10], lane: b[11],
		reasons: binary.BigEndian.Uint64(b[12:]),
		guard1:  binary.BigEndian.Uint16(b[20:]), guard2: binary.BigEndian.Uint16(b[22:]),
	}, true
}

// exact reports whether the summary says all an event's figures count
// on: no value was past its dictionary's room.
func (s summary) exact() bool {
	return s.kind != other8 && s.decision != other8 && s.status != other8 && s.lane != other8 &&
		s.reasons&(1<<reasonOther) == 0 && s.guard1 != other16 && s.guard2 != other16
}

// dict is one dictionary: names to small numbers and back.
type dict struct {
	name  []byte // its bucket
	limit int    // the highest number it gives; the next is "other"
	first int    // the lowest (0 for reasons, 1 where 0 means empty)
	ids   map[string]int
	names []string // by number
}

// dicts are a box's dictionaries, shared by the writer and the readers.
type dicts struct {
	mu                                          sync.RWMutex
	kind, decision, status, lane, reason, guard *dict
}

func newDicts() *dicts {
	mk := func(name string, first, limit int) *dict {
		return &dict{name: []byte(name), first: first, limit: limit, ids: map[string]int{}, names: make([]string, first)}
	}
	return &dicts{
		kind: mk("kind", 1, other8-1), decision: mk("decision", 1, other8-1), status: mk("status", 1, other8-1),
		lane: mk("lane", 1, other8-1), reason: mk("reason", 0, reasonOther-1), guard: mk("guard", 1, other16-1),
	}
}

func (ds *dicts) all() []*dict {
	return []*dict{ds.kind, ds.decision, ds.status, ds.lane, ds.reason, ds.guard}
}

// load reads the dictionaries from the database, replacing what is in
// memory (after a commit that failed, say).
func (ds *dicts) load(tx *bolt.Tx) error {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	root := tx.Bucket(bucketDicts)
	for _, d := range ds.all() {
		d.ids, d.names = map[string]int{}, make([]string, d.first)
		if root == nil {
			continue
		}
		bk := root.Bucket(d.name)
		if bk == nil {
			continue
		}
		err := bk.ForEach(func(k, v []byte) error {
			if len(v) != 2 {
				return fmt.Errorf("dictionary %s: entry of %d bytes", d.name, len(v))
			}
			id := int(binary.BigEndian.Uint16(v))
			for len(d.names) <= id {
				d.names = append(d.names, "")
			}
			d.names[id] = string(k)
			d.ids[string(k)] = id
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// id returns the number of s, adding it (in tx, and in memory) when it is
// new; past the dictionary's room it returns limit+1, "other". The caller
// holds ds.mu for writing.
func (d *dict) id(tx *bolt.Tx, s string) (int, error) {
	if s == "" && d.first == 1 {
		return 0, nil
	}
	if id, ok := d.ids[s]; ok {
		return id, nil
	}
	id := len(d.names)
	if id > d.limit || len(s) > 255 {
		return d.limit + 1, nil
	}
	root, err := tx.CreateBucketIfNotExists(bucketDicts)
	if err != nil {
		return 0, err
	}
	bk, err := root.CreateBucketIfNotExists(d.name)
	if err != nil {
		return 0, err
	}
	var v [2]byte
	binary.BigEndian.PutUint16(v[:], uint16(id))
	if err := bk.Put([]byte(s), v[:]); err != nil {
		return 0, err
	}
	d.ids[s] = id
	d.names = append(d.names, s)
	return id, nil
}

// lookup returns the number of s for a reader: ok is false when the
// dictionary does not hold it, and then only "other" entries can match.
// The caller holds ds.mu for reading.
func (d *dict) lookup(s string) (int, bool) {
	if s == "" && d.first == 1 {
		return 0, true
	}
	id, ok := d.ids[s]
	return id, ok
}

// summarize makes e's summary, adding new names to the dictionaries.
func (ds *dicts) summarize(tx *bolt.Tx, e *Event) (summary, error) {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	s := summary{micros: eventMicros(e.Time)}
	var err error
	small := func(d *dict, v string) uint8 {
		if err != nil {
			return 0
		}
		var id int
		id, err = d.id(tx, v)
		return uint8(id)
	}
	s.kind = small(ds.kind, e.Kind)
	s.decision = small(ds.decision, e.Decision)
	s.status = small(ds.status, e.Status)
	s.lane = small(ds.lane, e.Lane)
	for _, r := range e.Reasons {
		if err != nil {
			break
		}
		var id int
		id, err = ds.reason.id(tx, r)
		s.reasons |= 1 << uint(id)
	}
	var guards []uint16
	for _, a := range e.Actions {
		if err != nil {
			break
		}
		var id int
		id, err = ds.guard.id(tx, a.Guard)
		if g := uint16(id); id != 0 && !slices.Contains(guards, g) {
			guards = append(guards, g)
		}
	}
	switch {
	case len(guards) > 2:
		s.guard1, s.guard2 = guards[0], other16
	case len(guards) == 2:
		s.guard1, s.guard2 = guards[0], guards[1]
	case len(guards) == 1:
		s.guard1 = guards[0]
	}
	return s, err
}

// eventMicros is an event's time in Unix microseconds as it is stored:
// the encoding rounds to the microsecond (and decodes within a fraction
// of one), so that an event recorded at 10:59:59.9999996 is read back at
// 11:00:00. The index, the filters and the figures all count with it.
func eventMicros(t time.Time) int64 { return t.Round(time.Microsecond).UnixMicro() }

// hourKey orders hours, before 1970 too.
func hourKey(micros int64) []byte {
	h := micros / 3_600_000_000
	if micros < 0 && micros%3_600_000_000 != 0 {
		h--
	}
	return u64(uint64(h) ^ 1<<63)
}

// index writes e's index entries in tx.
func (b *Box) index(tx *bolt.Tx, e *Event) error {
	s, err := b.dicts.summarize(tx, e)
	if err != nil {
		return err
	}
	if err := tx.Bucket(bucketSummaries).Put(u64(e.Seq), s.encode()); err != nil {
		return err
	}
	hours := tx.Bucket(bucketHours)
	hk := hourKey(s.micros)
	lo, hi := e.Seq, e.Seq
	if v := hours.Get(hk); len(v) == 16 {
		lo = min(lo, binary.BigEndian.Uint64(v))
		hi = max(hi, binary.BigEndian.Uint64(v[8:]))
	}
	v := make([]byte, 16)
	binary.BigEndian.PutUint64(v, lo)
	binary.BigEndian.PutUint64(v[8:], hi)
	if err := hours.Put(hk, v); err != nil {
		return err
	}
	// The mark moves only over events indexed: after an indexing that
	// failed (an event that does not decode), the events it did not reach
	// stay behind the mark, and readers decode them.
	meta := tx.Bucket(bucketMeta)
	if upto := getU64(meta, keyIndexed); upto+1 != e.Seq {
		if k, _ := tx.Bucket(bucketEvents).Cursor().Seek(u64(upto + 1)); k != nil && binary.BigEndian.Uint64(k) < e.Seq {
			return nil
		}
	}
	return meta.Put(keyIndexed, u64(e.Seq))
}

// unindex removes a deleted event's index entries.
func (b *Box) unindex(tx *bolt.Tx, seq uint64, e Event) error {
	sums := tx.Bucket(bucketSummaries)
	if sums == nil {
		return nil
	}
	if err := sums.Delete(u64(seq)); err != nil {
		return err
	}
	hours := tx.Bucket(bucketHours)
	hk := hourKey(eventMicros(e.Time))
	if v := hours.Get(hk); len(v) == 16 && binary.BigEndian.Uint64(v[8:]) <= seq {
		if err := hours.Delete(hk); err != nil {
			return err
		}
	}
	return nil
}

// SetLink records that the link to the authority went down or came back
// up at t: the syncer calls it when that changes, and Stats counts the
// offline time from it. It is the box's own bookkeeping, not an event:
// the authority knows when the box synced.
func (b *Box) SetLink(t time.Time, up bool) error {
	if b.readOnly {
		return ErrReadOnly
	}
	v := byte('d')
	if up {
		v = 'u'
	}
	return b.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketLinks).Put(u64(uint64(t.UnixMicro())^1<<63), []byte{v})
	})
}

// indexedThrough is the last event the index holds.
func indexedThrough(tx *bolt.Tx) uint64 { return getU64(tx.Bucket(bucketMeta), keyIndexed) }

// reindex indexes the events recorded before the index existed, in
// transactions of 10,000.
func (b *Box) reindex() (int, error) {
	total := 0
	for {
		n := 0
		err := b.db.Update(func(tx *bolt.Tx) error {
			from := indexedThrough(tx) + 1
			c := tx.Bucket(bucketEvents).Cursor()
			for k, v := c.Seek(u64(from)); k != nil && n < 10000; k, v = c.Next() {
				e, err := DecodeEvent(v)
				if err != nil {
					return fmt.Errorf("event %d: %w", binary.BigEndian.Uint64(k), err)
				}
				e.Seq = binary.BigEndian.Uint64(k)
				if err := b.index(tx, &e); err != nil {
					return err
				}
				n++
			}
			return nil
		})
		total += n
		if err != nil {
			// Not fatal: a reader decodes what the index lacks.
			b.dicts.reload(b.db)
			return total, fmt.Errorf("store: indexing: %w", err)
		}
		if n < 10000 {
			return total, nil
		}
	}
}

// reload reads the dictionaries again after a transaction that failed.
func (ds *dicts) reload(db *bolt.DB) {
	db.View(func(tx *bolt.Tx) error { return ds.load(tx) })
}
