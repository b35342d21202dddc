package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/checkpointd/checkpoint/store"
)

// freePort returns a loopback address nobody listens on, so that the
// authority keeps its address across restarts.
func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// authorityProc is a running `authority serve`. Its standard error may
// be read once it has been killed.
type authorityProc struct {
	cmd    *exec.Cmd
	stderr *bytes.Buffer
}

func startAuthority(t *testing.T, dir, addr string, extra ...string) *authorityProc {
	t.Helper()
	args := append([]string{"serve", "--keys", "auth", "--db", "authority.db", "--trust", "trust.cbor", "--listen", addr}, extra...)
	cmd := exec.Command(filepath.Join(toolsDir, "authority"), args...)
	cmd.Dir = dir
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &bytes.Buffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "authority serving") {
				ready <- true
			}
		}
		ready <- false
	}()
	select {
	case ok := <-ready:
		if !ok {
			cmd.Wait()
			t.Fatalf("the authority exited before serving:\n%s", stderr.String())
		}
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("the authority did not start:\n%s", stderr.String())
	}
	return &authorityProc{cmd: cmd, stderr: stderr}
}

func (a *authorityProc) kill() {
	a.cmd.Process.Kill()
	a.cmd.Wait()
}

// uploadRig is a checkpoint enrolled at an authority serve process, for
// the kill tests: the authority's keys, trust list and database (its
// --db, the file authority.db by default) in dir, and the box's
// configuration cp.toml and database cp.db.
type uploadRig struct {
	dir, addr string
	db        []string // --db and its value, or nothing for authority.db
	auth      *authorityProc
	total     int // events recorded at the box
}

func newUploadRig(t *testing.T, name string, batch int, db ...string) *uploadRig {
	t.Helper()
	r := &uploadRig{dir: t.TempDir(), addr: freePort(t), db: db}
	must(t, r.dir, "authority", "keygen", "--out", "auth")
	must(t, r.dir, "authority", "trust", "--root", "auth/root.key", "--issuer", "auth/issuer.pub", "--out", "trust.cbor")
	r.auth = startAuthority(t, r.dir, r.addr, r.db...)
	t.Cleanup(func() { r.auth.kill() })
	token := strings.TrimSpace(must(t, r.dir, "authority", "enroll-token", "--server", "http://"+r.addr,
		"--token", "auth/admin.token", "--name", name))
	writeFile(t, r.dir, "cp.toml", fmt.Sprintf(`name = "%s"
[trust]
root_key = "auth/root.pub"
[store]
path = "cp.db"
[sync]
authority = "http://%s"
device_key = "device.key"
enroll_token = "%s"
batch = %d
`, name, r.addr, token, batch))
	return r
}

// restart kills the authority and starts it again on its address.
func (r *uploadRig) restart(t *testing.T) {
	r.auth.kill()
	r.auth = startAuthority(t, r.dir, r.addr, r.db...)
}

// record records n passages at the box.
func (r *uploadRig) record(t *testing.T, n int) {
	t.Helper()
	if err := recordAt(filepath.Join(r.dir, "cp.db"), n); err != nil {
		t.Fatal(err)
	}
	r.total += n
}

// check compares what the authority holds of the box's events (its one
// device, and held from the first event on) with what the box recorded:
// every event once, as recorded, each linked to the one before.
func (r *uploadRig) check(t *testing.T, devs []store.EnrolledDevice, held []store.Event) {
	t.Helper()
	box, err := store.OpenBox(filepath.Join(r.dir, "cp.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer box.Close()
	recorded, _ := box.Events(1, 1<<30)
	if len(held) != r.total || len(recorded) != r.total || devs[0].Mark != uint64(r.total) {
		t.Fatalf("recorded %d (%d in the box), the authority holds %d with mark %d", r.total, len(recorded), len(held), devs[0].Mark)
	}
	var prev [32]byte
	for i, e := range held {
		h, err := store.ChainHash(e)
		if e.Seq != uint64(i+1) || e.Hash != recorded[i].Hash || err != nil || h != e.Hash || e.Prev != prev {
			t.Fatalf("event %d at the authority differs from the box's or breaks the chain", i+1)
		}
		prev = e.Hash
	}
}

// killPlan is how many kills a kill test makes (UPLOAD_KILLS, or
// wantKills) and the random source of their moments, drawn from a seed
// logged so that a failure can be run again with KILL_SEED (the
// processes' own pace still varies); stream tells the tests' sources
// apart.
func killPlan(t *testing.T, wantKills int, stream uint64) (int, *rand.Rand) {
	t.Helper()
	if s := os.Getenv("UPLOAD_KILLS"); s != "" {
		if _, err := fmt.Sscan(s, &wantKills); err != nil || wantKills < 1 {
			t.Fatalf("UPLOAD_KILLS=%q: want a number of kills", s)
		}
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("KILL_SEED"); s != "" {
		if _, err := fmt.Sscan(s, &seed); err != nil {
			t.Fatalf("KILL_SEED=%q: %v", s, err)
		}
	}
	t.Logf("KILL_SEED=%d", seed)
	return wantKills, rand.New(rand.NewPCG(stream, seed))
}

// TestKill9WhileUploading records events at a checkpoint, then syncs them
// up while killing the checkpoint, the authority or both with SIGKILL at
// random moments, restarting what was killed, recording more in between,
// until a sync completes. The authority must end with every event exactly
// once, as the checkpoint recorded it.
func TestKill9WhileUploading(t *testing.T) {
	readSources()
	rig := newUploadRig(t, "gate-crash", 200)
	rig.record(t, 4000)
	wantKills, r := killPlan(t, 20, 2)
	rounds, kills := 0, 0
	for ; rounds < 10*wantKills; rounds++ {
		box := exec.Command(filepath.Join(toolsDir, "checkpointd"), "--config", "cp.toml", "--sync-once")
		box.Dir = rig.dir
		if err := box.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- box.Wait() }()
		completed := false
		select {
		case err := <-done:
			completed = err == nil
		case <-time.After(time.Duration(r.IntN(250)) * time.Millisecond):
			switch victim := r.IntN(10); {
			case victim < 5:
				box.Process.Kill()
			case victim < 8:
				rig.restart(t)
			default:
				box.Process.Kill()
				rig.restart(t)
			}
			kills++
			<-done
		}
		if completed && kills >= wantKills {
			break
		}
		if rounds%5 == 4 {
			rig.record(t, 50) // the gate keeps working between attempts
		}
	}
	// One more sync to be sure everything is up, then compare.
	must(t, rig.dir, "checkpointd", "--config", "cp.toml", "--sync-once")
	rig.auth.kill()
	a, err := store.OpenAuthority(filepath.Join(rig.dir, "authority.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	devs, err := a.Devices()
	if err != nil || len(devs) != 1 {
		t.Fatalf("devices %v, %v", devs, err)
	}
	held, err := a.DeviceEvents(devs[0].ID, 0, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	rig.check(t, devs, held)
	t.Logf("%d rounds, %d kills, %d events held once each", rounds+1, kills, len(held))
}
