package clocktest

import (
	"testing"
	"time"
)

func TestFakeBoot(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	f := New(t0)
	id, b0, ok := f.Boot()
	if !ok || id == "" {
		t.Fatalf("Boot() = %q, %v, %v", id, b0, ok)
	}
	f.Advance(time.Hour)
	f.Set(t0.Add(24 * time.Hour)) // a step of the wall clock
	id1, b1, _ := f.Boot()
	if id1 != id || b1-b0 != time.Hour {
		t.Errorf("after Advance(1h) and Set: boot %q %v, want %q %v", id1, b1, id, b0+time.Hour)
	}
	if m := f.Monotonic(); m != time.Hour {
		t.Errorf("monotonic %v, want 1h", m)
	}
	f.Reboot()
	id2, b2, _ := f.Boot()
	if id2 == id || b2 != 0 {
		t.Errorf("after Reboot: boot %q %v, want a new id and 0", id2, b2)
	}
	if !f.Now().Equal(t0.Add(24*time.Hour)) || f.Monotonic() != time.Hour {
		t.Errorf("Reboot moved the wall clock or the monotonic reading: %v, %v", f.Now(), f.Monotonic())
	}
}

func TestRunning(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	r := NewRunning(t0)
	if d := r.Now().Sub(t0); d < 0 || d > time.Second {
		t.Errorf("a new running clock is %v from its start", d)
	}
	got := <-r.After(20 * time.Millisecond)
	if d := got.Sub(t0); d < 20*time.Millisecond {
		t.Errorf("After(20ms) fired at %v", d)
	}
	if r.Monotonic() < 20*time.Millisecond {
		t.Errorf("monotonic %v after a 20 ms wait", r.Monotonic())
	}
}
