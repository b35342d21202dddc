package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/checkpointd/checkpoint/internal/authority"
	"github.com/checkpointd/checkpoint/internal/clock"
	"github.com/checkpointd/checkpoint/store"
	"github.com/checkpointd/checkpoint/store/postgres"
)

// storage is what serve needs of its database: the server's Storage, the
// trust list to serve, and closing.
type storage interface {
	authority.Storage
	SetTrustList(raw []byte) error
	Close() error
}

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
	// Checked when it runs, so that the build does not break while the
	// server's Storage grows ahead of the PostgreSQL store.
	var v any = pg
	st, ok := v.(storage)
	if !ok {
		pg.Close()
		return nil, errors.New("the PostgreSQL store does not yet keep everything this authority's server needs: use a bbolt file for --db")
	}
	return st, nil
}
