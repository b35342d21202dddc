package postgres

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/checkpointd/checkpoint/internal/authority/storagetest"
	"github.com/checkpointd/checkpoint/internal/clock/clocktest"
	"github.com/checkpointd/checkpoint/internal/pgtest"
	"github.com/checkpointd/checkpoint/store"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func open(t testing.TB, dsn string, opts Options) *Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Open(ctx, dsn, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestAuthorityStorage runs the authority's storage suite on PostgreSQL,
// each case in a database of its own; the same suite runs on bbolt in
// store.
func TestAuthorityStorage(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storagetest.Storage {
		return open(t, pgtest.New(t), Options{})
	})
}

// TestAuthorityStorageArrays runs the suite with the events inserted as
// they are on CockroachDB (an INSERT of arrays rather than COPY).
func TestAuthorityStorageArrays(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storagetest.Storage {
		return open(t, pgtest.New(t), Options{insertArrays: true})
	})
}

// TestSeveralProcesses: authority processes starting at once on a new
// database migrate it once, and then, each with its connections, upload
// the same device's events at once: one chain, each event once.
func TestSeveralProcesses(t *testing.T) {
	dsn := pgtest.New(t)
	const procs = 4
	stores := make([]*Store, procs)
	var wg sync.WaitGroup
	errs := make([]error, procs)
	for i := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			stores[i], errs[i] = Open(ctx, dsn, Options{})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("process %d: %v", i, err)
		}
		t.Cleanup(func() { stores[i].Close() })
	}
	conn := connect(t, dsn)
	var n, top int
	if err := conn.QueryRow(context.Background(), "SELECT count(*), max(version) FROM schema_migrations").Scan(&n, &top); err != nil || n != top || n < 2 {
		t.Fatalf("schema_migrations: %d rows up to version %d, %v", n, top, err)
	}

	if err := stores[0].AddToken("tok", "gate", t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	dev, err := stores[1].Enroll("tok", "gate", make([]byte, 32), t0)
	if err != nil {
		t.Fatal(err)
	}
	const total = 2000
	raws, hashes := chain(t, total)
	for i := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := stores[i]
			for {
				m, err := st.Mark(dev)
				if err != nil || m >= total {
					errs[i] = err
					return
				}
				from := max(0, int(m)-50*i)
				if _, err := st.StoreEvents(dev, raws[from:min(total, from+100+100*i)]); err != nil {
					errs[i] = err
					return
				}
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("process %d: %v", i, err)
		}
	}
	var rows, distinct int
	if err := conn.QueryRow(context.Background(), "SELECT count(*), count(DISTINCT seq) FROM events WHERE device = $1", dev).Scan(&rows, &distinct); err != nil {
		t.Fatal(err)
	}
	if rows != total || distinct != total {
		t.Fatalf("%d rows, %d sequence numbers; want %d", rows, distinct, total)
	}
	evs, err := stores[3].DeviceEvents(dev, 1, total)
	if err != nil || len(evs) != total {
		t.Fatalf("%d events, %v", len(evs), err)
	}
	for i, e := range evs {
		if e.Seq != uint64(i+1) || e.Hash != hashes[i] {
			t.Fatalf("event %d differs", i+1)
		}
	}
}

func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func chain(t testing.TB, n int) ([][]byte, [][32]byte) {
	t.Helper()
	raws, hashes := make([][]byte, 0, n), make([][32]byte, 0, n)
	var prev [32]byte
	for seq := uint64(1); seq <= uint64(n); seq++ {
		e := store.Event{Seq: seq, Time: t0.Add(time.Duration(seq) * time.Second), Kind: "scan", Decision: "pass",
			Gate: "gate-1", Status: "green", Subject: []byte("0123456789"), Temperature: 365, Prev: prev}
		var err error
		if e.Hash, err = store.ChainHash(e); err != nil {
			t.Fatal(err)
		}
		raw, err := store.EncodeEvent(e)
		if err != nil {
			t.Fatal(err)
		}
		raws, hashes, prev = append(raws, raw), append(hashes, e.Hash), e.Hash
	}
	return raws, hashes
}

// TestPartitionsAndRetention: events go to the partition of the day they
// were received, partitions are made ahead, and dropping the days before
// a date removes their events and no others.
func TestPartitionsAndRetention(t *testing.T) {
	dsn := pgtest.New(t)
	clk := clocktest.New(t0)
	s := open(t, dsn, Options{Clock: clk, DaysAhead: 2})
	conn := connect(t, dsn)
	parts := func() map[string]bool {
		t.Helper()
		tx, err := conn.Begin(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(context.Background())
		p, err := partitions(context.Background(), tx)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	if p := parts(); len(p) != 3 || !p["events_p20261125"] || !p["events_p20261127"] {
		t.Fatalf("partitions at start: %v", p)
	}
	if err := s.AddToken("tok", "gate", t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	dev, err := s.Enroll("tok", "gate", make([]byte, 32), t0)
	if err != nil {
		t.Fatal(err)
	}
	raws, _ := chain(t, 40)
	for day := range 4 {
		if _, err := s.StoreEvents(dev, raws[day*10:day*10+10]); err != nil {
			t.Fatal(err)
		}
		clk.Advance(24 * time.Hour)
	}
	if p := parts(); len(p) != 6 || !p["events_p20261130"] {
		t.Fatalf("partitions after four days: %v", p)
	}
	var n int
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM events_p20261126").Scan(&n); err != nil || n != 10 {
		t.Fatalf("the second day's partition holds %d events, %v", n, err)
	}
	// A second process of the same database knows the partitions.
	s2 := open(t, dsn, Options{Clock: clk})
	if _, err := s2.StoreEvents(dev, raws[:40]); err != nil {
		t.Fatal(err)
	}
	dropped, err := s.DropEventsBefore(t0.AddDate(0, 0, 2))
	if err != nil || dropped != 2 {
		t.Fatalf("dropped %d, %v", dropped, err)
	}
	evs, err := s.DeviceEvents(dev, 0, 100)
	if err != nil || len(evs) != 20 || evs[0].Seq != 21 {
		t.Fatalf("after the first two days were dropped: %d events, %v", len(evs), err)
	}
	if m, _ := s.Mark(dev); m != 40 {
		t.Errorf("mark %d, want 40", m)
	}
	// Events of a dropped day are no longer there to compare: sent again,
	// they are a gap, as purged ones are.
	if _, err := s.StoreEvents(dev, raws[:5]); !errors.Is(err, store.ErrGap) {
		t.Errorf("events of a dropped day sent again: %v, want ErrGap", err)
	}
	if _, err := s.StoreEvents(dev, raws[30:40]); err != nil {
		t.Errorf("events of a kept day sent again: %v", err)
	}
}

// TestSchemaNewer: an authority does not use a database migrated by a
// newer one.
func TestSchemaNewer(t *testing.T) {
	dsn := pgtest.New(t)
	open(t, dsn, Options{}).Close()
	conn := connect(t, dsn)
	if _, err := conn.Exec(context.Background(), "INSERT INTO schema_migrations (version, name) VALUES (99, '0099_future')"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if s, err := Open(ctx, dsn, Options{}); !errors.Is(err, ErrSchemaNewer) {
		if s != nil {
			s.Close()
		}
		t.Fatalf("a newer schema: %v, want ErrSchemaNewer", err)
	}
}

// TestMigrations: every version has a file for each database, in order.
func TestMigrations(t *testing.T) {
	for _, d := range []string{"postgres", "cockroach"} {
		ms, err := migrations(d)
		if err != nil || len(ms) < 2 {
			t.Fatalf("%s: %d migrations, %v", d, len(ms), err)
		}
		for i, m := range ms {
			if m.version != i+1 || m.sql == "" {
				t.Errorf("%s: migration %d is %+v", d, i+1, m)
			}
		}
	}
	pg, _ := migrations("postgres")
	cr, _ := migrations("cockroach")
	if pg[1].sql == cr[1].sql || pg[0].sql != cr[0].sql {
		t.Error("the events table should differ between the databases, and nothing before it")
	}
}

// BenchmarkUpload stores uploads of 5,000 events, as a box catching up
// sends them, each to a device of its own (go test -run '^$' -bench Upload
// ./store/postgres); BenchmarkUploadAgain sends one that is held already.
func BenchmarkUpload(b *testing.B)      { benchmarkUpload(b, false) }
func BenchmarkUploadAgain(b *testing.B) { benchmarkUpload(b, true) }

func benchmarkUpload(b *testing.B, again bool) {
	s := open(b, pgtest.New(b), Options{})
	raws, _ := chain(b, 5000)
	enrol := func() string {
		if err := s.AddToken("tok", "gate", t0.Add(time.Hour)); err != nil {
			b.Fatal(err)
		}
		dev, err := s.Enroll("tok", "gate", make([]byte, 32), t0)
		if err != nil {
			b.Fatal(err)
		}
		return dev
	}
	dev := enrol()
	if again {
		if _, err := s.StoreEvents(dev, raws); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for range b.N {
		if !again {
			b.StopTimer()
			dev = enrol()
			b.StartTimer()
		}
		if m, err := s.StoreEvents(dev, raws); err != nil || m != 5000 {
			b.Fatalf("mark %d, %v", m, err)
		}
	}
	b.ReportMetric(float64(b.N*len(raws))/b.Elapsed().Seconds(), "events/s")
}

// openAll opens n stores on dsn at once, as authority processes started
// together do.
func openAll(t *testing.T, dsn string, n int, opts Options) []*Store {
	t.Helper()
	stores, errs := make([]*Store, n), make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			stores[i], errs[i] = Open(ctx, dsn, opts)
		}()
	}
	wg.Wait()
	for i := range n {
		if stores[i] != nil {
			t.Cleanup(func() { stores[i].Close() })
		}
	}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("process %d: %v", i, err)
		}
	}
	return stores
}

// TestSeveralProcessesStartAtAnyIsolation: processes starting at once
// migrate the database and make its partitions once each, whatever
// isolation level the database's default is: the transactions that wait
// for the advisory locks must see what the one before them committed,
// which a snapshot taken before the wait (REPEATABLE READ, SERIALIZABLE)
// does not.
func TestSeveralProcessesStartAtAnyIsolation(t *testing.T) {
	for _, level := range []string{"repeatable read", "serializable"} {
		t.Run(level, func(t *testing.T) {
			dsn := pgtest.New(t)
			conn := connect(t, dsn)
			var db string
			if err := conn.QueryRow(context.Background(), "SELECT current_database()").Scan(&db); err != nil {
				t.Fatal(err)
			}
			if _, err := conn.Exec(context.Background(), "ALTER DATABASE "+pgx.Identifier{db}.Sanitize()+
				" SET default_transaction_isolation TO '"+level+"'"); err != nil {
				t.Fatal(err)
			}
			clk := clocktest.New(t0)
			stores := openAll(t, dsn, 4, Options{Clock: clk})
			var n, top int
			if err := conn.QueryRow(context.Background(), "SELECT count(*), max(version) FROM schema_migrations").Scan(&n, &top); err != nil || n != top {
				t.Fatalf("schema_migrations: %d rows up to version %d, %v", n, top, err)
			}
			// A new day: every process makes the day's partitions at once,
			// on its first upload.
			devs := make([]string, len(stores))
			for i := range devs {
				if err := stores[0].AddToken("tok", "gate", t0.Add(time.Hour)); err != nil {
					t.Fatal(err)
				}
				var err error
				if devs[i], err = stores[0].Enroll("tok", "gate", make([]byte, 32), t0); err != nil {
					t.Fatal(err)
				}
			}
			clk.Advance(5 * 24 * time.Hour)
			raws, _ := chain(t, 10)
			errs := make([]error, len(stores))
			var wg sync.WaitGroup
			for i, st := range stores {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, errs[i] = st.StoreEvents(devs[i], raws)
				}()
			}
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Fatalf("process %d uploading on a new day: %v", i, err)
				}
			}
			var parts int
			if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM events_p20261130").Scan(&parts); err != nil || parts != 40 {
				t.Fatalf("the new day's partition holds %d events, %v", parts, err)
			}
		})
	}
}

// TestRevocationVersionsAcrossProcesses: processes adding revocations at
// once (the operator's, and registrations replacing a key) get versions
// one after another, none twice and none skipped; a client reading at any
// moment, from any process, sees a version with every entry up to it: a
// snapshot whose count and digest are the version's, and deltas that take
// it from the version it had to the one read.
func TestRevocationVersionsAcrossProcesses(t *testing.T) {
	dsn := pgtest.New(t)
	stores := openAll(t, dsn, 3, Options{})
	const perWriter = 25
	var mu sync.Mutex
	versions := map[uint64]int{}
	errs := make(chan error, 16)
	var writers, readers sync.WaitGroup
	done := make(chan struct{})
	for w, st := range stores {
		writers.Add(1)
		go func() {
			defer writers.Done()
			for i := range perWriter {
				var sub [store.SubjectSize]byte
				sub[0], sub[1], sub[2] = byte(w), byte(i), 0xa5
				v, err := st.Revoke([]store.RevEntry{{Subject: sub, Before: t0.Unix() + int64(i), DropAfter: t0.Unix() + 86400}})
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				versions[v]++
				mu.Unlock()
			}
		}()
	}
	for r, st := range stores {
		readers.Add(1)
		go func() {
			defer readers.Done()
			set := map[[store.SubjectSize]byte]store.RevEntry{}
			var have uint64
			check := func(snapshot bool, items []store.RevEntry, version uint64, want store.SetDigest) error {
				if version < have {
					return fmt.Errorf("reader %d: version %d after %d", r, version, have)
				}
				if snapshot {
					clear(set)
				}
				for _, e := range items {
					if e.Tombstone {
						delete(set, e.Subject)
					} else {
						set[e.Subject] = e
					}
				}
				var got store.SetDigest
				for _, e := range set {
					got.Add(e)
				}
				if got != want {
					return fmt.Errorf("reader %d at version %d: %d entries, the version's set has %d (or another digest)", r, version, got.Count, want.Count)
				}
				have = version
				return nil
			}
			for {
				select {
				case <-done:
					return
				default:
				}
				// Alternately a snapshot and a delta from what the reader has.
				since := have
				if since%2 == 1 {
					since = 0
				}
				items, snapshot, version, set, err := st.RevocationItems(since)
				if err == nil {
					err = check(snapshot || since == 0, items, version, set)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	writers.Wait()
	close(done)
	readers.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	total := uint64(len(stores) * perWriter)
	for v := uint64(1); v <= total; v++ {
		if versions[v] != 1 {
			t.Fatalf("version %d was returned %d times (versions: %v)", v, versions[v], versions)
		}
	}
	v, set, err := stores[2].RevocationState()
	if err != nil || v != total || set.Count != total {
		t.Fatalf("state: version %d with %d entries, %v; want %d", v, set.Count, err, total)
	}
}

// TestStalledProcessReleasesLocks: a process that stops inside a
// transaction, holding the revocation state's lock (frozen, or cut off
// from the database), holds up the other processes' revocations only
// until its session has been idle for its call limit, not until the
// database's TCP keepalive notices it.
func TestStalledProcessReleasesLocks(t *testing.T) {
	dsn := pgtest.New(t)
	stalled := open(t, dsn, Options{Timeout: time.Second})
	other := open(t, dsn, Options{Timeout: 30 * time.Second})
	ctx := context.Background()
	tx, err := stalled.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := lockRevState(ctx, tx); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	v, err := other.Revoke([]store.RevEntry{{Subject: [store.SubjectSize]byte{1}, Before: t0.Unix(), DropAfter: t0.Unix() + 60}})
	if err != nil || v != 1 {
		t.Fatalf("revocation behind a stalled process: version %d, %v", v, err)
	}
	if took := time.Since(start); took > 15*time.Second {
		t.Errorf("the revocation waited %v for the stalled process's lock", took)
	}
	if err := tx.Commit(ctx); err == nil {
		t.Error("the stalled process's transaction committed after its session was ended")
	}
	// The stalled process's pool drops the ended connection and goes on.
	if _, _, err := stalled.RevocationState(); err != nil {
		t.Errorf("the stalled process after its session was ended: %v", err)
	}
}
