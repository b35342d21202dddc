package store

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestDiskNearlyFull fills a small filesystem made for the test (a 3 MiB
// tmpfs, which needs root): the alarm is raised while there is still room,
// recording fails cleanly once there is none, and every event recorded
// before is still there and unsent.
func TestDiskNearlyFull(t *testing.T) {
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot make a small filesystem here (mount tmpfs needs root): %v %s", err, out)
	}
	defer exec.Command("umount", dir).Run()
	// Space an operator can free later.
	ballast := filepath.Join(dir, "ballast")
	if err := os.WriteFile(ballast, make([]byte, 256<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "box.db")
	b, err := OpenBox(path, Options{DiskLow: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	recorded, alarmAt := 0, -1
	var recErr error
	for i := 0; i < 200000; i++ {
		e := event(i)
		e.Reasons = []string{"padding the event to fill the disk faster", "and more padding", "and more"}
		if _, recErr = b.Record(context.Background(), e); recErr != nil {
			break
		}
		recorded++
		if alarmAt < 0 && b.Disk().Low {
			alarmAt = recorded
		}
	}
	if recErr == nil {
		t.Fatal("a 3 MiB filesystem never filled")
	}
	if alarmAt < 0 || alarmAt >= recorded {
		t.Fatalf("no alarm before the disk was full (alarm at %d, full after %d)", alarmAt, recorded)
	}
	t.Logf("alarm after %d events, full after %d: %v", alarmAt, recorded, recErr)
	b.Close()

	// Room is made (the operator clears space): nothing recorded was lost,
	// and recording goes on where it stopped.
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	b, err = OpenBox(path, Options{DiskLow: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if e, err := b.Record(context.Background(), event(recorded)); err != nil || e.Seq != uint64(recorded+1) {
		t.Fatalf("recording after space was freed: seq %d, %v", e.Seq, err)
	}
	n, err := b.VerifyChain()
	if err != nil || n != recorded+1 {
		t.Fatalf("after the disk filled: %d events verify (%v), %d were recorded", n, err, recorded+1)
	}
	if u, _ := b.Unsent(); u != uint64(recorded+1) {
		t.Errorf("%d unsent, want %d", u, recorded+1)
	}
}
