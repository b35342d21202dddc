package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/checkpointd/checkpoint/internal/pgtest"
)

// pgServer is the throwaway PostgreSQL of a run, with the database the
// authority uses.
type pgServer struct {
	srv  *pgtest.Server
	name string // the database
	conn *pgx.Conn
}

// startPostgres starts a throwaway PostgreSQL (pgtest: a temporary folder,
// a Unix socket, fsync on; stopped and removed by stop, or by pgtest's
// watchdog should this program die) and creates the authority's database.
// Two settings are changed from pgtest's: WAL I/O is timed, for the
// report, and max_wal_size is 4 GB, so that a few gigabytes of events do
// not force a checkpoint every gigabyte.
func startPostgres(ctx context.Context) (*pgServer, error) {
	srv, err := pgtest.Start()
	if err != nil {
		return nil, fmt.Errorf("starting PostgreSQL: %w", err)
	}
	p := &pgServer{srv: srv}
	admin, err := pgx.Connect(ctx, srv.DSN("postgres"))
	if err != nil {
		p.stop()
		return nil, fmt.Errorf("connecting to PostgreSQL: %w", err)
	}
	for _, q := range []string{"ALTER SYSTEM SET track_wal_io_timing = on", "ALTER SYSTEM SET max_wal_size = '4GB'", "SELECT pg_reload_conf()"} {
		if _, err := admin.Exec(ctx, q); err != nil {
			admin.Close(ctx)
			p.stop()
			return nil, fmt.Errorf("PostgreSQL: %s: %w", q, err)
		}
	}
	admin.Close(ctx)
	if p.name, err = srv.CreateDatabase(ctx); err != nil {
		p.stop()
		return nil, err
	}
	if p.conn, err = pgx.Connect(ctx, srv.DSN(p.name)); err != nil {
		p.stop()
		return nil, fmt.Errorf("connecting to PostgreSQL: %w", err)
	}
	return p, nil
}

// url is the database's address for `authority serve --db`.
func (p *pgServer) url() string { return p.srv.URL(p.name) }

// stop stops the server and removes its folder.
func (p *pgServer) stop() {
	if p.conn != nil {
		p.conn.Close(context.Background())
		p.conn = nil
	}
	if err := p.srv.Stop(); err != nil {
		progress("%v", err)
	}
}

// postmaster is the server's process id.
func (p *pgServer) postmaster() int {
	b, err := os.ReadFile(filepath.Join(p.srv.Dir, "data", "postmaster.pid"))
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, _ := strconv.Atoi(strings.TrimSpace(line))
	return pid
}

// walStats is what PostgreSQL wrote to its WAL (pg_stat_wal).
type walStats struct {
	records, fpi, bytes, writes, syncs int64
	writeMS, syncMS                    float64
}

func (p *pgServer) wal(ctx context.Context) (walStats, error) {
	var w walStats
	err := p.conn.QueryRow(ctx, `SELECT wal_records, wal_fpi, wal_bytes::bigint, wal_write, wal_sync, wal_write_time, wal_sync_time
		FROM pg_stat_wal`).Scan(&w.records, &w.fpi, &w.bytes, &w.writes, &w.syncs, &w.writeMS, &w.syncMS)
	if err != nil {
		return w, fmt.Errorf("pg_stat_wal: %w", err)
	}
	return w, nil
}

func (w walStats) sub(o walStats) walStats {
	return walStats{w.records - o.records, w.fpi - o.fpi, w.bytes - o.bytes, w.writes - o.writes, w.syncs - o.syncs,
		w.writeMS - o.writeMS, w.syncMS - o.syncMS}
}

// settings are the server's version and the settings that bear on
// ingest.
func (p *pgServer) settings(ctx context.Context) string {
	var parts []string
	for _, s := range []string{"server_version", "shared_buffers", "fsync", "synchronous_commit", "max_wal_size"} {
		var v string
		if err := p.conn.QueryRow(ctx, "SELECT current_setting($1)", s).Scan(&v); err == nil {
			parts = append(parts, s+" "+v)
		}
	}
	return strings.Join(parts, ", ")
}

// size is the database's size on disk, in bytes.
func (p *pgServer) size(ctx context.Context) int64 {
	var n int64
	p.conn.QueryRow(ctx, "SELECT pg_database_size(current_database())").Scan(&n)
	return n
}
