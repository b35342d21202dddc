package store

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/fxamacker/cbor/v2"
	bolt "go.etcd.io/bbolt"
)

// Event is one record of the log: what the checkpoint decided about one
// person, and the links that make deletions and edits detectable.
type Event struct {
	Seq  uint64    `cbor:"1,keyasint"` // per device, from 1, without gaps
	Time time.Time `cbor:"2,keyasint"` // the checkpoint's best estimate
	// ClockUncertainty is how far Time may be off; negative: unknown.
	ClockUncertainty time.Duration `cbor:"3,keyasint"`
	Kind             string        `cbor:"4,keyasint"` // "scan", "passage", "fire_alarm"
	Decision         string        `cbor:"5,keyasint"` // pass, refer, refuse
	Reasons          []string      `cbor:"6,keyasint,omitempty"`
	Status           string        `cbor:"7,keyasint,omitempty"` // green, yellow, red
	Subject          []byte        `cbor:"8,keyasint,omitempty"` // pseudonym, never the ID number
	CredentialID     []byte        `cbor:"9,keyasint,omitempty"`
	KeyID            []byte        `cbor:"10,keyasint,omitempty"`
	// Temperature in tenths of a degree Celsius; 0 when none was taken.
	Temperature int16  `cbor:"11,keyasint,omitempty"`
	Gate        string `cbor:"12,keyasint,omitempty"`
	Repeat      bool   `cbor:"13,keyasint,omitempty"`
	Static      bool   `cbor:"14,keyasint,omitempty"`
	// Prev is the hash of the event before (zero for the first), Hash this
	// event's: SHA-256 of its encoding without Hash.
	Prev [32]byte `cbor:"15,keyasint"`
	Hash [32]byte `cbor:"16,keyasint"`

	// A passage (kind "passage", docs/gate.md) also records its lane, how
	// it opened and how long it gathered, every temperature reading, the
	// ID check, the guard's actions and what the gate did.
	Lane       string          `cbor:"17,keyasint,omitempty"`
	OpenedBy   string          `cbor:"18,keyasint,omitempty"` // code, id, guard
	Gathered   time.Duration   `cbor:"19,keyasint,omitempty"` // from opening to the decision
	Readings   []ReadingRecord `cbor:"20,keyasint,omitempty"`
	ID         *IDRecord       `cbor:"21,keyasint,omitempty"`
	Actions    []ActionRecord  `cbor:"22,keyasint,omitempty"`
	GateAction string          `cbor:"23,keyasint,omitempty"` // pulse, closed, held_open

	// MaskedName is the masked name the code or the card showed, for the
	// supervisor. It is never stored in the clear: with the box's key it
	// is sealed into Private (with the card's masked name and last
	// characters, ID.Masked), and opened again when events are read with
	// the key (docs/store.md, "Privacy").
	MaskedName string `cbor:"-"`
	Private    []byte `cbor:"25,keyasint,omitempty"`
	// LegacyName is where events recorded before the encryption kept the
	// masked name, in the clear; kept as it is so that their hashes hold,
	// and gone with them when retention removes them.
	LegacyName string `cbor:"24,keyasint,omitempty"`

	// An audit event (kind "audit") says who read the log, how and what.
	Audit *AuditRecord `cbor:"26,keyasint,omitempty"`
}

// AuditRecord is a reading of the log, or an action on it, by a
// supervisor.
type AuditRecord struct {
	Who    string `cbor:"1,keyasint"`           // the supervisor's account
	User   string `cbor:"2,keyasint,omitempty"` // the local user (Unix socket), or the address (HTTPS)
	Action string `cbor:"3,keyasint"`           // logs, stats, export, status, sync, purge, refused...
	Query  string `cbor:"4,keyasint,omitempty"` // the filter, as asked
	Rows   int    `cbor:"5,keyasint,omitempty"` // how many events it returned or touched
	// Purged is the range a forced purge removed before the authority
	// acknowledged it.
	Purged *ForcedPurge `cbor:"6,keyasint,omitempty"`
}

// ReadingRecord is one temperature reading as the device gave it, in
// hundredths of a degree Celsius: never corrected, never overwritten.
type ReadingRecord struct {
	Body    int32     `cbor:"1,keyasint"`
	Ambient *int32    `cbor:"2,keyasint,omitempty"`
	Source  string    `cbor:"3,keyasint"`
	At      time.Time `cbor:"4,keyasint"`
}

// IDRecord is a passage's ID check. The ID number itself is never kept
// readable: for a person without a code, Sealed holds it sealed to the
// authority's event key, and Masked the masked name and last characters.
type IDRecord struct {
	Check  string `cbor:"1,keyasint"` // match, mismatch, confirmed, only, invalid
	Source string `cbor:"2,keyasint,omitempty"`
	Masked string `cbor:"-"` // sealed in the event's Private, like MaskedName
	Sealed []byte `cbor:"4,keyasint,omitempty"`
	// LegacyMasked: Masked in events recorded before the encryption.
	LegacyMasked string `cbor:"3,keyasint,omitempty"`
}

// ActionRecord is a guard's action in a passage.
type ActionRecord struct {
	Kind    string    `cbor:"1,keyasint"`
	Guard   string    `cbor:"2,keyasint"`
	At      time.Time `cbor:"3,keyasint"`
	Outcome string    `cbor:"4,keyasint,omitempty"`
	Reason  string    `cbor:"5,keyasint,omitempty"`
	Body    int32     `cbor:"6,keyasint,omitempty"` // a temperature the guard entered, hundredths of °C
}

var (
	encMode cbor.EncMode
	decMode cbor.DecMode
)

func init() {
	var err error
	opts := cbor.CoreDetEncOptions()
	opts.Time = cbor.TimeUnixMicro
	if encMode, err = opts.EncMode(); err != nil {
		panic(err)
	}
	if decMode, err = (cbor.DecOptions{DupMapKey: cbor.DupMapKeyEnforcedAPF, MaxArrayElements: 1 << 24}).DecMode(); err != nil {
		panic(err)
	}
}

// ChainHash returns the hash an event must carry: SHA-256 of its encoding
// with Hash zeroed. Prev is part of it, so the events form a chain.
func ChainHash(e Event) ([32]byte, error) {
	e.Hash = [32]byte{}
	b, err := encMode.Marshal(e)
	if err != nil {
		return [32]byte{}, err
	}
	return sha256.Sum256(b), nil
}

// EncodeEvent and DecodeEvent are the stored and uploaded form of an
// event.
func EncodeEvent(e Event) ([]byte, error) { return encMode.Marshal(e) }

// DecodeEvent decodes an event encoded by EncodeEvent.
func DecodeEvent(b []byte) (Event, error) {
	var e Event
	err := decMode.Unmarshal(b, &e)
	return e, err
}

type write struct {
	ev   Event
	done chan error
}

// Record appends an event to the log and returns it with its sequence
// number and hashes once it is on disk: the commit that holds it has been
// fsynced. Concurrent calls share commits. The event's Seq, Prev and Hash
// are set here.
func (b *Box) Record(ctx context.Context, ev Event) (Event, error) {
	if b.readOnly {
		return Event{}, ErrReadOnly
	}
	w := &write{ev: ev, done: make(chan error, 1)}
	b.mu.Lock()
	closed := b.closed
	b.mu.Unlock()
	if closed {
		return Event{}, ErrClosed
	}
	select {
	case b.writes <- w:
	case <-b.done:
		return Event{}, ErrClosed
	case <-ctx.Done():
		return Event{}, ctx.Err()
	}
	// Once handed over the event is committed or failed; wait for which,
	// whatever ctx does, so that the caller never mistakes a recorded
	// event for a lost one.
	if err := <-w.done; err != nil {
		return Event{}, err
	}
	return w.ev, nil
}

// writer is the single writer: it takes the waiting events, as many as
// MaxBatch, appends them in one transaction, and answers each once the
// commit is done.
func (b *Box) writer() {
	defer b.wg.Done()
	for {
		var batch []*write
		select {
		case w := <-b.writes:
			batch = append(batch, w)
		case <-b.done:
			// Finish what was handed over before Close.
		drain:
			for {
				select {
				case w := <-b.writes:
					batch = append(batch, w)
				default:
					break drain
				}
			}
			if len(batch) > 0 {
				b.commit(batch)
			}
			return
		}
	more:
		for len(batch) < b.opts.MaxBatch && !b.opts.NoGroupCommit {
			select {
			case w := <-b.writes:
				batch = append(batch, w)
			default:
				break more
			}
		}
		b.commit(batch)
	}
}

func (b *Box) commit(batch []*write) {
	seq, hash := b.lastSeq, b.lastHash
	err := b.db.Update(func(tx *bolt.Tx) error {
		events := tx.Bucket(bucketEvents)
		for _, w := range batch {
			seq++
			w.ev.Seq = seq
			w.ev.Prev = hash
			if err := sealPrivate(&w.ev, b.opts.Key); err != nil {
				return err
			}
			h, err := ChainHash(w.ev)
			if err != nil {
				return err
			}
			w.ev.Hash = h
			raw, err := encMode.Marshal(w.ev)
			if err != nil {
				return err
			}
			if err := events.Put(u64(seq), raw); err != nil {
				return err
			}
			if err := b.index(tx, &w.ev); err != nil {
				return err
			}
			hash = h
		}
		meta := tx.Bucket(bucketMeta)
		if err := meta.Put(keyLastSeq, u64(seq)); err != nil {
			return err
		}
		return meta.Put(keyLastHash, hash[:])
	})
	if err == nil {
		b.mu.Lock()
		b.lastSeq, b.lastHash = seq, hash
		b.mu.Unlock()
	} else {
		err = fmt.Errorf("store: recording events: %w", err)
		b.log.Error("events not recorded", "err", err, "events", len(batch))
		b.dicts.reload(b.db)
	}
	b.checkDisk()
	for _, w := range batch {
		w.done <- err
	}
}

// LastSeq returns the sequence number of the last recorded event.
func (b *Box) LastSeq() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.lastSeq
}

// Events returns up to limit recorded events from seq from on, in order,
// with their private fields opened when the box has its key. Each call is
// one short read transaction, so that long exports do not hold the writer
// back.
func (b *Box) Events(from uint64, limit int) ([]Event, error) {
	var out []Event
	err := b.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketEvents).Cursor()
		for k, v := c.Seek(u64(from)); k != nil && len(out) < limit; k, v = c.Next() {
			e, err := DecodeEvent(v)
			if err != nil {
				return fmt.Errorf("event %d: %w", binary.BigEndian.Uint64(k), err)
			}
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for i := range out {
		if err := openPrivate(&out[i], b.opts.Key); err != nil {
			return out, err
		}
	}
	return out, nil
}

// RawEvents is Events in the stored encoding, for uploading as it is.
func (b *Box) RawEvents(from uint64, limit int) ([][]byte, error) {
	var out [][]byte
	err := b.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketEvents).Cursor()
		for k, v := c.Seek(u64(from)); k != nil && len(out) < limit; k, v = c.Next() {
			out = append(out, append([]byte(nil), v...))
		}
		return nil
	})
	return out, err
}

// VerifyChain reads the whole log in short transactions and checks that
// sequence numbers have no gap and that each event's hashes hold, from the
// first event kept (older ones may have been pruned after upload). It
// returns how many events it checked.
func (b *Box) VerifyChain() (int, error) {
	var (
		n        int
		next     uint64
		prevHash [32]byte
		first    = true
	)
	for {
		batch, err := b.Events(next, 4096)
		if err != nil {
			return n, err
		}
		for _, e := range batch {
			if !first && (e.Seq != next || e.Prev != prevHash) {
				return n, fmt.Errorf("%w: at event %d (expected %d)", ErrCorrupt, e.Seq, next)
			}
			if first && e.Seq == 1 && e.Prev != ([32]byte{}) {
				return n, fmt.Errorf("%w: first event has a predecessor", ErrCorrupt)
			}
			h, err := ChainHash(e)
			if err != nil {
				return n, err
			}
			if h != e.Hash {
				return n, fmt.Errorf("%w: event %d was altered", ErrCorrupt, e.Seq)
			}
			first = false
			prevHash = e.Hash
			next = e.Seq + 1
			n++
		}
		if len(batch) < 4096 {
			break
		}
	}
	if last := b.LastSeq(); n > 0 && next-1 != last {
		return n, fmt.Errorf("%w: the log ends at %d but the last recorded event is %d", ErrCorrupt, next-1, last)
	}
	return n, nil
}

// Mark is the highest sequence number the authority has acknowledged
// holding with no gap before it.
func (b *Box) Mark() (uint64, error) {
	var m uint64
	err := b.db.View(func(tx *bolt.Tx) error {
		m = getU64(tx.Bucket(bucketMeta), keyMark)
		return nil
	})
	return m, err
}

// SetMark records the authority's acknowledgement, and when it came: the
// retention counts from there. A mark lower than the one recorded (an
// authority restored from a backup) is recorded too: the box must send
// again what the authority lost, and keeps it until acknowledged again.
func (b *Box) SetMark(m uint64) error {
	return b.db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if m > getU64(meta, keyMark) {
			if err := tx.Bucket(bucketAcks).Put(u64(uint64(b.clock.Now().UnixMicro())), u64(m)); err != nil {
				return err
			}
		}
		return meta.Put(keyMark, u64(m))
	})
}

// Pruned is where the log kept on the box begins: the last event removed
// (by retention, or by a supervisor's forced purge) and its hash, which
// the first event kept must link to.
type Pruned struct {
	Seq  uint64   `cbor:"1,keyasint" json:"seq"`
	Hash [32]byte `cbor:"2,keyasint" json:"-"`
}

// ForcedPurge is a range of events a supervisor purged before the
// authority acknowledged them. The syncer tells the authority, so that it
// records the range as purged at the checkpoint rather than lost.
type ForcedPurge struct {
	From uint64    `cbor:"1,keyasint" json:"from"`
	To   uint64    `cbor:"2,keyasint" json:"to"`
	Last [32]byte  `cbor:"3,keyasint" json:"-"` // the hash of event To
	At   time.Time `cbor:"4,keyasint" json:"at"`
}

// PurgeResult says what Prune and Purge removed.
type PurgeResult struct {
	Deleted int    `json:"deleted"` // events removed
	Through uint64 `json:"through"` // the last event removed; 0 when none
	// Unsent counts the removed events the authority had not acknowledged
	// (a forced purge only), Forced says which.
	Unsent int          `json:"unsent"`
	Forced *ForcedPurge `json:"forced,omitempty"`
}

// Prune applies the retention: it deletes the events that the authority
// acknowledged more than keep ago, in transactions of at most 10,000
// deletions. Events not acknowledged are never deleted, whatever their
// age.
func (b *Box) Prune(keep time.Duration) (PurgeResult, error) {
	return b.purge(keep, false)
}

// Purge is Prune forced by a supervisor: it also deletes the events older
// than keep that the authority has not acknowledged, and records the range
// (ForcedPurges) for the syncer to declare. The caller records who forced
// it, as an audit event.
func (b *Box) Purge(keep time.Duration) (PurgeResult, error) {
	return b.purge(keep, true)
}

// pruneBatch is how many events one transaction of Prune and Purge
// deletes at most (a variable so that the tests can use small ones).
var pruneBatch = 10000

func (b *Box) purge(keep time.Duration, force bool) (PurgeResult, error) {
	var res PurgeResult
	if b.readOnly {
		return res, ErrReadOnly
	}
	now := b.clock.Now()
	cutoff := now.Add(-keep)
	for {
		n := 0
		err := b.db.Update(func(tx *bolt.Tx) error {
			meta := tx.Bucket(bucketMeta)
			mark := getU64(meta, keyMark)
			// The highest mark acknowledged at or before the cutoff.
			var through uint64
			acks := tx.Bucket(bucketAcks).Cursor()
			for k, v := acks.First(); k != nil && int64(binary.BigEndian.Uint64(k)) <= cutoff.UnixMicro(); k, v = acks.Next() {
				through = binary.BigEndian.Uint64(v)
			}
			through = min(through, mark)
			var pruned Pruned
			c := tx.Bucket(bucketEvents).Cursor()
			for k, v := c.First(); k != nil && n < pruneBatch; k, v = c.First() {
				seq := binary.BigEndian.Uint64(k)
				e, err := DecodeEvent(v)
				if err != nil {
					return fmt.Errorf("event %d: %w", seq, err)
				}
				if seq > through && !(force && e.Time.Before(cutoff)) {
					break
				}
				if err := c.Delete(); err != nil {
					return err
				}
				if err := b.unindex(tx, seq, e); err != nil {
					return err
				}
				if seq > mark {
					res.Unsent++
					if res.Forced == nil {
						res.Forced = &ForcedPurge{From: seq, At: now}
					}
					res.Forced.To, res.Forced.Last = seq, e.Hash
				}
				pruned = Pruned{Seq: seq, Hash: e.Hash}
				n++
			}
			if n == 0 {
				return nil
			}
			res.Deleted += n
			res.Through = pruned.Seq
			if err := b.putMetaTx(tx, keyPruned, pruned); err != nil {
				return err
			}
			if res.Forced != nil {
				var forced []ForcedPurge
				if raw := meta.Get(keyForced); raw != nil {
					if err := decMode.Unmarshal(raw, &forced); err != nil {
						return err
					}
				}
				if l := len(forced); l > 0 && forced[l-1].From == res.Forced.From {
					forced = forced[:l-1] // the same purge, in its next transaction
				}
				if err := b.putMetaTx(tx, keyForced, append(forced, *res.Forced)); err != nil {
					return err
				}
			}
			// Acknowledgements no longer needed: all but the last one at
			// or before the cutoff.
			var drop [][]byte
			for k, _ := acks.First(); k != nil && int64(binary.BigEndian.Uint64(k)) <= cutoff.UnixMicro(); k, _ = acks.Next() {
				drop = append(drop, k)
			}
			for _, k := range drop[:max(len(drop)-1, 0)] {
				if err := tx.Bucket(bucketAcks).Delete(k); err != nil {
					return err
				}
			}
			// The link's ups and downs, likewise.
			drop = drop[:0]
			links := tx.Bucket(bucketLinks).Cursor()
			for k, _ := links.First(); k != nil && int64(binary.BigEndian.Uint64(k)^1<<63) <= cutoff.UnixMicro(); k, _ = links.Next() {
				drop = append(drop, k)
			}
			for _, k := range drop[:max(len(drop)-1, 0)] {
				if err := tx.Bucket(bucketLinks).Delete(k); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil || n < pruneBatch {
			return res, err
		}
	}
}

// PrunedThrough says where the log kept on the box begins; ok is false
// when nothing was ever removed, or only by a version that did not record
// it.
func (b *Box) PrunedThrough() (Pruned, bool, error) {
	var p Pruned
	ok, err := b.getMeta(keyPruned, &p)
	return p, ok, err
}

// ForcedPurges lists the ranges of unacknowledged events a supervisor
// purged, oldest first.
func (b *Box) ForcedPurges() ([]ForcedPurge, error) {
	var f []ForcedPurge
	_, err := b.getMeta(keyForced, &f)
	return f, err
}

// Unsent returns how many recorded events the authority has not
// acknowledged.
func (b *Box) Unsent() (uint64, error) {
	m, err := b.Mark()
	if err != nil {
		return 0, err
	}
	last := b.LastSeq()
	if m >= last {
		return 0, nil
	}
	return last - m, nil
}
