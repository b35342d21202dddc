package pgtest

import (
	"context"
	"os"
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
