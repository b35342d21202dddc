// Package pgtest starts a throwaway PostgreSQL server for tests: Debian's
// binaries (the postgresql package, which `make setup` installs) run
// initdb into a temporary folder and pg_ctl start there, as the
// unprivileged postgres user when the tests run as root, listening on a
// Unix socket in that folder only (no TCP port), with fsync on. The
// server is stopped (immediate mode) and the folder removed at the end,
// and a small watchdog does both if the test binary dies first.
//
// A package whose tests use it shares one server per test binary by
// running its tests through Main from its TestMain; New then gives each
// test a database of its own (CREATE DATABASE), which is fast. Without
// Main, New starts a server for the test and stops it when the test ends.
// The tests of store/postgres and internal/e2e import it.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrNoPostgres is returned by Start when the PostgreSQL binaries are not
// installed; New skips the test then.
var ErrNoPostgres = errors.New("pgtest: PostgreSQL binaries not found under /usr/lib/postgresql/*/bin (make setup installs Debian's postgresql package)")

// binGlob is where Debian installs each major version's server binaries.
const binGlob = "/usr/lib/postgresql/*/bin"

// How long pg_ctl start waits for the server to accept connections, and
// the prefix of the servers' folders in /tmp (the tests change both).
var (
	startWait = 60 * time.Second
	dirPrefix = "pgtest-"
)

// BinDir returns the folder of the newest installed PostgreSQL's server
// binaries, or ErrNoPostgres.
func BinDir() (string, error) {
	dirs, _ := filepath.Glob(binGlob)
	type cand struct {
		dir     string
		version int
	}
	var found []cand
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "pg_ctl")); err != nil {
			continue
		}
		if _, err := os.Stat(filepath.Join(d, "initdb")); err != nil {
			continue
		}
		v, _ := strconv.Atoi(filepath.Base(filepath.Dir(d)))
		found = append(found, cand{d, v})
	}
	if len(found) == 0 {
		return "", ErrNoPostgres
	}
	sort.Slice(found, func(i, j int) bool { return found[i].version > found[j].version })
	return found[0].dir, nil
}

// Server is a running throwaway PostgreSQL.
type Server struct {
	// Dir is the server's folder: its socket, its log, and data/.
	Dir string

	bin      string
	runAs    *user.User // nil: the current user
	watchdog *exec.Cmd

	mu    sync.Mutex
	admin *pgx.Conn
}

// Start initialises a cluster in a new temporary folder and starts it.
func Start() (*Server, error) {
	bin, err := BinDir()
	if err != nil {
		return nil, err
	}
	s := &Server{bin: bin}
	if os.Geteuid() == 0 {
		// The server refuses to run as root.
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("pgtest: running as root needs the postgres user (Debian's postgresql package makes it): %w", err)
		}
		s.runAs = u
	}
	// The socket's path must stay under the 107 bytes a Unix socket's
	// name may have, and the postgres user must reach the folder: a short
	// folder in /tmp, whatever TMPDIR says.
	parent := "/tmp"
	if _, err := os.Stat(parent); err != nil {
		parent = ""
	}
	if s.Dir, err = os.MkdirTemp(parent, dirPrefix); err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	if err := s.start(); err != nil {
		// pg_ctl may have started a server it did not see ready in time.
		s.Stop()
		return nil, err
	}
	return s, nil
}

func (s *Server) start() error {
	if s.runAs != nil {
		uid, _ := strconv.Atoi(s.runAs.Uid)
		gid, _ := strconv.Atoi(s.runAs.Gid)
		if err := os.Chown(s.Dir, uid, gid); err != nil {
			return fmt.Errorf("pgtest: %w", err)
		}
	}
	data := filepath.Join(s.Dir, "data")
	// -N: initdb itself does not fsync (a throwaway cluster); the server does.
	if out, err := s.command("initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C", "-N").CombinedOutput(); err != nil {
		return fmt.Errorf("pgtest: initdb: %w: %s", err, out)
	}
	conf := fmt.Sprintf("\n# pgtest\nlisten_addresses = ''\nunix_socket_directories = '%s'\nfsync = on\n"+
		"max_connections = 200\nshared_buffers = 64MB\nlogging_collector = off\n", s.Dir)
	f, err := os.OpenFile(filepath.Join(data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	_, err = f.WriteString(conf)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	logFile := filepath.Join(s.Dir, "server.log")
	s.startWatchdog() // before the server starts, should this process die while it does
	wait := strconv.Itoa(int(startWait.Seconds()))
	if out, err := s.command("pg_ctl", "start", "-D", data, "-w", "-t", wait, "-l", logFile).CombinedOutput(); err != nil {
		log, _ := os.ReadFile(logFile)
		return fmt.Errorf("pgtest: pg_ctl start: %w: %s\n%s", err, out, log)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, s.DSN("postgres"))
	if err != nil {
		return fmt.Errorf("pgtest: connecting: %w", err)
	}
	s.admin = admin
	return nil
}

// command runs one of the server's binaries, as the postgres user when
// the tests run as root.
func (s *Server) command(name string, args ...string) *exec.Cmd {
	path := filepath.Join(s.bin, name)
	if s.runAs == nil {
		return exec.Command(path, args...)
	}
	return exec.Command("runuser", append([]string{"-u", s.runAs.Username, "--", path}, args...)...)
}

// startWatchdog starts a shell that stops the server and removes its
// folder once this process is gone, should it end without Stop (a test
// binary killed by its timeout). It runs in a process group of its own,
// so that the interrupt that ends the tests does not end it too.
func (s *Server) startWatchdog() {
	stop := s.command("pg_ctl", "stop", "-D", filepath.Join(s.Dir, "data"), "-m", "immediate", "-w").Args
	quoted := make([]string, len(stop))
	for i, a := range stop {
		quoted[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	script := fmt.Sprintf("while [ -d /proc/%d ]; do sleep 1; done; %s >/dev/null 2>&1; rm -rf '%s'",
		os.Getpid(), strings.Join(quoted, " "), s.Dir)
	w := exec.Command("sh", "-c", script)
	w.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if w.Start() == nil {
		s.watchdog = w
		go w.Wait()
	}
}

// DSN is the connection string of database db on the server.
func (s *Server) DSN(db string) string {
	return fmt.Sprintf("host=%s user=postgres dbname=%s sslmode=disable", s.Dir, db)
}

// URL is the same as a postgres:// URL.
func (s *Server) URL(db string) string {
	return fmt.Sprintf("postgres:///%s?host=%s&user=postgres&sslmode=disable", db, s.Dir)
}

var dbCount atomic.Int64

// CreateDatabase creates a new, empty database and returns its name.
func (s *Server) CreateDatabase(ctx context.Context) (string, error) {
	name := fmt.Sprintf("t%d_%d", os.Getpid(), dbCount.Add(1))
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.admin == nil {
		return "", errors.New("pgtest: the server is stopped")
	}
	if _, err := s.admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", fmt.Errorf("pgtest: create database: %w", err)
	}
	return name, nil
}

// Stop stops the server at once (as a crash would: its data is thrown
// away anyway) and removes its folder.
func (s *Server) Stop() error {
	s.mu.Lock()
	if s.admin != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		s.admin.Close(ctx)
		cancel()
		s.admin = nil
	}
	s.mu.Unlock()
	var err error
	if out, e := s.command("pg_ctl", "stop", "-D", filepath.Join(s.Dir, "data"), "-m", "immediate", "-w").CombinedOutput(); e != nil {
		err = fmt.Errorf("pgtest: pg_ctl stop: %w: %s", e, out)
	}
	if s.watchdog != nil && s.watchdog.Process != nil {
		s.watchdog.Process.Kill()
		s.watchdog = nil
	}
	s.removeDir()
	return err
}

func (s *Server) removeDir() { os.RemoveAll(s.Dir) }

// The server shared by a test binary that runs through Main.
var shared struct {
	main bool
	once sync.Once
	srv  *Server
	err  error
}

// Main runs a package's tests with a server shared between them, started
// when a test first asks for a database, and stops it at the end. Call it
// from TestMain: os.Exit(pgtest.Main(m)).
func Main(m *testing.M) int {
	shared.main = true
	code := m.Run()
	if shared.srv != nil {
		if err := shared.srv.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}
	return code
}

// New returns the connection string of a new, empty database for the
// test: on the shared server when the tests run through Main, on a server
// of the test's own otherwise. It skips the test when PostgreSQL is not
// installed.
func New(t testing.TB) string {
	t.Helper()
	srv := Shared(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name, err := srv.CreateDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return srv.DSN(name)
}

// Shared returns the server for the test, as New does, without creating a
// database.
func Shared(t testing.TB) *Server {
	t.Helper()
	var srv *Server
	var err error
	if shared.main {
		shared.once.Do(func() { shared.srv, shared.err = Start() })
		srv, err = shared.srv, shared.err
	} else {
		if srv, err = Start(); err == nil {
			t.Cleanup(func() { srv.Stop() })
		}
	}
	if errors.Is(err, ErrNoPostgres) {
		t.Skip(err.Error())
	}
	if err != nil {
		t.Fatal(err)
	}
	return srv
}
