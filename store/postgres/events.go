package postgres

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/checkpointd/checkpoint/store"
)

// maxSeq is the highest sequence number a BIGINT column holds; a device
// counting past it would need to record a billion events a second for
// three centuries.
const maxSeq = math.MaxInt64

// upload is an event of an upload, decoded and checked on its own before
// the database is asked anything.
type upload struct {
	seq  uint64
	prev [32]byte
	hash [32]byte
	raw  []byte
	err  error // what is wrong with the event by itself
}

func decodeUpload(raw []byte) upload {
	e, err := store.DecodeEvent(raw)
	if err != nil {
		return upload{err: fmt.Errorf("%w: %v", store.ErrBadEvent, err)}
	}
	if h, err := store.ChainHash(e); err != nil || h != e.Hash || e.Seq == 0 {
		return upload{err: fmt.Errorf("%w: event %d", store.ErrBadEvent, e.Seq)}
	}
	return upload{seq: e.Seq, prev: e.Prev, hash: e.Hash, raw: raw}
}

// StoreEvents stores a device's uploaded events, once each, as
// store.Authority.StoreEvents does: an event already held with the same
// hash is skipped, one with another hash is ErrConflict; each new event
// must be the one after the mark (ErrGap) and link to the event before it
// (ErrBadEvent), or to the last of a range declared purged. A batch is
// stored whole or not at all, and the device's mark returned.
//
// The events are decoded and their hashes checked before the transaction.
// The transaction locks the device's row, so that two uploads of one
// device, from any authority process, take turns and never both extend
// the mark; it reads the mark, the last hash and the hashes held in the
// batch's range in one round trip, writes the new events with COPY (on
// CockroachDB one INSERT of arrays), and the mark.
func (s *Store) StoreEvents(device string, raws [][]byte) (uint64, error) {
	ups := make([]upload, len(raws))
	lo, hi := uint64(math.MaxUint64), uint64(0)
	for i, raw := range raws {
		ups[i] = decodeUpload(raw)
		if ups[i].err == nil {
			lo, hi = min(lo, ups[i].seq), max(hi, ups[i].seq)
		}
	}
	day := dayOf(s.opts.Clock.Now())
	ctx, cancel := s.ctx()
	defer cancel()
	if err := s.ensureDays(ctx, day); err != nil {
		return 0, err
	}
	var mark uint64
	err := s.inTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		b.Queue("SELECT mark, last_hash FROM devices WHERE id = $1 FOR UPDATE", device)
		if lo <= maxSeq {
			// Only events at or below the mark are held; the mark is not
			// known yet, so the batch's whole range is asked for.
			b.Queue("SELECT seq, hash FROM events WHERE device = $1 AND seq BETWEEN $2 AND $3",
				device, int64(lo), int64(min(hi, maxSeq)))
		}
		br := tx.SendBatch(ctx, b)
		var m int64
		var last []byte
		err := br.QueryRow().Scan(&m, &last)
		if errors.Is(err, pgx.ErrNoRows) {
			br.Close()
			return store.ErrUnknownDevice
		}
		if err != nil {
			br.Close()
			return err
		}
		held := map[uint64][32]byte{}
		if lo <= maxSeq {
			rows, err := br.Query()
			if err != nil {
				br.Close()
				return err
			}
			var seq int64
			var h []byte
			_, err = pgx.ForEachRow(rows, []any{&seq, &h}, func() error {
				if len(h) != 32 {
					return fmt.Errorf("device %s event %d: a hash of %d bytes", device, seq, len(h))
				}
				held[uint64(seq)] = [32]byte(h)
				return nil
			})
			if err != nil {
				br.Close()
				return err
			}
		}
		if err := br.Close(); err != nil {
			return err
		}
		if len(last) != 32 {
			return fmt.Errorf("device %s: a last hash of %d bytes", device, len(last))
		}
		mark = uint64(m)
		start, prev := mark, [32]byte(last)
		var seqs []int64
		var hashes, bodies [][]byte
		for i := range ups {
			u := &ups[i]
			if u.err != nil {
				return u.err
			}
			if h, ok := held[u.seq]; ok {
				if h != u.hash {
					return fmt.Errorf("%w: event %d", store.ErrConflict, u.seq)
				}
				if u.seq == mark+1 {
					// Held past the mark (a database filled otherwise than
					// by uploads): it counts once its link is checked.
					if u.prev != prev {
						return fmt.Errorf("%w: event %d does not follow event %d", store.ErrBadEvent, u.seq, u.seq-1)
					}
					mark, prev = u.seq, u.hash
				}
				continue
			}
			if u.seq != mark+1 || u.seq > maxSeq {
				return fmt.Errorf("%w: event %d after event %d", store.ErrGap, u.seq, mark)
			}
			if u.prev != prev {
				return fmt.Errorf("%w: event %d does not follow event %d", store.ErrBadEvent, u.seq, u.seq-1)
			}
			seqs, hashes, bodies = append(seqs, int64(u.seq)), append(hashes, u.hash[:]), append(bodies, u.raw)
			held[u.seq] = u.hash
			mark, prev = u.seq, u.hash
		}
		if mark == start {
			return nil
		}
		b = &pgx.Batch{}
		switch {
		case len(seqs) == 0:
		case s.arrays:
			b.Queue(`INSERT INTO events (device, seq, day, hash, raw)
				SELECT $1, u.seq, $2, u.hash, u.raw FROM unnest($3::BIGINT[], $4::BYTEA[], $5::BYTEA[]) AS u (seq, hash, raw)`,
				device, day, seqs, hashes, bodies)
		default:
			// COPY (binary): a quarter faster than the INSERT of arrays
			// for a box's batch of 5,000.
			rows := make([][]any, len(seqs))
			for i := range seqs {
				rows[i] = []any{device, seqs[i], day, hashes[i], bodies[i]}
			}
			if _, err := tx.CopyFrom(ctx, pgx.Identifier{"events"}, []string{"device", "seq", "day", "hash", "raw"}, pgx.CopyFromRows(rows)); err != nil {
				return err
			}
		}
		b.Queue("UPDATE devices SET mark = $2, last_hash = $3 WHERE id = $1", device, int64(mark), prev[:])
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return 0, wrap("store events", err)
	}
	return mark, nil
}

// wrap names the call in an error of the database, and leaves the
// authority's own errors as they are.
func wrap(what string, err error) error {
	if err == nil {
		return nil
	}
	for _, e := range []error{store.ErrGap, store.ErrConflict, store.ErrBadEvent, store.ErrUnknownDevice, store.ErrBadToken,
		store.ErrBadProof, store.ErrUnknownHolder, store.ErrFeedVersion, store.ErrFeedKind, ErrClosed} {
		if errors.Is(err, e) {
			return err
		}
	}
	return fmt.Errorf("postgres: %s: %w", what, err)
}

// DeclarePurged records that a device's events g.From to g.To were purged
// at the checkpoint before the authority held them, as
// store.Authority.DeclarePurged does: the mark moves past the range and
// the next event must link to g.Last; a range behind the mark is ignored,
// one that does not start at the mark's next event is ErrGap.
func (s *Store) DeclarePurged(device string, g store.ForcedPurge) (uint64, error) {
	var mark uint64
	err := s.write(func(ctx context.Context, tx pgx.Tx) error {
		var m int64
		err := tx.QueryRow(ctx, "SELECT mark FROM devices WHERE id = $1 FOR UPDATE", device).Scan(&m)
		if errors.Is(err, pgx.ErrNoRows) {
			return store.ErrUnknownDevice
		}
		if err != nil {
			return err
		}
		mark = uint64(m)
		switch {
		case g.To <= mark:
			return nil
		case g.From != mark+1 || g.To < g.From || g.To > maxSeq:
			return fmt.Errorf("%w: purged events %d to %d after event %d", store.ErrGap, g.From, g.To, mark)
		}
		b := &pgx.Batch{}
		b.Queue("INSERT INTO purged (device, to_seq, from_seq, last_hash, at) VALUES ($1, $2, $3, $4, $5)",
			device, int64(g.To), int64(g.From), g.Last[:], g.At)
		b.Queue("UPDATE devices SET mark = $2, last_hash = $3 WHERE id = $1", device, int64(g.To), g.Last[:])
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return err
		}
		mark = g.To
		return nil
	})
	if err != nil {
		return mark, wrap("declare purged", err)
	}
	return mark, nil
}

// Purged lists the ranges a device declared purged, in order.
func (s *Store) Purged(device string) ([]store.ForcedPurge, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	rows, err := s.pool.Query(ctx, "SELECT from_seq, to_seq, last_hash, at FROM purged WHERE device = $1 ORDER BY to_seq", device)
	if err != nil {
		return nil, wrap("purged", err)
	}
	var out []store.ForcedPurge
	var from, to int64
	var last []byte
	var at time.Time
	_, err = pgx.ForEachRow(rows, []any{&from, &to, &last, &at}, func() error {
		if len(last) != 32 {
			return fmt.Errorf("device %s: a purge's last hash of %d bytes", device, len(last))
		}
		out = append(out, store.ForcedPurge{From: uint64(from), To: uint64(to), Last: [32]byte(last), At: at})
		return nil
	})
	if err != nil {
		return nil, wrap("purged", err)
	}
	return out, nil
}

// Mark returns the device's mark (0 for a device not enrolled).
func (s *Store) Mark(device string) (uint64, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	var m int64
	err := s.pool.QueryRow(ctx, "SELECT mark FROM devices WHERE id = $1", device).Scan(&m)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, wrap("mark", err)
	}
	return uint64(m), nil
}

// DeviceEvents returns up to limit events of a device from seq from on.
func (s *Store) DeviceEvents(device string, from uint64, limit int) ([]store.Event, error) {
	var out []store.Event
	err := s.read(func(ctx context.Context, tx pgx.Tx) error {
		var one int
		err := tx.QueryRow(ctx, "SELECT 1 FROM devices WHERE id = $1", device).Scan(&one)
		if errors.Is(err, pgx.ErrNoRows) {
			return store.ErrUnknownDevice
		}
		if err != nil || from > maxSeq || limit <= 0 {
			return err
		}
		rows, err := tx.Query(ctx, "SELECT raw FROM events WHERE device = $1 AND seq >= $2 ORDER BY seq LIMIT $3",
			device, int64(from), limit)
		if err != nil {
			return err
		}
		var raw []byte
		_, err = pgx.ForEachRow(rows, []any{&raw}, func() error {
			e, err := store.DecodeEvent(raw)
			if err != nil {
				return err
			}
			out = append(out, e)
			return nil
		})
		return err
	})
	if err != nil {
		return nil, wrap("device events", err)
	}
	return out, nil
}

// dayOf is the UTC day of t, at its midnight.
func dayOf(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// partitionName is the name of the event partition of a day.
func partitionName(day time.Time) string { return "events_p" + day.Format("20060102") }

// ensureDays makes the event partitions of day and of the DaysAhead days
// after it, unless this process has seen them made. Making a partition
// locks the events table for a moment, so it is done ahead: once a day,
// by the first upload of the day, for the day after next. On CockroachDB
// the table is not partitioned.
func (s *Store) ensureDays(ctx context.Context, day time.Time) error {
	if s.cockroach {
		return nil
	}
	day = dayOf(day)
	var missing []time.Time
	s.mu.Lock()
	for i := 0; i <= s.opts.DaysAhead; i++ {
		if d := day.AddDate(0, 0, i); !s.days[partitionName(d)] {
			missing = append(missing, d)
		}
	}
	s.mu.Unlock()
	if len(missing) == 0 {
		return nil
	}
	var made []string
	// At READ COMMITTED (as the migrations, migrate.go): the partitions
	// are listed after the lock, and must include those another process
	// made while this one waited for it.
	err := s.inTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, func(tx pgx.Tx) error {
		made = made[:0]
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(lockPartitions)); err != nil {
			return err
		}
		existing, err := partitions(ctx, tx)
		if err != nil {
			return err
		}
		for _, d := range missing {
			name := partitionName(d)
			if existing[name] {
				continue
			}
			// The names and bounds are made from dates here, never from
			// anything a client sent.
			_, err := tx.Exec(ctx, fmt.Sprintf("CREATE TABLE %s PARTITION OF events FOR VALUES FROM ('%s') TO ('%s')",
				name, d.Format(time.DateOnly), d.AddDate(0, 0, 1).Format(time.DateOnly)))
			if err != nil {
				return err
			}
			made = append(made, name)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("postgres: making event partitions: %w", err)
	}
	s.mu.Lock()
	for _, d := range missing {
		s.days[partitionName(d)] = true
	}
	s.mu.Unlock()
	for _, name := range made {
		s.log.Info("event partition made", "partition", name)
	}
	return nil
}

// partitions returns the names of the events table's partitions.
func partitions(ctx context.Context, tx pgx.Tx) (map[string]bool, error) {
	rows, err := tx.Query(ctx, `SELECT c.relname FROM pg_inherits i
		JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
		WHERE p.relname = 'events' AND p.relnamespace = to_regnamespace(current_schema())::oid`)
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	var name string
	_, err = pgx.ForEachRow(rows, []any{&name}, func() error {
		out[name] = true
		return nil
	})
	return out, err
}

// DropEventsBefore removes the events received before the UTC day of
// before: on PostgreSQL by dropping the partitions of those days whole,
// on CockroachDB by deleting them in batches. The devices' marks stay: an
// event of a dropped day uploaded again is refused as a gap, as an event
// declared purged is. It returns how many days (partitions) or events
// (CockroachDB) it removed.
func (s *Store) DropEventsBefore(before time.Time) (int, error) {
	cut := dayOf(before)
	ctx, cancel := s.ctx()
	defer cancel()
	if s.cockroach {
		n := 0
		for {
			tag, err := s.pool.Exec(ctx, "DELETE FROM events WHERE day < $1 LIMIT 10000", cut)
			if err != nil {
				return n, wrap("drop events", err)
			}
			n += int(tag.RowsAffected())
			if tag.RowsAffected() == 0 {
				return n, nil
			}
		}
	}
	var dropped []string
	err := s.inTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, func(tx pgx.Tx) error {
		dropped = dropped[:0]
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(lockPartitions)); err != nil {
			return err
		}
		existing, err := partitions(ctx, tx)
		if err != nil {
			return err
		}
		for name := range existing {
			d, err := time.Parse("20060102", strings.TrimPrefix(name, "events_p"))
			if err != nil || !strings.HasPrefix(name, "events_p") || !d.Before(cut) {
				continue
			}
			if _, err := tx.Exec(ctx, "DROP TABLE "+name); err != nil {
				return err
			}
			dropped = append(dropped, name)
		}
		return nil
	})
	if err != nil {
		return 0, wrap("drop events", err)
	}
	s.mu.Lock()
	for _, name := range dropped {
		delete(s.days, name)
	}
	s.mu.Unlock()
	for _, name := range dropped {
		s.log.Info("event partition dropped", "partition", name)
	}
	return len(dropped), nil
}
