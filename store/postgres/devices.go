package postgres

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/checkpointd/checkpoint/store"
)

// tokenKey is how a token is kept: its SHA-256.
func tokenKey(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

// AddToken stores a one-time enrolment token (again: with a new name and
// expiry).
func (s *Store) AddToken(token, name string, expires time.Time) error {
	ctx, cancel := s.ctx()
	defer cancel()
	_, err := s.pool.Exec(ctx, `INSERT INTO enrolment_tokens (token_sha256, name, expires) VALUES ($1, $2, $3)
		ON CONFLICT (token_sha256) DO UPDATE SET name = excluded.name, expires = excluded.expires`,
		tokenKey(token), name, expires)
	return wrap("add token", err)
}

// Enroll uses a token to enrol a device key, and returns the device id.
// A token is used once: of two enrolments with it at once, from any
// process, one gets ErrBadToken. An expired token is ErrBadToken, and
// stays.
func (s *Store) Enroll(token, name string, key ed25519.PublicKey, now time.Time) (string, error) {
	var id string
	err := s.write(func(ctx context.Context, tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, "DELETE FROM enrolment_tokens WHERE token_sha256 = $1 AND expires >= $2", tokenKey(token), now)
		if err != nil {
			return err
		}
		if tag.RowsAffected() != 1 {
			return store.ErrBadToken
		}
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return err
		}
		id = hex.EncodeToString(b[:])
		_, err = tx.Exec(ctx, "INSERT INTO devices (id, name, key, enrolled, mark, last_hash) VALUES ($1, $2, $3, $4, 0, $5)",
			id, name, []byte(key), now, make([]byte, 32))
		return err
	})
	if err != nil {
		return "", wrap("enrol", err)
	}
	return id, nil
}

// DeviceKey returns an enrolled device's key. Keys never change once
// enrolled, so each is read from the database once per process.
func (s *Store) DeviceKey(id string) (ed25519.PublicKey, error) {
	s.mu.Lock()
	key, ok := s.keys[id]
	s.mu.Unlock()
	if ok {
		return key, nil
	}
	ctx, cancel := s.ctx()
	defer cancel()
	var raw []byte
	err := s.pool.QueryRow(ctx, "SELECT key FROM devices WHERE id = $1", id).Scan(&raw)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, store.ErrUnknownDevice
	}
	if err != nil {
		return nil, wrap("device key", err)
	}
	key = ed25519.PublicKey(raw)
	s.mu.Lock()
	s.keys[id] = key
	s.mu.Unlock()
	return key, nil
}

// Devices returns the enrolled checkpoints, by id.
func (s *Store) Devices() ([]store.EnrolledDevice, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	rows, err := s.pool.Query(ctx, "SELECT id, name, enrolled, mark FROM devices ORDER BY id")
	if err != nil {
		return nil, wrap("devices", err)
	}
	var out []store.EnrolledDevice
	var d store.EnrolledDevice
	var mark int64
	_, err = pgx.ForEachRow(rows, []any{&d.ID, &d.Name, &d.Enrolled, &mark}, func() error {
		d.Mark = uint64(mark)
		out = append(out, d)
		return nil
	})
	if err != nil {
		return nil, wrap("devices", err)
	}
	return out, nil
}
