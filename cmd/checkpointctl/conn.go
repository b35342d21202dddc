package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/checkpointd/checkpoint/internal/cli"
	"github.com/checkpointd/checkpoint/internal/clock"
	"github.com/checkpointd/checkpoint/internal/keyfile"
	"github.com/checkpointd/checkpoint/internal/localapi"
	"github.com/checkpointd/checkpoint/store"
	"github.com/checkpointd/checkpoint/sync"
	"github.com/checkpointd/checkpoint/verify"
)

// conn is how a supervisor's command reaches a box: its socket, its
// HTTPS address with the pinned fingerprint, or a database file read in
// this process.
type conn struct {
	socket, url, pin, user, passwordFile string
	db, storeKey, deviceKey              string
	json                                 bool
}

func addConn(fl *flag.FlagSet) *conn {
	c := &conn{}
	fl.StringVar(&c.socket, "socket", localapi.DefaultSocket, "checkpointd's socket")
	fl.StringVar(&c.url, "url", "", "checkpointd's HTTPS address, https://HOST:PORT (with --pin)")
	fl.StringVar(&c.pin, "pin", "", "the fingerprint of the box's certificate, sha256:HEX, as status shows it on the box")
	fl.StringVar(&c.user, "user", "", "the supervisor's name (default $CHECKPOINT_USER)")
	fl.StringVar(&c.passwordFile, "password-file", "", "a file whose first line is the password (default $CHECKPOINT_PASSWORD, or asked)")
	fl.StringVar(&c.db, "db", "", "read this database file instead, read-only (a copy, or a box whose checkpointd is stopped)")
	fl.StringVar(&c.storeKey, "store-key", "", "with --db: the box's store key, to open the masked names")
	fl.StringVar(&c.deviceKey, "device-key", "", "with --db: the box's device key, to sign exports")
	fl.BoolVar(&c.json, "json", false, "print JSON")
	return c
}

// open returns a client of the box the flags name, and what closes it.
func (c *conn) open(ctx context.Context, fl *flag.FlagSet, e env) (*localapi.Client, func(), error) {
	given := map[string]bool{}
	fl.Visit(func(f *flag.Flag) { given[f.Name] = true })
	if c.db != "" {
		for _, n := range []string{"socket", "url", "pin", "user", "password-file"} {
			if given[n] {
				return nil, nil, cli.Usagef("--%s and --db go to different places: give one", n)
			}
		}
		return c.openFile(ctx, e)
	}
	for _, n := range []string{"store-key", "device-key"} {
		if given[n] {
			return nil, nil, cli.Usagef("--%s goes with --db", n)
		}
	}
	if c.pin != "" && c.url == "" {
		return nil, nil, cli.Usagef("--pin goes with --url")
	}
	login, err := c.login(e)
	if err != nil {
		return nil, nil, err
	}
	if c.url != "" {
		if given["socket"] {
			return nil, nil, cli.Usagef("give --socket or --url, not both")
		}
		cl, err := localapi.NewHTTPSClient(c.url, c.pin, login)
		if err != nil {
			return nil, nil, cli.UsageError{Msg: err.Error()}
		}
		return cl, cl.Close, nil
	}
	cl := localapi.NewSocketClient(c.socket, login)
	return cl, cl.Close, nil
}

// login is the supervisor's name and password: the name from --user or
// CHECKPOINT_USER, the password from CHECKPOINT_PASSWORD, the first line
// of --password-file, or asked on the terminal without echo (read as a
// line from standard input when it is not a terminal).
func (c *conn) login(e env) (localapi.Login, error) {
	l := localapi.Login{User: c.user}
	if l.User == "" {
		l.User = e.getenv("CHECKPOINT_USER")
	}
	if l.User == "" {
		return l, cli.Usagef("--user is required (or CHECKPOINT_USER): the supervisor's name in [[api.supervisor]]")
	}
	switch {
	case c.passwordFile != "":
		f, err := os.Open(c.passwordFile)
		if errors.Is(err, fs.ErrNotExist) {
			return l, cli.Usagef("password file %s does not exist", c.passwordFile)
		}
		if err != nil {
			return l, err
		}
		defer f.Close()
		line, _ := bufio.NewReader(io.LimitReader(f, 1024)).ReadString('\n')
		l.Password = strings.TrimRight(line, "\r\n")
	case e.getenv("CHECKPOINT_PASSWORD") != "":
		l.Password = e.getenv("CHECKPOINT_PASSWORD")
	default:
		if f, ok := e.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			fmt.Fprintf(e.stderr, "password for %s: ", l.User)
			pw, err := term.ReadPassword(int(f.Fd()))
			fmt.Fprintln(e.stderr)
			if err != nil {
				return l, fmt.Errorf("reading the password: %w", err)
			}
			l.Password = string(pw)
			break
		}
		line, err := bufio.NewReader(io.LimitReader(e.stdin, 1024)).ReadString('\n')
		if err != nil && line == "" {
			return l, cli.Usagef("no password: set CHECKPOINT_PASSWORD, give --password-file, or type it")
		}
		l.Password = strings.TrimRight(line, "\r\n")
	}
	return l, nil
}

// openFile serves the API in this process on a database file opened
// read-only. The reading is not recorded in the file's log: it is not
// written to; stderr says so.
func (c *conn) openFile(ctx context.Context, e env) (*localapi.Client, func(), error) {
	if _, err := os.Stat(c.db); err != nil {
		return nil, nil, cli.Usagef("database %s: %v", c.db, err)
	}
	opts := store.Options{Clock: e.clock}
	if c.storeKey != "" {
		k, err := keyfile.ReadStoreKey(c.storeKey)
		if err != nil {
			return nil, nil, cli.Usagef("--store-key: %v", err)
		}
		opts.Key = k
	}
	cfg := localapi.Config{Offline: true}
	if c.deviceKey != "" {
		k, err := keyfile.ReadPrivate(c.deviceKey)
		if err != nil {
			return nil, nil, cli.Usagef("--device-key: %v", err)
		}
		cfg.DeviceKey = k
	}
	box, err := store.OpenBoxReadOnly(c.db, opts)
	if err != nil {
		return nil, nil, cli.UsageError{Msg: err.Error()}
	}
	// The checkpoint's name, as its last event gives it.
	cfg.Checkpoint = strings.TrimSuffix(filepath.Base(c.db), filepath.Ext(c.db))
	if page, err := box.Query(store.Filter{Limit: 1}); err == nil && len(page.Events) > 0 && page.Events[0].Gate != "" {
		cfg.Checkpoint = page.Events[0].Gate
	}
	srv, err := localapi.New(cfg, box, offline{e.clock}, e.clock, nil)
	if err != nil {
		box.Close()
		return nil, nil, err
	}
	fmt.Fprintf(e.stderr, "checkpointctl: %s is open read-only: this reading is not recorded in its log, because the file is not written to\n", c.db)
	if c.storeKey == "" {
		fmt.Fprintln(e.stderr, "checkpointctl: without --store-key the masked names stay sealed")
	}
	cl := localapi.NewPipeClient(ctx, srv)
	return cl, func() { cl.Close(); box.Close() }, nil
}

// offline is the checkpoint of a database file read in this process:
// nothing running, no clock estimate, no sync.
type offline struct{ clock clock.Clock }

func (o offline) Now() verify.Instant { return verify.Instant{Time: o.clock.Now(), Uncertainty: -1} }

func (offline) Describe(*localapi.Status) {}

func (offline) Sync(context.Context) (sync.Status, error) {
	return sync.Status{}, fmt.Errorf("%w: a database file read with --db does not sync", localapi.ErrNoSync)
}

// when reads a time flag: RFC 3339, or today, yesterday or a date
// (2006-01-02) meaning that day in loc; end asks for the day's end (the
// next midnight) rather than its start.
func when(s string, now time.Time, loc *time.Location, end bool) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	now = now.In(loc)
	y, m, d := now.Date()
	var day time.Time
	switch s {
	case "today":
		day = time.Date(y, m, d, 0, 0, 0, 0, loc)
	case "yesterday":
		day = time.Date(y, m, d-1, 0, 0, 0, 0, loc)
	default:
		t, err := time.ParseInLocation(time.DateOnly, s, loc)
		if err != nil {
			return time.Time{}, fmt.Errorf("%q: want an RFC 3339 time, today, yesterday or a date such as 2026-11-30", s)
		}
		day = t
	}
	if end {
		day = day.AddDate(0, 0, 1)
	}
	return day, nil
}

// filterFlags are the flags that choose events.
type filterFlags struct {
	from, to, outcome, reason, colour, lane, guard, kind string
}

func addFilter(fl *flag.FlagSet) *filterFlags {
	f := &filterFlags{}
	fl.StringVar(&f.from, "from", "", "from this time (RFC 3339, today, yesterday, 2026-11-30)")
	fl.StringVar(&f.to, "to", "", "to this time; a day counts whole")
	fl.StringVar(&f.outcome, "outcome", "", "pass, refuse or refer")
	fl.StringVar(&f.reason, "reason", "", "a reason code (status_red, fever, ...)")
	fl.StringVar(&f.colour, "colour", "", "the code's colour: green, yellow, red")
	fl.StringVar(&f.lane, "lane", "", "a lane")
	fl.StringVar(&f.guard, "guard", "", "a guard who acted")
	fl.StringVar(&f.kind, "kind", "", "passage, fire_alarm, audit, scan")
	return f
}

func (f *filterFlags) filter(e env) (store.Filter, error) {
	now := e.clock.Now()
	from, err := when(f.from, now, e.loc, false)
	if err != nil {
		return store.Filter{}, cli.Usagef("--from: %v", err)
	}
	to, err := when(f.to, now, e.loc, true)
	if err != nil {
		return store.Filter{}, cli.Usagef("--to: %v", err)
	}
	return store.Filter{From: from, To: to, Outcome: f.outcome, Reason: f.reason, Colour: f.colour, Lane: f.lane,
		Guard: f.guard, Kind: f.kind}, nil
}
