// Package postgres keeps the reference authority's database on PostgreSQL,
// for an authority that serves a province: the same enrolled devices and
// their events, revocations by version, holders (their keys, colours and
// histories), registration proofs, risk data and feeds, and trust list as
// store.Authority keeps in bbolt, with the same semantics and the same
// errors (store.ErrGap, store.ErrConflict, store.ErrBadEvent,
// store.ErrUnknownDevice, store.ErrBadToken, store.ErrBadProof,
// store.ErrUnknownHolder, store.ErrFeedVersion, store.ErrFeedKind), so
// that internal/authority's server runs on either. cmd/authority opens it
// when --db is a postgres:// URL or a host= connection string; bbolt stays
// the embedded default.
//
// Several authority processes may share one database: every change is one
// transaction, and what must not happen twice at once is serialised by a
// row lock (a device's row for its uploads, the revocation state's row for
// revocation versions, a subject's row for its registrations, declarations
// and the feeds that name it, a feed kind's and issuer's row for its
// versions); transactions that the database refuses as a serialisation
// failure or a deadlock are retried. The schema is versioned in
// migrations/ and applied at start under an advisory lock. Events are
// partitioned by the day they were received. The SQL is the subset
// CockroachDB also accepts, but for the events table's partitioning and
// the advisory lock, which are PostgreSQL's only (docs/database.md).
//
// It lives beside store/ and not in it: store is the only user of bbolt
// and is linked into every checkpoint, which has no use for a database
// client; this package uses store's types and errors, never bbolt.
package postgres

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/checkpointd/checkpoint/internal/clock"
)

// Options tune a Store.
type Options struct {
	// Clock dates the events' reception (their day's partition); nil: the
	// system clock. Times the caller passes (enrolment, expiry,
	// declarations) are the caller's.
	Clock clock.Clock
	Log   *slog.Logger
	// Timeout bounds each call, retries included; 0 means 60 seconds.
	// A session idle in a transaction for longer is ended by the
	// database (idle_in_transaction_session_timeout, unless the
	// connection string sets it), and its locks released.
	Timeout time.Duration
	// Retries is how often a transaction refused as a serialisation
	// failure or a deadlock is tried again; 0 means 10.
	Retries int
	// DaysAhead is how many days of event partitions are made ahead of
	// today's; 0 means 2.
	DaysAhead int

	insertArrays bool // insert events as CockroachDB does (tests)
}

// Store is the authority's database on PostgreSQL (or CockroachDB). It is
// safe for concurrent use, and several processes may share the database.
type Store struct {
	pool      *pgxpool.Pool
	opts      Options
	log       *slog.Logger
	cockroach bool
	arrays    bool // events are inserted from arrays, not copied (CockroachDB)

	base   context.Context // ends on Close
	cancel context.CancelFunc

	mu   sync.Mutex
	keys map[string]ed25519.PublicKey // enrolled keys never change
	days map[string]bool              // event partitions known to exist
}

// Errors of the PostgreSQL store (the authority's own errors are store's).
var (
	// ErrSchemaNewer is a database migrated by a newer authority than this
	// one: it does not know the schema and will not use it.
	ErrSchemaNewer = errors.New("postgres: the database's schema is newer than this authority's")
	// ErrClosed is a call on a closed Store.
	ErrClosed = errors.New("postgres: store closed")
)

// Open connects to the database at dsn (a postgres:// URL or a key=value
// connection string; pool_max_conns and the other pgxpool settings may be
// given in it), applies the migrations it lacks, and makes the event
// partitions of the next days.
func Open(ctx context.Context, dsn string, opts Options) (*Store, error) {
	if opts.Clock == nil {
		opts.Clock = clock.System{}
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 60 * time.Second
	}
	if opts.Retries <= 0 {
		opts.Retries = 10
	}
	if opts.DaysAhead <= 0 {
		opts.DaysAhead = 2
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// The error may quote the connection string, password and all.
		return nil, errors.New("postgres: the connection string does not parse")
	}
	if _, set := cfg.ConnConfig.RuntimeParams["idle_in_transaction_session_timeout"]; !set {
		// A process that stops between the statements of a transaction
		// (frozen, or cut off from the database) would keep its row locks
		// (a device's, a subject's, the revocation state's, which every
		// process's revocations wait for) until the database's TCP
		// keepalive notices, two hours by default. No healthy call is idle
		// in a transaction longer than its time limit: past that, the
		// database ends the session and its locks go. Set with SET after
		// connecting rather than as a startup parameter, which poolers
		// (PgBouncer) refuse.
		idle := fmt.Sprintf("SET idle_in_transaction_session_timeout = %d", opts.Timeout.Milliseconds())
		cfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
			_, err := c.Exec(ctx, idle)
			return err
		}
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	base, cancel := context.WithCancel(context.Background())
	s := &Store{pool: pool, opts: opts, arrays: opts.insertArrays, log: opts.Log.With("component", "authority-db"), base: base, cancel: cancel,
		keys: map[string]ed25519.PublicKey{}, days: map[string]bool{}}
	if err := s.open(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *Store) open(ctx context.Context) error {
	var version string
	if err := s.pool.QueryRow(ctx, "SELECT version()").Scan(&version); err != nil {
		return fmt.Errorf("postgres: connecting: %w", err)
	}
	s.cockroach = strings.Contains(version, "CockroachDB")
	s.arrays = s.arrays || s.cockroach
	if err := s.migrate(ctx); err != nil {
		return err
	}
	return s.ensureDays(ctx, s.opts.Clock.Now())
}

// Close closes the connections.
func (s *Store) Close() error {
	s.cancel()
	s.pool.Close()
	return nil
}

// ctx is a call's context: its timeout, ended by Close.
func (s *Store) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(s.base, s.opts.Timeout)
}

// retryable reports a transaction the database refused only because of
// another running at the same time: a serialisation failure (CockroachDB's
// way, and PostgreSQL's at SERIALIZABLE) or a deadlock.
func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01")
}

// inTx runs fn in a transaction, again while the database refuses it as
// retryable, within the call's context and the retry limit. fn must
// have no effect outside the transaction that a second run would repeat.
func (s *Store) inTx(ctx context.Context, opts pgx.TxOptions, fn func(pgx.Tx) error) error {
	if s.base.Err() != nil {
		return ErrClosed
	}
	backoff := 2 * time.Millisecond
	for attempt := 0; ; attempt++ {
		err := pgx.BeginTxFunc(ctx, s.pool, opts, fn)
		if err == nil || !retryable(err) || attempt >= s.opts.Retries {
			return err
		}
		s.log.Debug("transaction retried", "attempt", attempt+1, "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("postgres: retrying a transaction: %w", ctx.Err())
		case <-time.After(backoff/2 + rand.N(backoff)):
		}
		backoff = min(2*backoff, 500*time.Millisecond)
	}
}

// write runs fn in a read-write transaction at READ COMMITTED: the row
// locks fn takes are what orders concurrent changes.
func (s *Store) write(fn func(ctx context.Context, tx pgx.Tx) error) error {
	ctx, cancel := s.ctx()
	defer cancel()
	return s.inTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, func(tx pgx.Tx) error { return fn(ctx, tx) })
}

// read runs fn in a read-only transaction on one snapshot.
func (s *Store) read(fn func(ctx context.Context, tx pgx.Tx) error) error {
	ctx, cancel := s.ctx()
	defer cancel()
	return s.inTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly},
		func(tx pgx.Tx) error { return fn(ctx, tx) })
}
