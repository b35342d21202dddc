package store

import (
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// LogCheck is what VerifyLog found.
type LogCheck struct {
	OK      bool   `json:"ok"`
	Checked int    `json:"checked"` // events whose hash and link were checked
	First   uint64 `json:"first"`   // the first and last events the box holds
	Last    uint64 `json:"last"`
	// Recorded is the last event the box recorded, by its own count;
	// Acknowledged the last the authority acknowledged; Pruned the last
	// removed by retention (the log kept begins after it).
	Recorded     uint64        `json:"recorded"`
	Acknowledged uint64        `json:"acknowledged"`
	Pruned       uint64        `json:"pruned"`
	Forced       []ForcedPurge `json:"forced_purges,omitempty"`
	// Problem is "changed", "missing" or "cut", At the first sequence
	// number where it is, Detail says more.
	Problem string `json:"problem,omitempty"`
	At      uint64 `json:"at,omitempty"`
	Detail  string `json:"detail,omitempty"`
}

// verifyBatch is how many events VerifyLog reads in one transaction (a
// variable so that the tests can walk small logs in many).
var verifyBatch = 16384

// VerifyLog walks the whole hash chain, in short read transactions, and
// names the first sequence number where the log was changed (an event
// that does not decode, or whose hash or link does not hold), has a hole
// (an event missing), or was cut (the last events gone: the box's own
// count, or the authority's acknowledgement, goes further). It does not
// need the key of the private fields: they are sealed bytes in the chain.
func (b *Box) VerifyLog() (LogCheck, error) {
	var (
		lc        LogCheck
		lastHash  [32]byte
		pruned    Pruned
		prunedOK  bool
		started   bool
		next      uint64   // the sequence number expected
		prev      [32]byte // the hash it must link to
		checkLink bool
		kept      int // events checked since the log kept began
	)
	// readMeta reads the box's own account of its log. Each batch reads it
	// again, in the transaction that reads the events, so that the end of
	// the log is compared with an account of the same moment however many
	// events a running box records, or retention removes, during the walk.
	readMeta := func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		lc.Recorded = getU64(meta, keyLastSeq)
		copy(lastHash[:], meta.Get(keyLastHash))
		lc.Acknowledged = getU64(meta, keyMark)
		pruned, prunedOK = Pruned{}, false
		if raw := meta.Get(keyPruned); raw != nil {
			if err := decMode.Unmarshal(raw, &pruned); err != nil {
				return fmt.Errorf("the pruning record: %w", err)
			}
			prunedOK = true
		}
		lc.Forced = nil
		if raw := meta.Get(keyForced); raw != nil {
			if err := decMode.Unmarshal(raw, &lc.Forced); err != nil {
				return fmt.Errorf("the forced purges: %w", err)
			}
		}
		return nil
	}
	problem := func(kind string, at uint64, format string, args ...any) (LogCheck, error) {
		lc.Problem, lc.At, lc.Detail = kind, at, fmt.Sprintf(format, args...)
		return lc, nil
	}

	for {
		var found []struct {
			seq uint64
			raw []byte
		}
		err := b.db.View(func(tx *bolt.Tx) error {
			if err := readMeta(tx); err != nil {
				return err
			}
			switch {
			case !started || prunedOK && pruned.Seq+1 >= next:
				// Where the log kept begins; again when retention removed
				// every event checked so far, or more.
				started = true
				next, prev = pruned.Seq+1, pruned.Hash
				checkLink = prunedOK || pruned.Seq == 0
				lc.First, lc.Last, lc.Pruned, kept = 0, 0, pruned.Seq, 0
			case prunedOK && pruned.Seq > lc.Pruned:
				// Retention removed events already checked.
				lc.First, lc.Pruned = pruned.Seq+1, pruned.Seq
			}
			c := tx.Bucket(bucketEvents).Cursor()
			for k, v := c.Seek(u64(next)); k != nil && len(found) < verifyBatch; k, v = c.Next() {
				found = append(found, struct {
					seq uint64
					raw []byte
				}{binary.BigEndian.Uint64(k), append([]byte(nil), v...)})
			}
			return nil
		})
		if err != nil {
			return lc, fmt.Errorf("store: %w", err)
		}
		for _, f := range found {
			if lc.First == 0 {
				lc.First = f.seq
				if !prunedOK && f.seq > 1 {
					// Removed by a version that did not record where the
					// log begins: acceptable only if acknowledged.
					if f.seq-1 > lc.Acknowledged {
						return problem("missing", 1, "events 1 to %d are missing and were never acknowledged by the authority", f.seq-1)
					}
					lc.Pruned, next, checkLink = f.seq-1, f.seq, false
				}
			}
			if f.seq != next {
				if next == pruned.Seq+1 && prunedOK && kept == 0 {
					return problem("missing", next, "events %d to %d are missing: the log kept should begin after event %d, removed by retention", next, f.seq-1, pruned.Seq)
				}
				return problem("missing", next, "events %d to %d are missing", next, f.seq-1)
			}
			e, err := DecodeEvent(f.raw)
			if err != nil {
				return problem("changed", f.seq, "event %d does not decode: %v", f.seq, err)
			}
			if e.Seq != f.seq {
				return problem("changed", f.seq, "event %d says it is event %d", f.seq, e.Seq)
			}
			h, err := ChainHash(e)
			if err != nil || h != e.Hash {
				return problem("changed", f.seq, "event %d does not match its hash", f.seq)
			}
			if checkLink && e.Prev != prev {
				if kept == 0 {
					return problem("changed", f.seq, "event %d does not link to the last event removed by retention", f.seq)
				}
				return problem("changed", f.seq-1, "event %d does not match the hash event %d holds of it", f.seq-1, f.seq)
			}
			checkLink = true
			prev, next = e.Hash, f.seq+1
			lc.Last = f.seq
			lc.Checked++
			kept++
		}
		if len(found) < verifyBatch {
			break
		}
	}
	end := max(lc.Last, pruned.Seq, lc.First-min(lc.First, 1))
	switch {
	case end < lc.Recorded:
		return problem("cut", end+1, "the log ends at event %d but the box recorded %d: events %d to %d were cut off", end, lc.Recorded, end+1, lc.Recorded)
	case end > lc.Recorded:
		return problem("changed", lc.Recorded+1, "events %d to %d follow the last event the box recorded (%d)", lc.Recorded+1, end, lc.Recorded)
	case lc.Checked > 0 && prev != lastHash:
		return problem("changed", lc.Last, "event %d is not the last event the box recorded (its hash differs)", lc.Last)
	case lc.Acknowledged > lc.Recorded:
		return problem("cut", lc.Recorded+1, "the authority acknowledged events up to %d but the box recorded only %d", lc.Acknowledged, lc.Recorded)
	}
	lc.OK = true
	return lc, nil
}
