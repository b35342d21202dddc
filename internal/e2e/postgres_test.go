package e2e

import (
	"context"
	crand "crypto/rand"
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
	rig := newUploadRig(t, "gate-pg", 50, "--db", dsn)
	rig.record(t, 1000)
	// A person without a code, whose ID number the box sealed to the
	// authority's event key: authority unseal reads it from PostgreSQL.
	eventKey, err := keyfile.ReadEventPublic(filepath.Join(rig.dir, "auth", "event.pub"))
	if err != nil {
		t.Fatal(err)
	}
	const number = "44030519880506122X"
	sealed, err := naclbox.SealAnonymous(nil, []byte(number), (*[32]byte)(eventKey.Bytes()), crand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	func() {
		b, err := store.OpenBox(filepath.Join(rig.dir, "cp.db"), store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		if _, err := b.Record(context.Background(), store.Event{Time: time.Now(), Kind: "scan", Decision: "pass", Gate: "gate-pg",
			ID: &store.IDRecord{Check: "only", Sealed: sealed}}); err != nil {
			t.Fatal(err)
		}
		rig.total++
	}()

	wantKills, r := killPlan(t, 6, 3)
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
		return err == nil && len(devs) == 1 && devs[0].Mark > 0 && devs[0].Mark < uint64(rig.total)
	}
	rounds, kills, inCatchUp := 0, 0, 0
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
			if r.IntN(10) < 3 {
				box.Process.Kill()
			}
			rig.auth.kill()
			if midway() {
				inCatchUp++
			}
			rig.restart(t)
			kills++
			<-done
		}
		if completed && kills >= wantKills {
			break
		}
		rig.record(t, 150) // each round has uploads to make
	}
	must(t, rig.dir, "checkpointd", "--config", "cp.toml", "--sync-once")
	rig.auth.kill()

	devs, err := db.Devices()
	if err != nil || len(devs) != 1 {
		t.Fatalf("devices %v, %v", devs, err)
	}
	held, err := db.DeviceEvents(devs[0].ID, 0, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	rig.check(t, devs, held)
	out := must(t, rig.dir, "authority", "unseal", "--keys", "auth", "--db", dsn)
	if !strings.Contains(out, "event 1001,") || !strings.Contains(out, "ID number "+number) || !strings.Contains(out, "1 sealed ID numbers") {
		t.Errorf("authority unseal on PostgreSQL:\n%s", out)
	}
	t.Logf("%d rounds, %d kills of the authority (%d during the catch-up), %d events held once each", rounds+1, kills, inCatchUp, len(held))
}
