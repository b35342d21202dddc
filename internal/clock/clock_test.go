package clock

import (
	"runtime"
	"testing"
	"time"
)

// TestSystemBoot reads the machine's boot clock: the same boot id each
// time, and a reading since the boot that moves on.
func TestSystemBoot(t *testing.T) {
	var c Clock = System{}
	b, ok := c.(Boot)
	if !ok {
		t.Fatal("System is not a Boot clock")
	}
	id, first, ok := b.Boot()
	if runtime.GOOS != "linux" {
		if ok {
			t.Errorf("boot clock read outside Linux: %q %v", id, first)
		}
		return
	}
	if !ok || len(id) != 36 || first <= 0 {
		t.Fatalf("Boot() = %q, %v, %v; want a boot id and a positive reading", id, first, ok)
	}
	time.Sleep(20 * time.Millisecond)
	id2, second, ok := b.Boot()
	if !ok || id2 != id {
		t.Errorf("boot id changed within a process: %q, then %q", id, id2)
	}
	if d := second - first; d < 20*time.Millisecond || d > 10*time.Second {
		t.Errorf("the boot clock moved %v over a 20 ms sleep", d)
	}
}
