package postgres

import (
	"errors"

	"github.com/jackc/pgx/v5"
)

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
