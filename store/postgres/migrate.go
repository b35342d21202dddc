package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// The schema's versions: migrations/NNNN_name.sql, applied in order, each
// once. A version may instead come as NNNN_name.postgres.sql and
// NNNN_name.cockroach.sql where the two databases need different SQL. A
// migration is never changed once released: a change is a new version.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// migration is one version of the schema.
type migration struct {
	version int
	name    string
	sql     string
}

// Advisory lock keys (PostgreSQL only): one for migrations, one for making
// and dropping event partitions.
const (
	lockMigrations = 0x6368_6b70_0001 // "chkp", 1
	lockPartitions = 0x6368_6b70_0002
)

// migrations returns the migrations for a dialect ("postgres" or
// "cockroach"), in order.
func migrations(dialect string) ([]migration, error) {
	entries, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		return nil, err
	}
	common, specific := map[int]migration{}, map[int]migration{}
	for _, e := range entries {
		name := strings.TrimSuffix(e.Name(), ".sql")
		num, rest, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("postgres: migration %s: the name must be NNNN_name.sql", e.Name())
		}
		raw, err := migrationFiles.ReadFile("migrations/" + e.Name())
		if err != nil {
			return nil, err
		}
		m := migration{version: v, name: name, sql: string(raw)}
		base, d, hasDialect := strings.Cut(rest, ".")
		switch {
		case !hasDialect:
			common[v] = m
		case d == dialect:
			m.name = num + "_" + base
			specific[v] = m
		}
	}
	for v, m := range specific {
		common[v] = m
	}
	var out []migration
	for _, m := range common {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	for i, m := range out {
		if m.version != i+1 {
			return nil, fmt.Errorf("postgres: migration %d is missing for %s", i+1, dialect)
		}
	}
	return out, nil
}

// migrate applies the migrations the database lacks, in one transaction.
// On PostgreSQL, whose DDL is transactional, an advisory lock held for the
// transaction makes authority processes starting at once take turns: the
// first applies, the others find the versions applied. CockroachDB has no
// advisory locks that lock: there concurrent starts conflict, and the
// losers try again and find the versions applied.
func (s *Store) migrate(ctx context.Context) error {
	dialect := "postgres"
	if s.cockroach {
		dialect = "cockroach"
	}
	ms, err := migrations(dialect)
	if err != nil {
		return err
	}
	var applied []string
	for attempt := 0; ; attempt++ {
		applied = applied[:0]
		// READ COMMITTED whatever the database's default: the statements
		// after the lock must see what the process before committed, which
		// a snapshot taken before the wait would not.
		err = pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, func(tx pgx.Tx) error {
			if !s.cockroach {
				if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(lockMigrations)); err != nil {
					return err
				}
			}
			if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
				version    INT PRIMARY KEY,
				name       TEXT NOT NULL,
				applied_at TIMESTAMPTZ NOT NULL DEFAULT now())`); err != nil {
				return err
			}
			var have int
			if err := tx.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM schema_migrations").Scan(&have); err != nil {
				return err
			}
			if have > len(ms) {
				return fmt.Errorf("%w: it is at version %d, this authority knows %d", ErrSchemaNewer, have, len(ms))
			}
			for _, m := range ms[have:] {
				if _, err := tx.Exec(ctx, m.sql); err != nil {
					return fmt.Errorf("migration %s: %w", m.name, err)
				}
				if _, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", m.version, m.name); err != nil {
					return fmt.Errorf("migration %s: %w", m.name, err)
				}
				applied = append(applied, m.name)
			}
			return nil
		})
		var pe *pgconn.PgError
		concurrent := retryable(err) || (s.cockroach && errors.As(err, &pe) && (pe.Code == "42P07" || pe.Code == "23505"))
		if err == nil || !concurrent || attempt >= s.opts.Retries {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("postgres: migrating: %w", ctx.Err())
		case <-time.After(time.Duration(attempt+1) * 50 * time.Millisecond):
		}
	}
	if errors.Is(err, ErrSchemaNewer) {
		return err
	}
	if err != nil {
		return fmt.Errorf("postgres: migrating: %w", err)
	}
	for _, name := range applied {
		s.log.Info("schema migration applied", "migration", name)
	}
	return nil
}
