package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	stdsync "sync"
	"testing"
	"time"

	"golang.org/x/crypto/argon2"

	"github.com/checkpointd/checkpoint/internal/clock"
	"github.com/checkpointd/checkpoint/internal/clock/clocktest"
	"github.com/checkpointd/checkpoint/internal/config"
	"github.com/checkpointd/checkpoint/internal/credential/credentialtest"
	"github.com/checkpointd/checkpoint/internal/daemon"
	"github.com/checkpointd/checkpoint/internal/export"
	"github.com/checkpointd/checkpoint/internal/keyfile"
	"github.com/checkpointd/checkpoint/internal/localapi"
	"github.com/checkpointd/checkpoint/store"
	"github.com/checkpointd/checkpoint/sync"
	"github.com/checkpointd/checkpoint/verify"
)

// cheapHash is an Argon2id PHC hash at a low cost, for fast tests.
func cheapHash(password string) string {
	salt := make([]byte, 16)
	rand.Read(salt)
	key := argon2.IDKey([]byte(password), salt, 1, 64, 1, 32)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=19$m=64,t=1,p=1$%s$%s", b64.EncodeToString(salt), b64.EncodeToString(key))
}

func shortDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ctl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// china is where the tests' "today" is.
var china = time.FixedZone("CST", 8*3600)

var start = time.Date(2026, 11, 30, 9, 0, 0, 0, china)

// backend is a running checkpoint for the tests, whose sync fails when
// told to.
type backend struct {
	clk *clocktest.Fake

	mu      stdsync.Mutex
	syncErr error
}

func (b *backend) Now() verify.Instant {
	return verify.Instant{Time: b.clk.Now(), Uncertainty: 20 * time.Millisecond}
}
func (b *backend) Describe(st *localapi.Status) {
	st.Lanes = append(st.Lanes, localapi.Lane{Name: "east", Camera: localapi.Camera{State: "running", Frames: 12}})
}
func (b *backend) Sync(context.Context) (sync.Status, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return sync.Status{Mark: 3, LastOK: b.clk.Now()}, b.syncErr
}

// box is a checkpoint's store with six passages, served on a socket.
type box struct {
	dir, sock, db, storeKey, deviceKey string
	store                              *store.Box
	clk                                *clocktest.Fake
	be                                 *backend
}

func newBox(t *testing.T) *box {
	t.Helper()
	b := &box{dir: shortDir(t), clk: clocktest.New(start.Add(time.Hour))}
	b.be = &backend{clk: b.clk}
	b.db, b.storeKey, b.deviceKey = filepath.Join(b.dir, "checkpoint.db"), filepath.Join(b.dir, "store.key"), filepath.Join(b.dir, "device.key")
	key, err := keyfile.StoreKey(b.storeKey)
	if err != nil {
		t.Fatal(err)
	}
	_, dev, _ := ed25519.GenerateKey(nil)
	if err := keyfile.WritePrivate(b.deviceKey, dev); err != nil {
		t.Fatal(err)
	}
	if b.store, err = store.OpenBox(b.db, store.Options{Clock: b.clk, Key: key}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.store.Close() })
	for i := range 6 {
		e := store.Event{Time: start.Add(time.Duration(i) * time.Minute), Kind: "passage", Lane: "east", Decision: "pass",
			Status: "green", MaskedName: "张*丰", Temperature: 366, Gate: "gate-3",
			Actions: []store.ActionRecord{{Kind: "temperature", Guard: "李明", At: start}}}
		if i%3 == 2 {
			e.Decision, e.Status, e.Reasons = "refuse", "red", []string{"status_red"}
		}
		if _, err := b.store.Record(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	srv, err := localapi.New(localapi.Config{Checkpoint: "gate-3", DeviceKey: dev,
		Supervisors: []localapi.Supervisor{{Name: "wang", Password: cheapHash("secret words")}}}, b.store, b.be, b.clk, nil)
	if err != nil {
		t.Fatal(err)
	}
	b.sock = filepath.Join(b.dir, "api.sock")
	ln, err := localapi.ListenUnix(b.sock, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.ServeUnix(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	return b
}

// ran is what a run of the tool did.
type ran struct {
	code           int
	stdout, stderr string
}

// ctl runs checkpointctl with the supervisor's name and password in its
// environment (unless vars says otherwise) and stdin as its input.
func ctl(t *testing.T, clk clock.Clock, stdin string, vars map[string]string, args ...string) ran {
	t.Helper()
	env0 := map[string]string{"CHECKPOINT_USER": "wang", "CHECKPOINT_PASSWORD": "secret words"}
	for k, v := range vars {
		env0[k] = v
	}
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, env{clock: clk, stdin: strings.NewReader(stdin), stdout: &out, stderr: &errOut,
		getenv: func(k string) string { return env0[k] }, loc: china})
	return ran{code, out.String(), errOut.String()}
}

// decode decodes a command's JSON output.
func decode[T any](t *testing.T, r ran) T {
	t.Helper()
	var v T
	if r.code != 0 {
		t.Fatalf("exit %d: %s%s", r.code, r.stdout, r.stderr)
	}
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
		t.Fatalf("%v:\n%s", err, r.stdout)
	}
	return v
}

// TestSupervisorCommands: each command against a box's socket, as a
// table and as JSON, and the audit of what was read.
func TestSupervisorCommands(t *testing.T) {
	b := newBox(t)
	sock := "--socket=" + b.sock

	st := decode[localapi.Status](t, ctl(t, b.clk, "", nil, "status", sock, "--json"))
	if st.Checkpoint != "gate-3" || st.Recorded != 6 || st.LastPassage == nil || st.LastPassage.Seq != 6 || len(st.Lanes) != 1 {
		t.Errorf("status %+v", st)
	}
	r := ctl(t, b.clk, "", nil, "status", sock)
	for _, want := range []string{"gate-3", "lane east", "camera running, 12 frames", "7 recorded", "refuse (event 6)", "2026-11-30 09:05:00"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("status table lacks %q:\n%s", want, r.stdout)
		}
	}

	page := decode[localapi.Page](t, ctl(t, b.clk, "", nil, "logs", sock, "--json", "--outcome", "pass", "--limit", "2"))
	if len(page.Events) != 2 || page.Events[0].Seq != 5 || page.Next != 4 || page.Events[0].MaskedName != "张*丰" {
		t.Errorf("logs %+v", page)
	}
	r = ctl(t, b.clk, "", nil, "logs", sock, "--colour", "red", "--from", "today", "--to", "today")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.code != 0 || len(lines) != 3 || !strings.HasPrefix(lines[0], "SEQ") || !strings.Contains(lines[1], "2026-11-30 09:05:00") ||
		!strings.Contains(lines[1], "status_red") || !strings.Contains(lines[1], "张*丰") || !strings.Contains(lines[1], "36.6") ||
		!strings.Contains(lines[1], "李明") {
		t.Errorf("logs table (exit %d):\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := ctl(t, b.clk, "", nil, "logs", sock, "--limit", "4"); !strings.Contains(r.stdout, "more: the next page is --before") {
		t.Errorf("no next-page hint:\n%s", r.stdout)
	}
	if r := ctl(t, b.clk, "", nil, "logs", sock, "--from", "yesterday", "--to", "yesterday", "--kind", "passage"); !strings.Contains(r.stdout, "no events") {
		t.Errorf("yesterday's passages:\n%s", r.stdout)
	}

	stats := decode[store.Stats](t, ctl(t, b.clk, "", nil, "stats", sock, "--json", "--from", "2026-11-30", "--step", "day"))
	if len(stats.Periods) != 1 || stats.Total.Passes != 4 || stats.Total.Refusals != 2 || stats.Periods[0].Start.Hour() != 0 {
		t.Errorf("stats %+v", stats)
	}
	r = ctl(t, b.clk, "", nil, "stats", sock, "--from", "today")
	if r.code != 0 || !strings.Contains(r.stdout, "2026-11-30 09:00") || !strings.Contains(r.stdout, "status_red 2") ||
		strings.Count(r.stdout, "\n") != 26 {
		t.Errorf("stats table (exit %d):\n%s%s", r.code, r.stdout, r.stderr)
	}

	if r := ctl(t, b.clk, "", nil, "verify-log", sock); r.code != 0 || !strings.HasPrefix(r.stdout, "OK:") {
		t.Errorf("verify-log: %d %s%s", r.code, r.stdout, r.stderr)
	}
	if r := ctl(t, b.clk, "", nil, "sync", sock); r.code != 0 || !strings.HasPrefix(r.stdout, "synced") {
		t.Errorf("sync: %d %s%s", r.code, r.stdout, r.stderr)
	}

	// Every reading above is in the log, with its query and rows.
	audits, err := b.store.Query(store.Filter{Kind: "audit", Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range audits.Events {
		got = append(got, fmt.Sprintf("%s %s %d %s", e.Audit.Who, e.Audit.Action, e.Audit.Rows, e.Audit.Query))
	}
	if len(got) != 10 || got[0] != "wang sync 0 " || got[3] != "wang stats 1 from=2026-11-30T00%3A00%3A00%2B08%3A00&step=day&to=2026-12-01T00%3A00%3A00%2B08%3A00" ||
		got[7] != "wang logs 2 limit=2&outcome=pass" {
		t.Errorf("audits, newest first:\n%s", strings.Join(got, "\n"))
	}
}

// TestExitCodes: bad news 1, usage 2, refused 3, unreachable 4.
func TestExitCodes(t *testing.T) {
	b := newBox(t)
	sock := "--socket=" + b.sock
	b.be.mu.Lock()
	b.be.syncErr = errors.New("the link is down")
	b.be.mu.Unlock()
	for _, c := range []struct {
		name   string
		vars   map[string]string
		stdin  string
		args   []string
		code   int
		output string
	}{
		{"a sync that fails", nil, "", []string{"sync", sock}, 1, "sync FAILED: the link is down"},
		{"a wrong password", map[string]string{"CHECKPOINT_PASSWORD": "guess"}, "", []string{"status", sock}, 3, "wrong name or password"},
		{"the password on stdin", map[string]string{"CHECKPOINT_PASSWORD": ""}, "secret words\n", []string{"status", sock}, 0, "gate-3"},
		{"no password at all", map[string]string{"CHECKPOINT_PASSWORD": ""}, "", []string{"status", sock}, 2, "no password"},
		{"no name", map[string]string{"CHECKPOINT_USER": ""}, "", []string{"status", sock}, 2, "--user is required"},
		{"no socket", nil, "", []string{"status", "--socket", filepath.Join(b.dir, "nothing.sock")}, 4, "cannot reach checkpointd"},
		{"https without a pin", nil, "", []string{"status", "--url", "https://127.0.0.1:1"}, 2, "fingerprint"},
		{"a pin without https", nil, "", []string{"status", "--pin", "sha256:00"}, 2, "--pin goes with --url"},
		{"a bad time", nil, "", []string{"logs", sock, "--from", "last week"}, 2, "--from"},
		{"a filter the box refuses", nil, "", []string{"logs", sock, "--outcome", strings.Repeat("x", 70)}, 2, "64 bytes"},
		{"purge --unsent unconfirmed", nil, "", []string{"purge", sock, "--unsent"}, 2, "--yes"},
		{"an unknown command", nil, "", []string{"frobnicate"}, 2, "frobnicate"},
		{"an unknown flag", nil, "", []string{"status", "--bogus"}, 2, "bogus"},
	} {
		r := ctl(t, b.clk, c.stdin, c.vars, c.args...)
		if r.code != c.code || !strings.Contains(r.stdout+r.stderr, c.output) {
			t.Errorf("%s: exit %d, want %d with %q:\n%s%s", c.name, r.code, c.code, c.output, r.stdout, r.stderr)
		}
	}
	// A log the authority acknowledged further than the box recorded: cut.
	if err := b.store.SetMark(100); err != nil {
		t.Fatal(err)
	}
	if r := ctl(t, b.clk, "", nil, "verify-log", sock); r.code != 1 || !strings.Contains(r.stdout, "PROBLEM: CUT") {
		t.Errorf("verify-log of a cut log: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	lc := store.LogCheck{}
	r := ctl(t, b.clk, "", nil, "verify-log", sock, "--json")
	if err := json.Unmarshal([]byte(r.stdout), &lc); err != nil || r.code != 1 || lc.OK || lc.Problem != "cut" {
		t.Errorf("verify-log --json: exit %d %+v %v", r.code, lc, err)
	}
}

// TestExportAndVerify: an export written with its manifest verifies with
// the box's public key from status; a changed file fails, naming what;
// an export encrypted to a supervisor's key verifies with that key only.
func TestExportAndVerify(t *testing.T) {
	b := newBox(t)
	sock := "--socket=" + b.sock
	out := t.TempDir()
	pub := filepath.Join(out, "device.pub")
	if r := ctl(t, b.clk, "", nil, "status", sock, "--save-device-pub", pub); r.code != 0 {
		t.Fatalf("status: %s%s", r.stdout, r.stderr)
	}
	file := filepath.Join(out, "gate-3.csv")
	r := ctl(t, b.clk, "", nil, "export", sock, "--out", file, "--kind", "passage")
	if r.code != 0 || !strings.Contains(r.stdout, "6 rows") {
		t.Fatalf("export: %d %s%s", r.code, r.stdout, r.stderr)
	}
	if st, err := os.Stat(file); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("the export file: %v %v", st, err)
	}
	if r := ctl(t, b.clk, "", nil, "export", sock, "--out", file); r.code != 2 || !strings.Contains(r.stderr, "exists") {
		t.Errorf("an export over a file: %d %s", r.code, r.stderr)
	}
	ok := decode[struct {
		OK       bool            `json:"ok"`
		Manifest export.Manifest `json:"manifest"`
	}](t, ctl(t, b.clk, "", nil, "verify-export", file, "--device-pub", pub, "--json"))
	if !ok.OK || ok.Manifest.Count != 6 || ok.Manifest.Filter != "kind=passage" || ok.Manifest.Who != "wang" {
		t.Errorf("verify-export: %+v", ok)
	}
	data, _ := os.ReadFile(file)
	os.WriteFile(file, bytes.Replace(data, []byte("refuse"), []byte("pass"), 1), 0o600)
	if r := ctl(t, b.clk, "", nil, "verify-export", file, "--device-pub", pub); r.code != 1 || !strings.Contains(r.stdout, "FAILED") ||
		!strings.Contains(r.stdout, "SHA-256") {
		t.Errorf("a changed export: %d %s%s", r.code, r.stdout, r.stderr)
	}

	sup := filepath.Join(out, "wang")
	if r := ctl(t, b.clk, "", nil, "keygen", "--out", sup); r.code != 0 {
		t.Fatalf("keygen: %s%s", r.stdout, r.stderr)
	}
	if st, err := os.Stat(sup + ".key"); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("the private key file: %v %v", st, err)
	}
	sealed := filepath.Join(out, "sealed.jsonl")
	if r := ctl(t, b.clk, "", nil, "export", sock, "--out", sealed, "--format", "jsonl", "--encrypt-to", sup+".pub"); r.code != 0 ||
		!strings.Contains(r.stdout, "encrypted") {
		t.Fatalf("encrypted export: %d %s%s", r.code, r.stdout, r.stderr)
	}
	if data, _ := os.ReadFile(sealed); bytes.Contains(data, []byte("passage")) {
		t.Error("the encrypted export holds readable rows")
	}
	if r := ctl(t, b.clk, "", nil, "verify-export", sealed, "--device-pub", pub); r.code != 2 || !strings.Contains(r.stderr, "--key") {
		t.Errorf("an encrypted export without the key: %d %s", r.code, r.stderr)
	}
	if r := ctl(t, b.clk, "", nil, "verify-export", "--device-pub", pub, "--key", sup+".key", sealed); r.code != 0 || !strings.HasPrefix(r.stdout, "OK: ") {
		t.Errorf("an encrypted export with the key: %d %s%s", r.code, r.stdout, r.stderr)
	}
}

// TestOfflineDatabase: --db reads a copy of a database read-only, says
// that this reading is not recorded, and refuses sync and purge; the
// copy is not changed.
func TestOfflineDatabase(t *testing.T) {
	b := newBox(t)
	b.store.Close()
	data, err := os.ReadFile(b.db)
	if err != nil {
		t.Fatal(err)
	}
	cp := filepath.Join(t.TempDir(), "copy.db")
	if err := os.WriteFile(cp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	none := map[string]string{"CHECKPOINT_USER": "", "CHECKPOINT_PASSWORD": ""}
	r := ctl(t, b.clk, "", none, "logs", "--db", cp, "--store-key", b.storeKey, "--json")
	page := decode[localapi.Page](t, r)
	if len(page.Events) != 6 || page.Events[0].MaskedName != "张*丰" {
		t.Errorf("offline logs %+v", page)
	}
	if !strings.Contains(r.stderr, "read-only") || !strings.Contains(r.stderr, "not recorded") {
		t.Errorf("no read-only note:\n%s", r.stderr)
	}
	st := decode[localapi.Status](t, ctl(t, b.clk, "", none, "status", "--db", cp, "--json"))
	if !st.ReadOnly || st.Checkpoint != "gate-3" || st.Recorded != 6 {
		t.Errorf("offline status %+v", st)
	}
	for _, cmd := range []string{"sync", "purge"} {
		if r := ctl(t, b.clk, "", none, cmd, "--db", cp); r.code != 2 {
			t.Errorf("offline %s: exit %d %s%s", cmd, r.code, r.stdout, r.stderr)
		}
	}
	if r := ctl(t, b.clk, "", none, "export", "--db", cp, "--out", filepath.Join(t.TempDir(), "x.csv")); r.code != 2 ||
		!strings.Contains(r.stderr, "device key") {
		t.Errorf("an offline export without the device key: %d %s", r.code, r.stderr)
	}
	file := filepath.Join(t.TempDir(), "x.csv")
	if r := ctl(t, b.clk, "", none, "export", "--db", cp, "--device-key", b.deviceKey, "--out", file); r.code != 0 {
		t.Errorf("an offline export: %d %s", r.code, r.stderr)
	}
	if r := ctl(t, b.clk, "", none, "logs", "--db", cp, "--user", "wang"); r.code != 2 {
		t.Errorf("--db with --user: %d", r.code)
	}
	after, _ := os.ReadFile(cp)
	if !bytes.Equal(after, data) {
		t.Error("the database copy was changed")
	}
}

// TestWhen: the times the flags take.
func TestWhen(t *testing.T) {
	now := time.Date(2026, 11, 30, 1, 30, 0, 0, time.UTC) // 09:30 in China
	for _, c := range []struct {
		in   string
		end  bool
		want string
	}{
		{"today", false, "2026-11-30T00:00:00+08:00"},
		{"today", true, "2026-12-01T00:00:00+08:00"},
		{"yesterday", false, "2026-11-29T00:00:00+08:00"},
		{"yesterday", true, "2026-11-30T00:00:00+08:00"},
		{"2026-11-02", true, "2026-11-03T00:00:00+08:00"},
		{"2026-11-02T10:00:00Z", true, "2026-11-02T10:00:00Z"},
	} {
		got, err := when(c.in, now, china, c.end)
		if err != nil || got.Format(time.RFC3339) != c.want {
			t.Errorf("when(%q, end %v) = %v %v, want %s", c.in, c.end, got, err, c.want)
		}
	}
	if _, err := when("soon", now, china, false); err == nil {
		t.Error("soon is a time")
	}
}

// TestAgainstDaemon: checkpointctl on a running checkpointd's socket.
func TestAgainstDaemon(t *testing.T) {
	f := credentialtest.New()
	dir := shortDir(t)
	if err := keyfile.WritePublic(filepath.Join(dir, "root.pub"), f.Root.Public().(ed25519.PublicKey)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "trust.cbor"), f.TrustBytes, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := config.Defaults()
	cfg.Name = "gate-9"
	cfg.Trust.RootKey, cfg.Trust.TrustList = filepath.Join(dir, "root.pub"), filepath.Join(dir, "trust.cbor")
	cfg.Store.Path, cfg.Store.Key = filepath.Join(dir, "checkpoint.db"), filepath.Join(dir, "store.key")
	cfg.Sync.DeviceKey = filepath.Join(dir, "device.key")
	cfg.Camera.Device = "/dev/video-absent" // keeps the daemon running
	cfg.Lanes = []config.Lane{{Name: "west", Camera: cfg.Camera, Gate: config.Gate{Fail: "closed"}}}
	cfg.API.Socket = filepath.Join(dir, "api.sock")
	cfg.API.Supervisors = []config.Supervisor{{Name: "wang", Password: cheapHash("secret words")}}
	if err := cfg.Check(); err != nil {
		t.Fatal(err)
	}
	clk := clocktest.NewRunning(f.Now)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- daemon.New(cfg, daemon.Options{Clock: clk}).Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	var r ran
	for i := 0; i < 500; i++ {
		if r = ctl(t, clk, "", nil, "status", "--socket", cfg.API.Socket, "--json"); r.code != 4 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	st := decode[localapi.Status](t, r)
	if st.Checkpoint != "gate-9" || len(st.Lanes) != 1 || st.Lanes[0].Name != "west" || st.Trust == nil || st.Trust.Version != 1 {
		t.Fatalf("status %+v", st)
	}
	page := decode[localapi.Page](t, ctl(t, clk, "", nil, "logs", "--socket", cfg.API.Socket, "--json"))
	if len(page.Events) != 1 || page.Events[0].Audit == nil || page.Events[0].Audit.Action != "status" || page.Events[0].Checkpoint != "gate-9" {
		t.Errorf("the log after a status: %+v", page.Events)
	}
	if r := ctl(t, clk, "", map[string]string{"CHECKPOINT_PASSWORD": "wrong"}, "logs", "--socket", cfg.API.Socket); r.code != 3 {
		t.Errorf("a wrong password: exit %d", r.code)
	}
}

// TestWriteTable: columns line up on a terminal, where a Chinese
// character takes two columns.
func TestWriteTable(t *testing.T) {
	var out bytes.Buffer
	writeTable(&out, [][]string{{"NAME", "TEMP"}, {"张*丰", "36.6"}, {"x", "37.9"}})
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	for _, l := range lines {
		i := strings.LastIndex(l, " ")
		if w := displayWidth(l[:i+1]); w != 7 {
			t.Errorf("%q: the second column starts at %d, want 7", l, w)
		}
	}
	if displayWidth("张*丰") != 5 || displayWidth("abc") != 3 {
		t.Error("displayWidth")
	}
}
