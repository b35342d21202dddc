package scanner

import (
	"testing"
	"time"
)

func TestDebounce(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	d := newDebouncer(time.Second)
	steps := []struct {
		text string
		ms   int
		want bool
	}{
		{"A", 0, true},     // first sight
		{"A", 33, false},   // the next frame
		{"A", 900, false},  // still held
		{"B", 933, true},   // another phone: at once
		{"A", 1800, false}, // A never left for a whole second
		{"A", 1700, false}, // a frame decoded late
		{"A", 2900, true},  // gone for 1.1 s, back: a new event
		{"B", 2950, true},  // B gone for 2 s
		{"A", 2966, false},
	}
	for i, s := range steps {
		if got := d.seen(s.text, at(s.ms)); got != s.want {
			t.Errorf("step %d: %s at %d ms: event=%v, want %v", i, s.text, s.ms, got, s.want)
		}
	}
	if len(d.last) != 2 {
		t.Errorf("remembers %d codes, want 2", len(d.last))
	}
	d.seen("C", at(10_000))
	if len(d.last) != 1 {
		t.Errorf("after everything else left: remembers %d codes, want 1", len(d.last))
	}
}
