package postgres

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/checkpointd/checkpoint/store"
)

// The holders' side (docs/authority.md): registration codes and
// registrations, holders with their colours and histories, as
// store.Authority keeps them in bbolt; the doc comments in
// store/authority_holders.go are the contract. Every change to a subject
// locks its row of holder_subjects (made first, if there is none) for its
// transaction, so that registrations, declarations and feeds touching one
// subject, from any authority process, take turns, and each reads what
// the one before it recorded. The risk data and feeds are in feeds.go.

type subject = [store.SubjectSize]byte

// errNothing rolls back a transaction that has nothing to record (the
// rows it made only to lock them included).
var errNothing = errors.New("nothing to record")

// AddRegistrationCode stores a registration code under c.Hash, replacing
// any held under the same hash.
func (s *Store) AddRegistrationCode(c store.RegistrationCode) error {
	ctx, cancel := s.ctx()
	defer cancel()
	_, err := s.pool.Exec(ctx, `INSERT INTO registration_codes (code_hash, subject, masked_name, id_hash, operator, expires)
		VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (code_hash) DO UPDATE SET subject = excluded.subject, masked_name = excluded.masked_name,
			id_hash = excluded.id_hash, operator = excluded.operator, expires = excluded.expires`,
		c.Hash, c.Subject[:], c.MaskedName, c.IDHash, c.Operator, c.Expires)
	return wrap("add registration code", err)
}

// Register registers r.Key for r.Subject in one transaction if its proof
// holds, as store.Authority.Register does: a code is used (deleted) if
// held, unexpired and issued for r.Subject and r.MaskedName; an assertion
// id is recorded if never seen; otherwise nothing is recorded and the
// error is store.ErrBadProof. The key replaces any registered before (the
// colour and history are kept, and the next declaration allowed at once);
// if another key was registered, r.Revoke is added as a new revocation
// version, its cut-off no earlier than the second after the subject's
// cut-off as the transaction finds it (revokeAfterHeld), nor than the
// second after its last declaration as the transaction finds it
// (store.RevEntry.AfterDeclaration).
//
// The subject's row is locked first, then the code's (by its deletion) or
// the assertion id's (by its insertion): of two registrations with one
// proof at once, from any process, the second waits for the first and
// then finds the proof used.
func (s *Store) Register(r store.Registration) (store.Registered, error) {
	var out store.Registered
	err := s.write(func(ctx context.Context, tx pgx.Tx) error {
		out = store.Registered{}
		held, _, err := readHolders(ctx, tx, []subject{r.Subject}, true)
		if err != nil {
			return err
		}
		h := held[r.Subject].h
		masked, idHash := r.MaskedName, r.IDHash
		switch {
		case r.CodeHash != nil && r.AssertionID == nil:
			var sub, codeIDHash []byte
			var name string
			var expires time.Time
			err := tx.QueryRow(ctx, "DELETE FROM registration_codes WHERE code_hash = $1 RETURNING subject, masked_name, id_hash, expires",
				r.CodeHash).Scan(&sub, &name, &codeIDHash, &expires)
			if errors.Is(err, pgx.ErrNoRows) {
				return store.ErrBadProof
			}
			if err != nil {
				return err
			}
			if !bytes.Equal(sub, r.Subject[:]) || name != r.MaskedName || !r.At.Before(expires) {
				return store.ErrBadProof // the deletion is rolled back
			}
			masked, idHash = name, codeIDHash
		case r.AssertionID != nil && r.CodeHash == nil && len(r.IDHash) > 0:
			tag, err := tx.Exec(ctx, "INSERT INTO used_assertions (id, expires) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
				r.AssertionID, max(r.AssertionExpires.Unix(), 0))
			if err != nil {
				return err
			}
			if tag.RowsAffected() != 1 {
				return store.ErrBadProof
			}
		default:
			return store.ErrBadProof
		}
		out.Replaced = len(h.Key) > 0 && !bytes.Equal(h.Key, r.Key)
		colour := h.Colour
		colour.DeclareNow = true
		state, err := encodeState(colour)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE holder_subjects SET key = $2, registered = $3, masked_name = $4, id_hash = $5, state = $6::JSONB
			WHERE subject = $1`, r.Subject[:], []byte(r.Key), nullTime(r.At), masked, idHash, state); err != nil {
			return err
		}
		if out.Replaced {
			out.Version, err = revokeAfterHeld(ctx, tx, r.Revoke.AfterDeclaration(h.Colour))
		}
		return err
	})
	if err != nil {
		return store.Registered{}, wrap("register", err)
	}
	return out, nil
}

// ExpireProofs forgets the registration codes and the used assertion ids
// whose expiry is at or before now, and returns how many.
func (s *Store) ExpireProofs(now time.Time) (int, error) {
	n := 0
	err := s.write(func(ctx context.Context, tx pgx.Tx) error {
		n = 0
		b := &pgx.Batch{}
		b.Queue("DELETE FROM registration_codes WHERE expires <= $1", now)
		b.Queue("DELETE FROM used_assertions WHERE expires <= $1", now.Unix())
		br := tx.SendBatch(ctx, b)
		for range 2 {
			tag, err := br.Exec()
			if err != nil {
				br.Close()
				return err
			}
			n += int(tag.RowsAffected())
		}
		return br.Close()
	})
	if err != nil {
		return 0, wrap("expire proofs", err)
	}
	return n, nil
}

// Holder returns what the authority holds about a subject with a holder
// key registered, read on one snapshot; store.ErrUnknownHolder if it has
// none.
func (s *Store) Holder(sub subject) (store.Holder, error) {
	var h store.Holder
	err := s.read(func(ctx context.Context, tx pgx.Tx) error {
		held, _, err := readHolders(ctx, tx, []subject{sub}, false)
		if err != nil {
			return err
		}
		h = held[sub].h
		if h.Key == nil {
			return store.ErrUnknownHolder
		}
		return nil
	})
	if err != nil {
		return store.Holder{Subject: sub}, wrap("holder", err)
	}
	return h, nil
}

// UpdateHolder reads the subject as Holder does (with a nil Key if it
// has none registered) and calls fn with it, in one transaction, as
// store.Authority.UpdateHolder does: if fn fails nothing is recorded and
// its error is returned as it is; if it returns nil nothing is recorded;
// otherwise its colour state replaces the subject's, its change is
// appended to the history and its revocation added as one new version,
// whose number it returns (0 for none).
//
// The subject's row is locked (SELECT ... FOR UPDATE, made first if there
// is none) before anything is read, so that two updates of one subject,
// or an update and a feed naming it, from any process, take turns: the
// second reads what the first recorded. fn must not use the storage. It
// may be called again if the transaction is retried (a deadlock, or on
// CockroachDB a serialisation failure): what it does beside its result
// must bear that.
func (s *Store) UpdateHolder(sub subject, fn func(store.Holder) (*store.HolderUpdate, error)) (uint64, error) {
	var version uint64
	var fnErr error
	err := s.write(func(ctx context.Context, tx pgx.Tx) error {
		version, fnErr = 0, nil
		held, _, err := readHolders(ctx, tx, []subject{sub}, true)
		if err != nil {
			return err
		}
		r := held[sub]
		u, err := fn(r.h)
		if err != nil {
			fnErr = err
			return err
		}
		if u == nil {
			return errNothing
		}
		if err := recordUpdates(ctx, tx, []pending{{sub, r.changes, u}}); err != nil {
			return err
		}
		if u.Revoke != nil {
			version, err = revoke(ctx, tx, []store.RevEntry{*u.Revoke})
		}
		return err
	})
	switch {
	case errors.Is(err, errNothing):
		return 0, nil
	case err != nil && fnErr != nil:
		return 0, fnErr
	case err != nil:
		return 0, wrap("update holder", err)
	}
	return version, nil
}

// ColourHistory returns the last limit entries of a subject's history,
// oldest first.
func (s *Store) ColourHistory(sub subject, limit int) ([]store.ColourChange, error) {
	if limit <= 0 {
		return nil, nil
	}
	ctx, cancel := s.ctx()
	defer cancel()
	rows, err := s.pool.Query(ctx, `SELECT at, from_colour, colour, reasons, quarantine_end, cause FROM holder_history
		WHERE subject = $1 ORDER BY n DESC LIMIT $2`, sub[:], limit)
	if err != nil {
		return nil, wrap("colour history", err)
	}
	var out []store.ColourChange
	var c store.ColourChange
	var reasons []byte
	var end *time.Time
	_, err = pgx.ForEachRow(rows, []any{&c.At, &c.From, &c.Colour, &reasons, &end, &c.Cause}, func() error {
		ch := c
		ch.At, ch.QuarantineEnd, ch.Reasons = c.At.UTC(), timeOf(end), nil
		if err := json.Unmarshal(reasons, &ch.Reasons); err != nil {
			return fmt.Errorf("history reasons: %w", err)
		}
		out = append(out, ch)
		return nil
	})
	if err != nil {
		return nil, wrap("colour history", err)
	}
	slices.Reverse(out)
	return out, nil
}

// held is a subject as readHolders read it.
type held struct {
	h       store.Holder
	changes int64 // entries in its history
}

// readHolders reads subjects (sorted, each once) as store.Holder,
// within tx: their rows of holder_subjects, their listings and the
// cut-offs of their revocations. With lock, the rows of the subjects
// with none are made first (empty), and all are locked, in subject order,
// before the rest is read; made lists those it made. Every subject asked
// for is in the map, known or not.
func readHolders(ctx context.Context, tx pgx.Tx, subjects []subject, lock bool) (out map[subject]*held, made map[subject]bool, err error) {
	out, made = make(map[subject]*held, len(subjects)), map[subject]bool{}
	subs := make([][]byte, len(subjects))
	for i := range subjects {
		out[subjects[i]] = &held{h: store.Holder{Subject: subjects[i]}}
		subs[i] = subjects[i][:]
	}
	if len(subjects) == 0 {
		return out, made, nil
	}
	b := &pgx.Batch{}
	query := "SELECT subject, key, registered, masked_name, id_hash, state, changes FROM holder_subjects WHERE subject = ANY($1)"
	if lock {
		b.Queue(`INSERT INTO holder_subjects (subject) SELECT u.subject FROM unnest($1::BYTEA[]) AS u (subject) ORDER BY u.subject
			ON CONFLICT (subject) DO NOTHING RETURNING subject`, subs)
		query += " ORDER BY subject FOR UPDATE"
	}
	b.Queue(query, subs)
	b.Queue("SELECT subject, kind, since FROM risk_listings WHERE subject = ANY($1)", subs)
	b.Queue("SELECT subject, cutoff FROM revocations WHERE subject = ANY($1) AND live", subs)
	br := tx.SendBatch(ctx, b)
	defer func() {
		if cerr := br.Close(); err == nil {
			err = cerr
		}
	}()
	find := func(raw []byte) (*held, error) {
		if len(raw) != store.SubjectSize {
			return nil, fmt.Errorf("a subject of %d bytes", len(raw))
		}
		h := out[subject(raw)]
		if h == nil {
			return nil, errors.New("a subject not asked for")
		}
		return h, nil
	}
	var raw []byte
	if lock {
		rows, err := br.Query()
		if err != nil {
			return nil, nil, err
		}
		if _, err := pgx.ForEachRow(rows, []any{&raw}, func() error {
			if _, err := find(raw); err != nil {
				return err
			}
			made[subject(raw)] = true
			return nil
		}); err != nil {
			return nil, nil, err
		}
	}
	rows, err := br.Query()
	if err != nil {
		return nil, nil, err
	}
	var key, idHash, state []byte
	var registered *time.Time
	var masked string
	var changes int64
	if _, err := pgx.ForEachRow(rows, []any{&raw, &key, &registered, &masked, &idHash, &state, &changes}, func() error {
		h, err := find(raw)
		if err != nil {
			return err
		}
		if key != nil {
			h.h.Key = ed25519.PublicKey(bytes.Clone(key))
		}
		h.h.Registered, h.h.MaskedName, h.h.IDHash, h.changes = timeOf(registered), masked, bytes.Clone(idHash), changes
		if h.h.Colour, err = decodeState(state); err != nil {
			return err
		}
		return nil
	}); err != nil {
		return nil, nil, err
	}
	if rows, err = br.Query(); err != nil {
		return nil, nil, err
	}
	var kind string
	var since time.Time
	if _, err := pgx.ForEachRow(rows, []any{&raw, &kind, &since}, func() error {
		h, err := find(raw)
		if err != nil {
			return err
		}
		switch kind {
		case store.FeedCases:
			h.h.Case = since.UTC()
		case store.FeedCloseContacts:
			h.h.CloseContact = since.UTC()
		}
		return nil
	}); err != nil {
		return nil, nil, err
	}
	if rows, err = br.Query(); err != nil {
		return nil, nil, err
	}
	var cutoff int64
	if _, err := pgx.ForEachRow(rows, []any{&raw, &cutoff}, func() error {
		h, err := find(raw)
		if err != nil {
			return err
		}
		h.h.RevokedBefore = time.Unix(cutoff, 0).UTC()
		return nil
	}); err != nil {
		return nil, nil, err
	}
	return out, made, nil
}

// pending is an update to record for a subject whose history has changes
// entries.
type pending struct {
	subject subject
	changes int64
	u       *store.HolderUpdate
}

// recordUpdates records updates of subjects whose rows tx has locked:
// their colour states, and their changes appended to their histories,
// each kind in one statement. The caller adds the revocations.
func recordUpdates(ctx context.Context, tx pgx.Tx, ups []pending) error {
	if len(ups) == 0 {
		return nil
	}
	subs, states, counts := make([][]byte, len(ups)), make([]string, len(ups)), make([]int64, len(ups))
	var hSubs [][]byte
	var ns []int64
	var ats, ends []*time.Time
	var froms, colours, reasons, causes []string
	for i, p := range ups {
		state, err := encodeState(p.u.Colour)
		if err != nil {
			return err
		}
		subs[i], states[i], counts[i] = p.subject[:], state, p.changes
		if c := p.u.Change; c != nil {
			counts[i]++
			r, err := json.Marshal(c.Reasons)
			if err != nil {
				return err
			}
			hSubs, ns = append(hSubs, p.subject[:]), append(ns, counts[i])
			ats, ends = append(ats, nullTime(c.At)), append(ends, nullTime(c.QuarantineEnd))
			froms, colours, reasons, causes = append(froms, c.From), append(colours, c.Colour), append(reasons, string(r)), append(causes, c.Cause)
		}
	}
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO holder_subjects (subject, state, changes)
		SELECT u.subject, u.state::JSONB, u.changes FROM unnest($1::BYTEA[], $2::TEXT[], $3::BIGINT[]) AS u (subject, state, changes)
		ON CONFLICT (subject) DO UPDATE SET state = excluded.state, changes = excluded.changes`, subs, states, counts)
	if len(hSubs) > 0 {
		b.Queue(`INSERT INTO holder_history (subject, n, at, from_colour, colour, reasons, quarantine_end, cause)
			SELECT u.subject, u.n, u.at, u.from_colour, u.colour, u.reasons::JSONB, u.quarantine_end, u.cause
			FROM unnest($1::BYTEA[], $2::BIGINT[], $3::TIMESTAMPTZ[], $4::TEXT[], $5::TEXT[], $6::TEXT[], $7::TIMESTAMPTZ[], $8::TEXT[])
				AS u (subject, n, at, from_colour, colour, reasons, quarantine_end, cause)`,
			hSubs, ns, ats, froms, colours, reasons, ends, causes)
	}
	return tx.SendBatch(ctx, b).Close()
}

// stateRecord is a store.ColourState as holder_subjects.state keeps it.
type stateRecord struct {
	Colour          string       `json:"colour"`
	Since           time.Time    `json:"since,omitzero"`
	Reasons         []string     `json:"reasons"`
	QuarantineEnd   time.Time    `json:"quarantine_end,omitzero"`
	Holds           []holdRecord `json:"holds"`
	LastDeclaration time.Time    `json:"last_declaration,omitzero"`
	DeclareNow      bool         `json:"declare_now,omitempty"`
}

type holdRecord struct {
	Reason string    `json:"reason"`
	Colour string    `json:"colour"`
	End    time.Time `json:"end,omitzero"`
}

func utc(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC()
}

func encodeState(c store.ColourState) (string, error) {
	r := stateRecord{Colour: c.Colour, Since: utc(c.Since), Reasons: c.Reasons, QuarantineEnd: utc(c.QuarantineEnd),
		LastDeclaration: utc(c.LastDeclaration), DeclareNow: c.DeclareNow}
	if c.Holds != nil {
		r.Holds = make([]holdRecord, len(c.Holds))
		for i, h := range c.Holds {
			r.Holds[i] = holdRecord{h.Reason, h.Colour, utc(h.End)}
		}
	}
	raw, err := json.Marshal(r)
	return string(raw), err
}

func decodeState(raw []byte) (store.ColourState, error) {
	var r stateRecord
	if err := json.Unmarshal(raw, &r); err != nil {
		return store.ColourState{}, fmt.Errorf("colour state: %w", err)
	}
	c := store.ColourState{Colour: r.Colour, Since: utc(r.Since), Reasons: r.Reasons, QuarantineEnd: utc(r.QuarantineEnd),
		LastDeclaration: utc(r.LastDeclaration), DeclareNow: r.DeclareNow}
	if r.Holds != nil {
		c.Holds = make([]store.Hold, len(r.Holds))
		for i, h := range r.Holds {
			c.Holds[i] = store.Hold{Reason: h.Reason, Colour: h.Colour, End: utc(h.End)}
		}
	}
	return c, nil
}

// nullTime is t for a TIMESTAMPTZ column, NULL for the zero time.
func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

// timeOf is a nullable TIMESTAMPTZ read, in UTC; NULL is the zero time.
func timeOf(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}
