package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/checkpointd/checkpoint/internal/credential"
	"github.com/checkpointd/checkpoint/internal/keyfile"
	"github.com/checkpointd/checkpoint/internal/pgtest"
	"github.com/checkpointd/checkpoint/internal/protocol"
	"github.com/checkpointd/checkpoint/internal/trust"
	"github.com/checkpointd/checkpoint/store"
	"github.com/checkpointd/checkpoint/store/postgres"
)

// TestSharedPostgres runs three authority processes on one PostgreSQL
// database, as docs/database.md ("Several authority processes, one
// database") says they may run behind a load balancer. They are started
// at the same moment (they migrate the new database once between them,
// and share the admin token the first of them makes), and then driven at
// once, each client's requests going to one process and the next:
//
//   - two checkpoints (checkpointd --sync-once) sync through the three in
//     turn, enrolled at one process with a token another issued, and a
//     third device sends each of its batches to two processes at once:
//     every event is held once, linked to the one before, the same
//     batch is acknowledged by both, and a changed event or a gap is
//     refused by any;
//   - holders register at one process with codes another issued; one
//     code taken by two phones at two processes at once registers one
//     of them; a holder declaring through two processes at once gets
//     one credential and is told the other declaration is too soon;
//   - the operator revokes through the three at once: the versions are
//     1 to 12, each once; a revocation made at one process is in the
//     next manifest of another (no process serves a version it has
//     cached once the database has moved on), a manifest signed by one
//     process is completed with chunks from another, and the boxes end
//     with the database's set.
func TestSharedPostgres(t *testing.T) {
	readSources()
	dsn := pgtest.New(t)
	dir := t.TempDir()
	must(t, dir, "authority", "keygen", "--out", "auth")
	must(t, dir, "authority", "trust", "--root", "auth/root.key", "--issuer", "auth/issuer.pub", "--region", "44", "--out", "trust.cbor")
	if _, err := os.Stat(filepath.Join(dir, "auth", "admin.token")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("keygen made the admin token (%v): the processes would not race to make it", err)
	}
	addrs := []string{freePort(t), freePort(t), freePort(t)}
	procs := startAuthorities(t, dir, addrs, "--db", dsn, "--region", "44")
	defer func() {
		for _, p := range procs {
			p.kill()
		}
	}()
	server := func(i int) string { return "http://" + addrs[i%len(addrs)] }

	root, err := keyfile.ReadPublic(filepath.Join(dir, "auth", "root.pub"))
	if err != nil {
		t.Fatal(err)
	}
	rawTrust, err := os.ReadFile(filepath.Join(dir, "trust.cbor"))
	if err != nil {
		t.Fatal(err)
	}
	list, err := trust.Parse(rawTrust, root)
	if err != nil {
		t.Fatal(err)
	}
	var listKeys []ed25519.PublicKey
	for _, k := range list.ListKeys {
		listKeys = append(listKeys, k.PublicKey)
	}
	pseudonymKey, err := keyfile.ReadPseudonymKey(filepath.Join(dir, "auth", "pseudonym.key"))
	if err != nil {
		t.Fatal(err)
	}
	subjectOf := func(id string) [store.SubjectSize]byte {
		return [store.SubjectSize]byte(credential.Pseudonym(pseudonymKey, id))
	}

	// Every process takes the admin token in the file: each issues an
	// enrolment token.
	tokens := make([]string, 3)
	for i := range tokens {
		tokens[i] = strings.TrimSpace(must(t, dir, "authority", "enroll-token", "--server", server(i),
			"--token", "auth/admin.token", "--name", fmt.Sprintf("gate-%d", i)))
	}

	// The boxes' configurations, one per process, sharing the box's
	// database and device key.
	for b := range 2 {
		for p := range 3 {
			writeFile(t, dir, fmt.Sprintf("box%d-p%d.toml", b, p), fmt.Sprintf(`name = "gate-%d"
[trust]
root_key = "auth/root.pub"
[store]
path = "box%d.db"
[sync]
authority = "%s"
device_key = "box%d.key"
enroll_token = "%s"
batch = 50
`, b, b, server(p), b, tokens[b]))
		}
	}
	dev := newRawDevice(t, server(0), tokens[2], listKeys)

	// Codes for the holders, each from another process than the one it
	// is used at.
	names := []string{"李四", "赵六", "孙七"}
	ids := []string{idNumber(100), idNumber(101), idNumber(102)}
	codes := make([]string, 3)
	for i := range codes {
		codes[i] = strings.TrimSpace(must(t, dir, "authority", "registration-code", "--server", server(i+2), "--token",
			"auth/admin.token", "--id-number", ids[i], "--name", names[i], "--operator", "office-1"))
	}
	for _, phone := range []string{"h0", "h1", "h2a", "h2b"} {
		must(t, dir, "holder", "keygen", "--out", phone)
	}

	var wg sync.WaitGroup
	const rounds, perRound = 3, 120
	recorded := make([]int, 2)
	for b := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				if err := recordAt(filepath.Join(dir, fmt.Sprintf("box%d.db", b)), perRound); err != nil {
					t.Errorf("box %d: %v", b, err)
					return
				}
				recorded[b] += perRound
				// Box 0 enrols at process 1 with process 0's token, box 1
				// at process 2 with process 1's; then each goes on round
				// the processes.
				if err := syncBox(dir, b, b+1+r); err != nil {
					t.Errorf("box %d, round %d: %v", b, r, err)
					return
				}
			}
		}()
	}

	// The third device's batches, each sent to two processes at once.
	const devEvents, devBatch = 300, 50
	devRaws := chainOf(t, devEvents)
	changed := chainOf(t, 20)                         // another event 1
	afterGap := chainOf(t, devEvents+2)[devEvents+1:] // an event 302
	wg.Add(1)
	go func() {
		defer wg.Done()
		for k := 0; k*devBatch < devEvents; k++ {
			from, to := k*devBatch+1, (k+1)*devBatch
			var marks [2]uint64
			var errs [2]error
			var both sync.WaitGroup
			for j := range 2 {
				both.Add(1)
				go func() {
					defer both.Done()
					marks[j], errs[j] = dev.upload(server(k+j), uint64(from), devRaws[from-1:to])
				}()
			}
			both.Wait()
			for j := range 2 {
				if errs[j] != nil || marks[j] != uint64(to) {
					t.Errorf("batch %d-%d through process %d: mark %d, %v; want %d", from, to, (k+j)%3, marks[j], errs[j], to)
					return
				}
			}
		}
		// An event held changed, or one after a gap: refused by any.
		if _, err := dev.upload(server(1), 1, changed); err == nil || !strings.Contains(err.Error(), "409") {
			t.Errorf("a changed event: %v, want 409", err)
		}
		if _, err := dev.upload(server(2), devEvents+2, afterGap); err == nil || !strings.Contains(err.Error(), "409") {
			t.Errorf("an upload after a gap: %v, want 409", err)
		}
	}()

	// Holders.
	wg.Add(1)
	go func() {
		defer wg.Done()
		register := func(phone string, i, at int) result {
			return run(dir, "holder", "register", "--server", server(at), "--key", phone+"/holder.key",
				"--id-number", ids[i], "--name", names[i], "--code", codes[i])
		}
		// Codes issued by process i+2, used at process i+1.
		for i, phone := range []string{"h0", "h1"} {
			if r := register(phone, i, i+1); r.code != 0 || !strings.Contains(r.stdout, "registered with a registration code") {
				t.Errorf("holder %d registering: exit %d: %s %s", i, r.code, r.stdout, r.stderr)
				return
			}
		}
		// One code, two phones, two processes, at once.
		var rs [2]result
		var both sync.WaitGroup
		for j, phone := range []string{"h2a", "h2b"} {
			both.Add(1)
			go func() {
				defer both.Done()
				rs[j] = register(phone, 2, j)
			}()
		}
		both.Wait()
		winner := ""
		for j, phone := range []string{"h2a", "h2b"} {
			switch {
			case rs[j].code == 0:
				if winner != "" {
					t.Errorf("one code registered two phones")
				}
				winner = phone
			case rs[j].code != 1 || !strings.Contains(rs[j].stderr, "403"):
				t.Errorf("the code used at once at another process: exit %d: %s", rs[j].code, rs[j].stderr)
			}
		}
		if winner == "" {
			t.Errorf("one code at two processes at once registered neither phone: %+v", rs)
			return
		}
		// Each holder declares through two processes at once.
		for i, phone := range []string{"h0", "h1", winner} {
			var ds [2]result
			for j := range 2 {
				both.Add(1)
				go func() {
					defer both.Done()
					ds[j] = run(dir, "holder", "declare", "--server", server(i+j), "--key", phone+"/holder.key",
						"--out", fmt.Sprintf("%s-%d.cbor", phone, j))
				}()
			}
			both.Wait()
			ok, soon := 0, 0
			for _, d := range ds {
				switch {
				case d.code == 0 && strings.HasPrefix(d.stdout, "green (clean_declaration)"):
					ok++
				case d.code == 1 && strings.Contains(d.stderr, "next declaration is allowed at"):
					soon++
				default:
					t.Errorf("holder %d declaring: exit %d: %s %s", i, d.code, d.stdout, d.stderr)
				}
			}
			if ok != 1 || soon != 1 {
				t.Errorf("holder %d declared through two processes at once: %d credentials, %d told too soon; want 1 and 1", i, ok, soon)
			}
			st := run(dir, "holder", "status", "--server", server(i+2), "--key", phone+"/holder.key", "--json")
			if st.code != 0 || !strings.Contains(st.stdout, `"colour": "green"`) {
				t.Errorf("holder %d's status at a third process: exit %d: %s %s", i, st.code, st.stdout, st.stderr)
			}
		}
	}()

	// The operator revokes through the three processes at once.
	var revMu sync.Mutex
	revVersions := map[uint64]int{}
	var revoked []string
	for p := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 4 {
				id := idNumber(200 + 10*p + i)
				r := run(dir, "authority", "revoke", "--server", server(p), "--token", "auth/admin.token", "--id-number", id)
				var v uint64
				if _, err := fmt.Sscanf(r.stdout, "revocation added: revocation list version %d", &v); r.code != 0 || err != nil {
					t.Errorf("revoke through process %d: exit %d: %s %s", p, r.code, r.stdout, r.stderr)
					return
				}
				revMu.Lock()
				revVersions[v]++
				revoked = append(revoked, id)
				revMu.Unlock()
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	for v := uint64(1); v <= 12; v++ {
		if revVersions[v] != 1 {
			t.Fatalf("revocation versions returned: %v; want 1 to 12, each once", revVersions)
		}
	}

	// The downloads: a manifest from one process, its chunks from another.
	want := map[[store.SubjectSize]byte]bool{}
	for _, id := range revoked {
		want[subjectOf(id)] = true
	}
	m := dev.manifest(t, server(1), 0)
	if m.Version != 12 || !m.Snapshot || m.Set.Count != 12 {
		t.Fatalf("manifest from process 1: version %d, snapshot %v, %d entries; want version 12 with 12", m.Version, m.Snapshot, m.Set.Count)
	}
	set := map[[store.SubjectSize]byte]store.RevEntry{}
	dev.apply(t, server(2), m, 0, set)
	if len(set) != len(want) {
		t.Fatalf("the snapshot holds %d entries, not the %d revoked", len(set), len(want))
	}
	for sub := range want {
		if _, ok := set[sub]; !ok {
			t.Fatal("the snapshot lacks a subject revoked")
		}
	}
	if again := dev.manifest(t, server(0), 0); again.Version != 12 || again.Set != m.Set || !slices.Equal(again.Chunks, m.Chunks) {
		t.Errorf("the same version's manifest from another process differs")
	}

	// A revocation through process 0 is in process 1's next manifest,
	// though process 1 has version 12 prepared; process 2 refuses version
	// 12's chunks now.
	last := idNumber(299)
	out := must(t, dir, "authority", "revoke", "--server", server(0), "--token", "auth/admin.token", "--id-number", last)
	if !strings.Contains(out, "version 13") {
		t.Fatalf("revoke: %s", out)
	}
	if m13 := dev.manifest(t, server(1), 0); m13.Version != 13 || m13.Set.Count != 13 {
		t.Errorf("process 1's manifest after a revocation at process 0: version %d with %d entries; want 13 with 13", m13.Version, m13.Set.Count)
	}
	if code := dev.chunkStatus(t, server(2), 12, 0, 0); code != http.StatusGone {
		t.Errorf("version 12's chunk from process 2 once 13 is current: %d, want 410", code)
	}
	delta := dev.manifest(t, server(2), 12)
	if delta.Version != 13 || delta.Snapshot || len(delta.Chunks) != 1 || delta.Chunks[0].Entries != 1 {
		t.Fatalf("delta from 12 at process 2: %+v", delta)
	}
	dev.apply(t, server(0), delta, 12, set)
	if _, ok := set[subjectOf(last)]; !ok || len(set) != 13 {
		t.Errorf("after the delta: %d entries, the last revoked among them: %v", len(set), ok)
	}
	for p := range 3 {
		st := dev.status(t, server(p))
		if st.RevocationVersion != 13 || st.Mark != devEvents {
			t.Errorf("status at process %d: revocation version %d, mark %d; want 13 and %d", p, st.RevocationVersion, st.Mark, devEvents)
		}
	}

	// The boxes sync once more, and end with the database's revocations.
	for b := range 2 {
		if err := syncBox(dir, b, b+2); err != nil {
			t.Fatalf("box %d: %v", b, err)
		}
	}

	// The database holds every event once, as recorded, chained.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db, err := postgres.Open(ctx, dsn, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	devs, err := db.Devices()
	if err != nil || len(devs) != 3 {
		t.Fatalf("devices %v, %v", devs, err)
	}
	for _, d := range devs {
		held, err := db.DeviceEvents(d.ID, 0, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		var recordedHashes [][32]byte
		if d.ID == dev.id {
			for _, r := range devRaws {
				e, _ := store.DecodeEvent(r)
				recordedHashes = append(recordedHashes, e.Hash)
			}
		} else {
			var b int
			if _, err := fmt.Sscanf(d.Name, "gate-%d", &b); err != nil || b > 1 {
				t.Fatalf("a device named %q", d.Name)
			}
			box, err := store.OpenBox(filepath.Join(dir, fmt.Sprintf("box%d.db", b)), store.Options{})
			if err != nil {
				t.Fatal(err)
			}
			evs, _ := box.Events(1, 1<<20)
			version, _, boxSet := box.RevocationVersion()
			box.Close()
			for _, e := range evs {
				recordedHashes = append(recordedHashes, e.Hash)
			}
			if len(evs) != recorded[b] {
				t.Errorf("box %d holds %d events, recorded %d", b, len(evs), recorded[b])
			}
			if version != 13 || boxSet != delta.Set {
				t.Errorf("box %d at revocation version %d with %d entries; want 13 and the database's set", b, version, boxSet.Count)
			}
		}
		if len(held) != len(recordedHashes) || d.Mark != uint64(len(held)) {
			t.Fatalf("device %s: %d events held, mark %d, %d recorded", d.Name, len(held), d.Mark, len(recordedHashes))
		}
		var prev [32]byte
		for i, e := range held {
			h, err := store.ChainHash(e)
			if e.Seq != uint64(i+1) || e.Hash != recordedHashes[i] || err != nil || h != e.Hash || e.Prev != prev {
				t.Fatalf("device %s: event %d differs from the one recorded or breaks the chain", d.Name, i+1)
			}
			prev = e.Hash
		}
	}

	// One process migrated the new database; the others found it done.
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n, top int
	if err := conn.QueryRow(ctx, "SELECT count(*), max(version) FROM schema_migrations").Scan(&n, &top); err != nil || n != top || n != 3 {
		t.Errorf("schema_migrations: %d rows up to version %d, %v", n, top, err)
	}
	migrated := 0
	for _, p := range procs {
		p.kill()
		logged := p.stderr.String()
		if c := strings.Count(logged, "schema migration applied"); c > 0 {
			migrated++
			if c != 3 {
				t.Errorf("a process applied %d migrations, want the 3", c)
			}
		}
		for _, secret := range append(append(append([]string{last}, ids...), names...), revoked...) {
			if strings.Contains(logged, secret) {
				t.Errorf("an authority process logged %q", secret)
			}
		}
	}
	if migrated != 1 {
		t.Errorf("%d processes applied migrations, want 1", migrated)
	}
}

// startAuthorities starts authority serve processes on the addresses at
// the same moment, and waits until each serves.
func startAuthorities(t *testing.T, dir string, addrs []string, extra ...string) []*authorityProc {
	t.Helper()
	var procs []*authorityProc
	var readys []chan bool
	for _, addr := range addrs {
		args := append([]string{"serve", "--keys", "auth", "--trust", "trust.cbor", "--listen", addr}, extra...)
		cmd := exec.Command(filepath.Join(toolsDir, "authority"), args...)
		cmd.Dir = dir
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		p := &authorityProc{cmd: cmd, stderr: &bytes.Buffer{}}
		cmd.Stderr = p.stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		ready := make(chan bool, 2)
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				if strings.HasPrefix(sc.Text(), "authority serving") {
					ready <- true
				}
			}
			ready <- false
		}()
		procs, readys = append(procs, p), append(readys, ready)
	}
	timeout := time.After(30 * time.Second)
	for i, ready := range readys {
		select {
		case ok := <-ready:
			if ok {
				continue
			}
		case <-timeout:
		}
		for _, p := range procs {
			p.kill()
		}
		t.Fatalf("authority process %d did not start:\n%s", i, procs[i].stderr.String())
	}
	return procs
}

// run runs a tool as runTool does, from any goroutine.
func run(dir, tool string, args ...string) result {
	cmd := exec.Command(filepath.Join(toolsDir, tool), args...)
	cmd.Dir = dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		return result{-1, "", err.Error()}
	}
	return result{code, out.String(), errb.String()}
}

// recordAt records n passages at the box whose database is path.
func recordAt(path string, n int) error {
	box, err := store.OpenBox(path, store.Options{})
	if err != nil {
		return err
	}
	defer box.Close()
	for range n {
		if _, err := box.Record(context.Background(), store.Event{Time: time.Now(), Kind: "scan", Decision: "pass", Gate: "gate"}); err != nil {
			return err
		}
	}
	return nil
}

// syncBox syncs box b once through process p (mod 3). A download the
// operator's revocations keep moving on (three times in a row) is tried
// again.
func syncBox(dir string, b, p int) error {
	for attempt := 0; ; attempt++ {
		r := run(dir, "checkpointd", "--config", fmt.Sprintf("box%d-p%d.toml", b, p%3), "--sync-once")
		switch {
		case r.code == 0:
			return nil
		case attempt < 3 && strings.Contains(r.stderr, "kept changing"):
			continue
		}
		return fmt.Errorf("checkpointd --sync-once through process %d: exit %d: %s", p%3, r.code, r.stderr)
	}
}

// chainOf makes n events chained from the zero hash, in the stored
// encoding; the gate's name tells one chain from another of the same
// length.
func chainOf(t *testing.T, n int) [][]byte {
	t.Helper()
	var raws [][]byte
	var prev [32]byte
	gate := fmt.Sprintf("gate-%d", n)
	at := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	for seq := uint64(1); seq <= uint64(n); seq++ {
		e := store.Event{Seq: seq, Time: at.Add(time.Duration(seq) * time.Second), Kind: "scan", Decision: "pass", Gate: gate, Prev: prev}
		var err error
		if e.Hash, err = store.ChainHash(e); err != nil {
			t.Fatal(err)
		}
		raw, err := store.EncodeEvent(e)
		if err != nil {
			t.Fatal(err)
		}
		raws, prev = append(raws, raw), e.Hash
	}
	return raws
}

// idNumber is a valid ID number, a different one for each i below 1000.
func idNumber(i int) string {
	s := fmt.Sprintf("4403051985%02d%02d%03d", 1+i%12, 1+i%28, i)
	weights := [17]int{7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2}
	sum := 0
	for j, w := range weights {
		sum += int(s[j]-'0') * w
	}
	return s + string("10X98765432"[sum%11])
}

// rawDevice is a checkpoint speaking the protocol itself, so that its
// requests can go to any process, at once.
type rawDevice struct {
	id       string
	key      ed25519.PrivateKey
	listKeys []ed25519.PublicKey
	hc       *http.Client
}

func newRawDevice(t *testing.T, base, token string, listKeys []ed25519.PublicKey) *rawDevice {
	t.Helper()
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	d := &rawDevice{key: key, listKeys: listKeys, hc: &http.Client{Timeout: 30 * time.Second}}
	body, err := protocol.Enc.Marshal(protocol.EnrollRequest{Name: "gate-raw", DeviceKey: pub, Token: token})
	if err != nil {
		t.Fatal(err)
	}
	res, err := d.hc.Post(base+protocol.PathEnroll, protocol.ContentType, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	out, _ := io.ReadAll(res.Body)
	var er protocol.EnrollResponse
	if res.StatusCode != http.StatusOK || protocol.Dec.Unmarshal(out, &er) != nil || er.DeviceID == "" {
		t.Fatalf("enrolment: %s: %s", res.Status, out)
	}
	d.id = er.DeviceID
	return d
}

// do sends a signed request and returns the answer's status and body.
func (d *rawDevice) do(method, u string, body []byte) (int, []byte, error) {
	req, err := http.NewRequest(method, u, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", protocol.ContentType)
	nonce := make([]byte, 16)
	rand.Read(nonce)
	protocol.SignRequest(req, d.id, d.key, nonce, time.Now(), body)
	res, err := d.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	out, err := io.ReadAll(res.Body)
	return res.StatusCode, out, err
}

// upload sends events from..., and returns the acknowledged mark.
func (d *rawDevice) upload(base string, from uint64, raws [][]byte) (uint64, error) {
	body, err := protocol.Enc.Marshal(protocol.EventBatch{DeviceID: d.id, From: from, To: from + uint64(len(raws)) - 1, Events: raws})
	if err != nil {
		return 0, err
	}
	code, out, err := d.do(http.MethodPost, base+protocol.PathEvents, body)
	if err != nil {
		return 0, err
	}
	if code != http.StatusOK {
		return 0, fmt.Errorf("%d: %s", code, bytes.TrimSpace(out))
	}
	var ack protocol.Ack
	if err := d.open(out, protocol.TypeAck, &ack); err != nil {
		return 0, err
	}
	return ack.Mark, nil
}

func (d *rawDevice) open(raw []byte, typ string, v any) error {
	payload, err := trust.OpenObject(raw, typ, d.listKeys...)
	if err != nil {
		return err
	}
	return protocol.Dec.Unmarshal(payload, v)
}

func (d *rawDevice) status(t *testing.T, base string) protocol.Status {
	t.Helper()
	code, out, err := d.do(http.MethodGet, base+protocol.PathStatus, nil)
	var st protocol.Status
	if err != nil || code != http.StatusOK {
		t.Fatalf("status: %d %s %v", code, out, err)
	}
	if err := d.open(out, protocol.TypeStatus, &st); err != nil {
		t.Fatalf("status: %v", err)
	}
	return st
}

// manifest fetches the revocation manifest from since, and checks its
// signature.
func (d *rawDevice) manifest(t *testing.T, base string, since uint64) protocol.Manifest {
	t.Helper()
	code, out, err := d.do(http.MethodGet, base+protocol.PathManifest+"?since="+strconv.FormatUint(since, 10), nil)
	if err != nil || code != http.StatusOK {
		t.Fatalf("manifest: %d %s %v", code, out, err)
	}
	var m protocol.Manifest
	if err := d.open(out, protocol.TypeManifest, &m); err != nil {
		t.Fatalf("manifest: %v", err)
	}
	if m.Since != since {
		t.Fatalf("manifest since %d, asked from %d", m.Since, since)
	}
	return m
}

func (d *rawDevice) chunk(base string, version, since uint64, index int) (int, []byte, error) {
	q := url.Values{"version": {strconv.FormatUint(version, 10)}, "since": {strconv.FormatUint(since, 10)}, "index": {strconv.Itoa(index)}}
	return d.do(http.MethodGet, base+protocol.PathChunk+"?"+q.Encode(), nil)
}

func (d *rawDevice) chunkStatus(t *testing.T, base string, version, since uint64, index int) int {
	t.Helper()
	code, _, err := d.chunk(base, version, since, index)
	if err != nil {
		t.Fatal(err)
	}
	return code
}

// apply fetches m's chunks from base, checks them against m, applies
// them to set (a snapshot replaces it), and checks the set against m's
// count and digest.
func (d *rawDevice) apply(t *testing.T, base string, m protocol.Manifest, since uint64, set map[[store.SubjectSize]byte]store.RevEntry) {
	t.Helper()
	if m.Snapshot {
		clear(set)
	}
	for i, info := range m.Chunks {
		code, b, err := d.chunk(base, m.Version, since, i)
		if err != nil || code != http.StatusOK {
			t.Fatalf("chunk %d of version %d: %d %v", i, m.Version, code, err)
		}
		if sha256.Sum256(b) != info.Hash {
			t.Fatalf("chunk %d of version %d from another process differs from the manifest's", i, m.Version)
		}
		es, err := protocol.DecodeChunk(b)
		if err != nil || len(es) != info.Entries {
			t.Fatalf("chunk %d: %d entries, %v", i, len(es), err)
		}
		for _, e := range es {
			if e.Tombstone {
				delete(set, e.Subject)
			} else {
				set[e.Subject] = e
			}
		}
	}
	var got store.SetDigest
	for _, e := range set {
		got.Add(e)
	}
	if got != m.Set {
		t.Fatalf("version %d: %d entries after the chunks, the manifest's set has %d (or another digest)", m.Version, got.Count, m.Set.Count)
	}
}
