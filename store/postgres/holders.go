package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/checkpointd/checkpoint/store"
)

// Declare records a holder's declaration at now and has issue make the
// credential, in one transaction, as store.Authority.Declare does: issue
// gets the colour held for the subject ("" for none) and the issue time
// (now, or the second after a colour set in this very second); nothing is
// recorded if issue fails or the last declaration was less than gap ago,
// and Declare then reports false and when the next one is allowed.
//
// The transaction locks the holder's row (made, if the holder has none,
// by the declaration itself), so that of two declarations at once, from
// any process, one waits for the other and then sees it; a colour set
// waits for the declaration under way, and the other way round. issue
// must not use the database; on CockroachDB it may run again if the
// transaction is retried.
func (s *Store) Declare(subject [store.SubjectSize]byte, now time.Time, gap time.Duration,
	issue func(colour string, at time.Time) error) (bool, time.Time, error) {
	ok := false
	var next time.Time
	var issueErr error
	err := s.write(func(ctx context.Context, tx pgx.Tx) error {
		ok, next, issueErr = false, time.Time{}, nil
		if _, err := tx.Exec(ctx, "INSERT INTO holders (subject, declared) VALUES ($1, NULL) ON CONFLICT (subject) DO NOTHING", subject[:]); err != nil {
			return err
		}
		var last *int64
		if err := tx.QueryRow(ctx, "SELECT declared FROM holders WHERE subject = $1 FOR UPDATE", subject[:]).Scan(&last); err != nil {
			return err
		}
		if last != nil {
			if next = time.Unix(*last, 0).Add(gap); now.Before(next) {
				return errNotNow
			}
		}
		var colour string
		var since time.Time
		err := tx.QueryRow(ctx, "SELECT colour, since FROM colours WHERE subject = $1", subject[:]).Scan(&colour, &since)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		at := now
		if after := since.Add(time.Second); colour != "" && at.Before(after) {
			at = after
		}
		if err := issue(colour, at); err != nil {
			issueErr = err
			return err
		}
		if _, err := tx.Exec(ctx, "UPDATE holders SET declared = $2 WHERE subject = $1", subject[:], now.Unix()); err != nil {
			return err
		}
		ok = true
		return nil
	})
	switch {
	case errors.Is(err, errNotNow):
		return false, next, nil
	case err != nil && issueErr != nil:
		return false, next, issueErr
	case err != nil:
		return false, next, wrap("declare", err)
	}
	return ok, next, nil
}

// errNotNow rolls back a declaration made too soon.
var errNotNow = errors.New("declared within the gap")

// SetColour records a subject's colour from at and adds rev, the
// revocation of the credentials issued at or before at, in one
// transaction, whether or not the colour changed, and forgets the
// subject's last declaration, as store.Authority.SetColour does. It
// returns the revocation version.
func (s *Store) SetColour(subject [store.SubjectSize]byte, colour string, at time.Time, rev store.RevEntry) (uint64, error) {
	var version uint64
	err := s.write(func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO colours (subject, colour, since) VALUES ($1, $2, $3)
			ON CONFLICT (subject) DO UPDATE SET colour = excluded.colour, since = excluded.since`, subject[:], colour, at)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "DELETE FROM holders WHERE subject = $1", subject[:]); err != nil {
			return err
		}
		version, err = revoke(ctx, tx, []store.RevEntry{rev})
		return err
	})
	if err != nil {
		return 0, wrap("set colour", err)
	}
	return version, nil
}

// Colour returns the colour the authority holds for a subject ("" for
// none).
func (s *Store) Colour(subject [store.SubjectSize]byte) (string, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	var c string
	err := s.pool.QueryRow(ctx, "SELECT colour FROM colours WHERE subject = $1", subject[:]).Scan(&c)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return "", wrap("colour", err)
	}
	return c, nil
}

// TrustList returns the trust list the authority serves (nil: none).
func (s *Store) TrustList() ([]byte, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	var raw []byte
	err := s.pool.QueryRow(ctx, "SELECT value FROM settings WHERE name = 'trust.list'").Scan(&raw)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return nil, wrap("trust list", err)
	}
	return raw, nil
}

// SetTrustList stores the trust list to serve.
func (s *Store) SetTrustList(raw []byte) error {
	if raw == nil {
		raw = []byte{}
	}
	ctx, cancel := s.ctx()
	defer cancel()
	_, err := s.pool.Exec(ctx, `INSERT INTO settings (name, value) VALUES ('trust.list', $1)
		ON CONFLICT (name) DO UPDATE SET value = excluded.value`, raw)
	return wrap("set trust list", err)
}
