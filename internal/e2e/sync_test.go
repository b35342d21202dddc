package e2e

import (
	"bufio"
	"bytes"
	"context"
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

// TestKill9WhileUploading records events at a checkpoint, then syncs them
// up while killing the checkpoint, the authority or both with SIGKILL at
// random moments, restarting what was killed, recording more in between,
// until a sync completes. The authority must end with every event exactly
// once, as the checkpoint recorded it.
func TestKill9WhileUploading(t *testing.T) {
	readSources()
	dir := t.TempDir()
	addr := freePort(t)
	must(t, dir, "authority", "keygen", "--out", "auth")
	must(t, dir, "authority", "trust", "--root", "auth/root.key", "--issuer", "auth/issuer.pub", "--out", "trust.cbor")
	auth := startAuthority(t, dir, addr)
	defer func() { auth.kill() }()
	token := strings.TrimSpace(must(t, dir, "authority", "enroll-token", "--server", "http://"+addr,
		"--token", "auth/admin.token", "--name", "gate-crash"))
	if err := os.WriteFile(filepath.Join(dir, "cp.toml"), []byte(fmt.Sprintf(`name = "gate-crash"
[trust]
root_key = "auth/root.pub"
[store]
path = "cp.db"
[sync]
authority = "http://%s"
device_key = "device.key"
enroll_token = "%s"
batch = 200
`, addr, token)), 0o644); err != nil {
		t.Fatal(err)
	}

	total := 0
	recordEvents := func(n int) {
		box, err := store.OpenBox(filepath.Join(dir, "cp.db"), store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer box.Close()
		for i := 0; i < n; i++ {
			if _, err := box.Record(context.Background(), store.Event{Time: time.Now(), Kind: "scan", Decision: "pass", Gate: "gate-crash"}); err != nil {
				t.Fatal(err)
			}
		}
		total += n
	}
	recordEvents(4000)

	wantKills := 20
	if s := os.Getenv("UPLOAD_KILLS"); s != "" {
		if _, err := fmt.Sscan(s, &wantKills); err != nil || wantKills < 1 {
			t.Fatalf("UPLOAD_KILLS=%q: want a number of kills", s)
		}
	}
	// The kill points are drawn from a seed, logged so that a failure can
	// be run again with KILL_SEED (the processes' own pace still varies).
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("KILL_SEED"); s != "" {
		if _, err := fmt.Sscan(s, &seed); err != nil {
			t.Fatalf("KILL_SEED=%q: %v", s, err)
		}
	}
	t.Logf("KILL_SEED=%d", seed)
	r := rand.New(rand.NewPCG(2, seed))
	rounds, kills := 0, 0
	for ; rounds < 10*wantKills; rounds++ {
		box := exec.Command(filepath.Join(toolsDir, "checkpointd"), "--config", "cp.toml", "--sync-once")
		box.Dir = dir
		if err := box.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- box.Wait() }()
		var err error
		completed := false
		select {
		case err = <-done:
			completed = err == nil
		case <-time.After(time.Duration(r.IntN(250)) * time.Millisecond):
			switch victim := r.IntN(10); {
			case victim < 5:
				box.Process.Kill()
			case victim < 8:
				auth.kill()
				auth = startAuthority(t, dir, addr)
			default:
				box.Process.Kill()
				auth.kill()
				auth = startAuthority(t, dir, addr)
			}
			kills++
			<-done
		}
		if completed && kills >= wantKills {
			break
		}
		if rounds%5 == 4 {
			recordEvents(50) // the gate keeps working between attempts
		}
	}
	// One more sync to be sure everything is up, then compare.
	must(t, dir, "checkpointd", "--config", "cp.toml", "--sync-once")
	auth.kill()
	a, err := store.OpenAuthority(filepath.Join(dir, "authority.db"))
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
	box, err := store.OpenBox(filepath.Join(dir, "cp.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer box.Close()
	recorded, _ := box.Events(1, 1<<30)
	if len(held) != total || len(recorded) != total || devs[0].Mark != uint64(total) {
		t.Fatalf("recorded %d (%d in the box), the authority holds %d with mark %d", total, len(recorded), len(held), devs[0].Mark)
	}
	for i := range held {
		if held[i].Seq != uint64(i+1) || held[i].Hash != recorded[i].Hash {
			t.Fatalf("event %d at the authority differs from the box's", i+1)
		}
	}
	t.Logf("%d rounds, %d kills, %d events held once each", rounds+1, kills, len(held))
}
