package main

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/checkpointd/checkpoint/internal/authority"
	"github.com/checkpointd/checkpoint/internal/clock"
	"github.com/checkpointd/checkpoint/store"
	"github.com/checkpointd/checkpoint/store/postgres"
)

// storage is what the commands need of the database: the server's
// Storage, the trust list to serve, the events held (unseal), and closing.
type storage interface {
	authority.Storage
	SetTrustList(raw []byte) error
	DeviceEvents(device string, from uint64, limit int) ([]store.Event, error)
	DropEventsBefore(before time.Time) (int, error)
	Close() error
}

// Both databases keep all of it.
var (
	_ storage = (*store.Authority)(nil)
	_ storage = (*postgres.Store)(nil)
)

// dbHelp describes the --db flag of the commands that open the database.
const dbHelp = "the authority's database: a bbolt file's path, or a PostgreSQL connection string " +
	"(postgres://… or postgresql://… URL, or host=… dbname=…; no password in it: PGPASSWORD or ~/.pgpass; docs/database.md)"

// isPostgres reports whether --db names a PostgreSQL (or CockroachDB)
// database rather than a bbolt file: a postgres:// or postgresql:// URL,
// or a key=value connection string with a host.
func isPostgres(db string) bool {
	if strings.HasPrefix(db, "postgres://") || strings.HasPrefix(db, "postgresql://") {
		return true
	}
	for _, f := range strings.Fields(db) {
		if strings.HasPrefix(f, "host=") {
			return true
		}
	}
	return false
}

// openStorage opens the database --db names: PostgreSQL for a connection
// string (docs/database.md), the bbolt file at that path otherwise (the
// embedded default). clk dates the events' reception.
func openStorage(db string, clk clock.Clock) (storage, error) {
	if !isPostgres(db) {
		a, err := store.OpenAuthority(db)
		if err != nil {
			return nil, err
		}
		return a, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	pg, err := postgres.Open(ctx, db, postgres.Options{Clock: clk, Log: log})
	if err != nil {
		return nil, err
	}
	return pg, nil
}
