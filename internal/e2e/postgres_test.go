package e2e

import (
	"context"
	crand "crypto/rand"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	naclbox "golang.org/x/crypto/nacl/box"

	"github.com/checkpointd/checkpoint/internal/keyfile"
	"github.com/checkpointd/checkpoint/internal/pgtest"
	"github.com/checkpointd/checkpoint/store"
	"github.com/checkpointd/checkpoint/store/postgres"
)

// TestKill9WhileUploadingPostgres is TestKill9WhileUploading with the
// authority's database on PostgreSQL (a throwaway server of the test's
// own): the authority process, or it and the checkpoint, is SIGKILLed at
// random moments of the uploads while PostgreSQL keeps running, and
// restarted; the checkpoint records more in between, so that each round
// has uploads to make. After the last
// sync the database must hold every event exactly once, as the checkpoint
// recorded it, each linked to the one before, and authority unseal must
// read the one ID number a passage sealed from it.
func TestKill9WhileUploadingPostgres(t *testing.T) {
	readSources()
	dsn := pgtest.New(t)
	dir := t.TempDir()
	addr := freePort(t)
	must(t, dir, "authority", "keygen", "--out", "auth")
	must(t, dir, "authority", "trust", "--root", "auth/root.key", "--issuer", "auth/issuer.pub", "--out", "trust.cbor")
	start := func() *authorityProc { return startAuthority(t, dir, addr, "--db", dsn) }
	auth := start()
	defer func() { auth.kill() }()
	token := strings.TrimSpace(must(t, dir, "authority", "enroll-token", "--server", "http://"+addr,
		"--token", "auth/admin.token", "--name", "gate-pg"))
	if err := os.WriteFile(filepath.Join(dir, "cp.toml"), []byte(fmt.Sprintf(`name = "gate-pg"
[trust]
root_key = "auth/root.pub"
[store]
path = "cp.db"
[sync]
authority = "http://%s"
device_key = "device.key"
enroll_token = "%s"
batch = 50
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
		for range n {
			if _, err := box.Record(context.Background(), store.Event{Time: time.Now(), Kind: "scan", Decision: "pass", Gate: "gate-pg"}); err != nil {
				t.Fatal(err)
			}
		}
		total += n
	}
	recordEvents(1000)
	// A person without a code, whose ID number the box sealed to the
	// authority's event key: authority unseal reads it from PostgreSQL.
	eventKey, err := keyfile.ReadEventPublic(filepath.Join(dir, "auth", "event.pub"))
	if err != nil {
		t.Fatal(err)
	}
	const number = "44030519880506122X"
	sealed, err := naclbox.SealAnonymous(nil, []byte(number), (*[32]byte)(eventKey.Bytes()), crand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	func() {
		b, err := store.OpenBox(filepath.Join(dir, "cp.db"), store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		if _, err := b.Record(context.Background(), store.Event{Time: time.Now(), Kind: "scan", Decision: "pass", Gate: "gate-pg",
			ID: &store.IDRecord{Check: "only", Sealed: sealed}}); err != nil {
			t.Fatal(err)
		}
		total++
	}()

	wantKills := 6
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
	r := rand.New(rand.NewPCG(3, seed))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	db, err := postgres.Open(ctx, dsn, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// A kill with the mark between the first event and the last fell in
	// the catch-up, between or inside its uploads.
	midway := func() bool {
		devs, err := db.Devices()
		return err == nil && len(devs) == 1 && devs[0].Mark > 0 && devs[0].Mark < uint64(total)
	}
	rounds, kills, inCatchUp := 0, 0, 0
	for ; rounds < 10*wantKills; rounds++ {
		box := exec.Command(filepath.Join(toolsDir, "checkpointd"), "--config", "cp.toml", "--sync-once")
		box.Dir = dir
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
			if r.IntN(10) < 3 {
				box.Process.Kill()
			}
			auth.kill()
			if midway() {
				inCatchUp++
			}
			auth = start()
			kills++
			<-done
		}
		if completed && kills >= wantKills {
			break
		}
		recordEvents(150) // each round has uploads to make
	}
	must(t, dir, "checkpointd", "--config", "cp.toml", "--sync-once")
	auth.kill()

	devs, err := db.Devices()
	if err != nil || len(devs) != 1 {
		t.Fatalf("devices %v, %v", devs, err)
	}
	held, err := db.DeviceEvents(devs[0].ID, 0, 1<<30)
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
	var prev [32]byte
	for i, e := range held {
		h, err := store.ChainHash(e)
		if e.Seq != uint64(i+1) || e.Hash != recorded[i].Hash || err != nil || h != e.Hash || e.Prev != prev {
			t.Fatalf("event %d at the authority differs from the box's or breaks the chain", i+1)
		}
		prev = e.Hash
	}
	out := must(t, dir, "authority", "unseal", "--keys", "auth", "--db", dsn)
	if !strings.Contains(out, "event 1001,") || !strings.Contains(out, "ID number "+number) || !strings.Contains(out, "1 sealed ID numbers") {
		t.Errorf("authority unseal on PostgreSQL:\n%s", out)
	}
	t.Logf("%d rounds, %d kills of the authority (%d during the catch-up), %d events held once each", rounds+1, kills, inCatchUp, len(held))
}
