package pgtest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

// TestServer: the shared server gives each test a database of its own,
// listens on its folder's Unix socket only, fsyncs, and does not run as
// root.
func TestServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, b := New(t), New(t)
	if a == b {
		t.Fatalf("two tests got the same database: %s", a)
	}
	conn, err := pgx.Connect(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, c := range []struct{ setting, want string }{
		{"fsync", "on"}, {"listen_addresses", ""}, {"unix_socket_directories", Shared(t).Dir},
	} {
		var got string
		if err := conn.QueryRow(ctx, "SELECT current_setting($1)", c.setting).Scan(&got); err != nil || got != c.want {
			t.Errorf("%s = %q (%v), want %q", c.setting, got, err, c.want)
		}
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE t (x int)"); err != nil {
		t.Fatal(err)
	}
	conn2, err := pgx.Connect(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close(ctx)
	var n int
	if err := conn2.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE tablename = 't'").Scan(&n); err != nil || n != 0 {
		t.Errorf("the other test's database sees the table: %d, %v", n, err)
	}
}

// TestStartStop: a server of its own is stopped and its folder removed.
func TestStartStop(t *testing.T) {
	s, err := Start()
	if err == ErrNoPostgres {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	dir := s.Dir
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("folder %s left behind: %v", dir, err)
	}
}

// TestStartFailureStopsServer: when Start fails once pg_ctl has run (here
// pg_ctl stops waiting at once), nothing of it is left running: no server
// pg_ctl started, no watchdog.
func TestStartFailureStopsServer(t *testing.T) {
	if _, err := BinDir(); err != nil {
		t.Skip(err)
	}
	wait, prefix := startWait, dirPrefix
	startWait, dirPrefix = 0, fmt.Sprintf("pgtest-failstart-%d-", os.Getpid())
	defer func() { startWait, dirPrefix = wait, prefix }()
	if s, err := Start(); err == nil {
		s.Stop()
		t.Skip("the server was ready at once: pg_ctl did not fail")
	}
	n := 0
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if n = processesUnder(t, dirPrefix); n == 0 {
			return
		}
	}
	t.Errorf("%d processes of the server's folder left running after Start failed", n)
}

// processesUnder counts the processes whose command line names a folder
// in /tmp starting with prefix.
func processesUnder(t *testing.T, prefix string) int {
	t.Helper()
	cmdlines, err := filepath.Glob("/proc/[0-9]*/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, p := range cmdlines {
		if raw, err := os.ReadFile(p); err == nil && bytes.Contains(raw, []byte("/tmp/"+prefix)) {
			n++
		}
	}
	return n
}
