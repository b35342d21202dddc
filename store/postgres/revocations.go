package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/checkpointd/checkpoint/store"
)

// revState is the revocation_state row.
type revState struct {
	version uint64
	set     store.SetDigest
}

// lockRevState reads the revocation state and locks it for the
// transaction: every change to the revocations takes this lock first, so
// versions follow each other one at a time, whichever process makes them.
func lockRevState(ctx context.Context, tx pgx.Tx) (revState, error) {
	return scanRevState(tx.QueryRow(ctx, "SELECT version, entries, digest FROM revocation_state WHERE id = 1 FOR UPDATE"))
}

func scanRevState(row pgx.Row) (revState, error) {
	var version, entries int64
	var digest []byte
	if err := row.Scan(&version, &entries, &digest); err != nil {
		return revState{}, err
	}
	if len(digest) != 32 {
		return revState{}, fmt.Errorf("a revocation digest of %d bytes", len(digest))
	}
	return revState{uint64(version), store.SetDigest{Count: uint64(entries), Digest: [32]byte(digest)}}, nil
}

func putRevState(ctx context.Context, tx pgx.Tx, st revState) error {
	_, err := tx.Exec(ctx, "UPDATE revocation_state SET version = $1, entries = $2, digest = $3 WHERE id = 1",
		int64(st.version), int64(st.set.Count), st.set.Digest[:])
	return err
}

// Revoke adds revocations as one new version, as store.Authority.Revoke
// does: a subject already revoked keeps the later cut-off and the later
// drop-after time, and one already covered is left as it is. It returns
// the new version.
func (s *Store) Revoke(entries []store.RevEntry) (uint64, error) {
	var version uint64
	err := s.write(func(ctx context.Context, tx pgx.Tx) error {
		var err error
		version, err = revoke(ctx, tx, entries)
		return err
	})
	if err != nil {
		return 0, wrap("revoke", err)
	}
	return version, nil
}

// RevokeNow adds e as one new version, as store.Authority.RevokeNow
// does: its cut-off is the later of e.Before and the second after the
// subject's live cut-off, read under the revocation state's lock, so that
// no other change to the revocations comes between the read and the
// write, whichever process makes it. It returns the new version.
func (s *Store) RevokeNow(e store.RevEntry) (uint64, error) {
	var version uint64
	err := s.write(func(ctx context.Context, tx pgx.Tx) error {
		var err error
		version, err = revokeAfterHeld(ctx, tx, e)
		return err
	})
	if err != nil {
		return 0, wrap("revoke", err)
	}
	return version, nil
}

// revokeAfterHeld adds e within tx as one new version, its cut-off moved
// past the subject's live one (store.RevEntry.AfterCutoff). The
// revocation state is locked first, so the cut-off read is the one the
// new version replaces.
func revokeAfterHeld(ctx context.Context, tx pgx.Tx, e store.RevEntry) (uint64, error) {
	if _, err := lockRevState(ctx, tx); err != nil {
		return 0, err
	}
	var held int64
	err := tx.QueryRow(ctx, "SELECT cutoff FROM revocations WHERE subject = $1 AND live", e.Subject[:]).Scan(&held)
	switch {
	case err == nil:
		e = e.AfterCutoff(held)
	case !errors.Is(err, pgx.ErrNoRows):
		return 0, err
	}
	return revoke(ctx, tx, []store.RevEntry{e})
}

// revoke adds revocations as one new version within tx.
func revoke(ctx context.Context, tx pgx.Tx, entries []store.RevEntry) (uint64, error) {
	st, err := lockRevState(ctx, tx)
	if err != nil {
		return 0, err
	}
	st.version++
	subjects := make([][]byte, 0, len(entries))
	for i := range entries {
		subjects = append(subjects, entries[i].Subject[:])
	}
	// The live entries of these subjects, as they stand.
	cur := map[[store.SubjectSize]byte]store.RevEntry{}
	rows, err := tx.Query(ctx, "SELECT subject, cutoff, drop_after FROM revocations WHERE subject = ANY($1) AND live", subjects)
	if err != nil {
		return 0, err
	}
	var subject []byte
	var cutoff, drop int64
	_, err = pgx.ForEachRow(rows, []any{&subject, &cutoff, &drop}, func() error {
		if len(subject) != store.SubjectSize {
			return fmt.Errorf("a revoked subject of %d bytes", len(subject))
		}
		sub := [store.SubjectSize]byte(subject)
		cur[sub] = store.RevEntry{Subject: sub, Before: cutoff, DropAfter: drop}
		return nil
	})
	if err != nil {
		return 0, err
	}
	// In order, as the bbolt store applies them: an entry may cover or
	// extend one before it in the same call.
	changed := map[[store.SubjectSize]byte]bool{}
	var order [][store.SubjectSize]byte
	for _, e := range entries {
		e.Tombstone = false
		if o, ok := cur[e.Subject]; ok {
			if o.Before >= e.Before && o.DropAfter >= e.DropAfter {
				continue // already covered
			}
			e.Before, e.DropAfter = max(e.Before, o.Before), max(e.DropAfter, o.DropAfter)
			st.set.Remove(o)
		}
		st.set.Add(e)
		cur[e.Subject] = e
		if !changed[e.Subject] {
			changed[e.Subject] = true
			order = append(order, e.Subject)
		}
	}
	if len(order) > 0 {
		subs := make([][]byte, len(order))
		cutoffs, drops := make([]int64, len(order)), make([]int64, len(order))
		for i, sub := range order {
			e := cur[sub]
			subs[i], cutoffs[i], drops[i] = e.Subject[:], e.Before, e.DropAfter
		}
		_, err := tx.Exec(ctx, `INSERT INTO revocations (subject, cutoff, drop_after, version, live)
			SELECT u.subject, u.cutoff, u.drop_after, $4, true FROM unnest($1::BYTEA[], $2::BIGINT[], $3::BIGINT[]) AS u (subject, cutoff, drop_after)
			ON CONFLICT (subject) DO UPDATE SET cutoff = excluded.cutoff, drop_after = excluded.drop_after, version = excluded.version, live = true`,
			subs, cutoffs, drops, int64(st.version))
		if err != nil {
			return 0, err
		}
	}
	return st.version, putRevState(ctx, tx, st)
}

// Expire removes the entries whose drop-after time has passed, as one new
// version with tombstones for them, as store.Authority.Expire does. It
// returns the version and how many it removed (none: no new version). It
// looks first without a lock, so that the servers' calls every minute
// cost a read when nothing is due.
func (s *Store) Expire(now time.Time) (uint64, int, error) {
	var version uint64
	n := 0
	err := s.write(func(ctx context.Context, tx pgx.Tx) error {
		n = 0
		var due bool
		if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM revocations WHERE live AND drop_after <= $1)", now.Unix()).Scan(&due); err != nil {
			return err
		}
		if !due {
			st, err := scanRevState(tx.QueryRow(ctx, "SELECT version, entries, digest FROM revocation_state WHERE id = 1"))
			version = st.version
			return err
		}
		st, err := lockRevState(ctx, tx)
		if err != nil {
			return err
		}
		version = st.version
		rows, err := tx.Query(ctx, "SELECT subject, cutoff, drop_after FROM revocations WHERE live AND drop_after <= $1", now.Unix())
		if err != nil {
			return err
		}
		var subject []byte
		var cutoff, drop int64
		_, err = pgx.ForEachRow(rows, []any{&subject, &cutoff, &drop}, func() error {
			if len(subject) != store.SubjectSize {
				return fmt.Errorf("a revoked subject of %d bytes", len(subject))
			}
			st.set.Remove(store.RevEntry{Subject: [store.SubjectSize]byte(subject), Before: cutoff, DropAfter: drop})
			n++
			return nil
		})
		if err != nil || n == 0 {
			return err
		}
		st.version++
		version = st.version
		tag, err := tx.Exec(ctx, "UPDATE revocations SET live = false, cutoff = 0, drop_after = 0, version = $2 WHERE live AND drop_after <= $1",
			now.Unix(), int64(st.version))
		if err != nil {
			return err
		}
		if tag.RowsAffected() != int64(n) {
			return fmt.Errorf("%d entries expired, %d read", tag.RowsAffected(), n)
		}
		return putRevState(ctx, tx, st)
	})
	if err != nil {
		return 0, 0, wrap("expire", err)
	}
	return version, n, nil
}

// RevocationState returns the current version and its set's digest.
func (s *Store) RevocationState() (uint64, store.SetDigest, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	st, err := scanRevState(s.pool.QueryRow(ctx, "SELECT version, entries, digest FROM revocation_state WHERE id = 1"))
	if err != nil {
		return 0, store.SetDigest{}, wrap("revocation state", err)
	}
	return st.version, st.set, nil
}

// RevocationItems returns what a checkpoint at version since needs to
// reach the current version, sorted by subject, as
// store.Authority.RevocationItems does: the subjects changed since then
// in their current state (an entry, or a tombstone), or the whole set
// (snapshot) when that is smaller or since is 0. It also returns the
// current version and set. One snapshot of the database answers all of it.
func (s *Store) RevocationItems(since uint64) (items []store.RevEntry, snapshot bool, version uint64, set store.SetDigest, err error) {
	err = s.read(func(ctx context.Context, tx pgx.Tx) error {
		items, snapshot = nil, false
		st, err := scanRevState(tx.QueryRow(ctx, "SELECT version, entries, digest FROM revocation_state WHERE id = 1"))
		if err != nil {
			return err
		}
		version, set = st.version, st.set
		if since >= version {
			return nil
		}
		if since > 0 {
			// One more than the set's size tells a delta from a snapshot.
			items, err = scanItems(tx.Query(ctx, `SELECT subject, cutoff, drop_after, live FROM revocations
				WHERE version > $1 ORDER BY subject LIMIT $2`, int64(since), int64(set.Count)+1))
			if err != nil || uint64(len(items)) <= set.Count {
				return err
			}
		}
		snapshot = true
		items, err = scanItems(tx.Query(ctx, "SELECT subject, cutoff, drop_after, live FROM revocations WHERE live ORDER BY subject"))
		return err
	})
	if err != nil {
		return nil, false, 0, store.SetDigest{}, wrap("revocation items", err)
	}
	return items, snapshot, version, set, nil
}

func scanItems(rows pgx.Rows, err error) ([]store.RevEntry, error) {
	if err != nil {
		return nil, err
	}
	var out []store.RevEntry
	var subject []byte
	var cutoff, drop int64
	var live bool
	_, err = pgx.ForEachRow(rows, []any{&subject, &cutoff, &drop, &live}, func() error {
		if len(subject) != store.SubjectSize {
			return errors.New("a revoked subject of the wrong size")
		}
		e := store.RevEntry{Subject: [store.SubjectSize]byte(subject)}
		if live {
			e.Before, e.DropAfter = cutoff, drop
		} else {
			e.Tombstone = true
		}
		out = append(out, e)
		return nil
	})
	return out, err
}
