package devio

import (
	"context"
	"testing"
	"time"

	"github.com/checkpointd/checkpoint/internal/clock/clocktest"
)

// TestBackoff: each wait is within its step, the steps double up to
// MaxBackoff, and Reset starts them again.
func TestBackoff(t *testing.T) {
	var b Backoff
	for _, step := range []time.Duration{250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second} {
		if w := b.Next(); w <= 0 || w > step {
			t.Errorf("wait %v, want within (0, %v]", w, step)
		}
	}
	for range 20 {
		if w := b.Next(); w <= 0 || w > MaxBackoff {
			t.Errorf("wait %v past MaxBackoff", w)
		}
	}
	if b.step != MaxBackoff {
		t.Errorf("step %v, want MaxBackoff", b.step)
	}
	b.Reset()
	if w := b.Next(); w > MinBackoff {
		t.Errorf("wait %v after Reset", w)
	}
}

// TestSleep: a cancelled context ends the wait at once with false.
func TestSleep(t *testing.T) {
	clk := clocktest.New(time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan bool)
	go func() { done <- Sleep(ctx, clk, time.Second) }()
	for clk.Waiters() == 0 {
		time.Sleep(time.Millisecond)
	}
	clk.Advance(time.Second)
	if !<-done {
		t.Error("Sleep = false after the wait")
	}
	go func() { done <- Sleep(ctx, clk, time.Second) }()
	cancel()
	if <-done {
		t.Error("Sleep = true after cancel")
	}
}

// TestTally: the first is logged, then one summary a minute later with
// the count since; a clock stepped back does not silence the log.
func TestTally(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	var tl Tally
	for i, tc := range []struct {
		at  time.Duration
		n   uint64
		log bool
	}{
		{0, 1, true},
		{time.Second, 0, false},
		{59 * time.Second, 0, false},
		{time.Minute, 3, true},
		{time.Minute, 0, false},
		{-time.Hour, 2, true}, // stepped back
		{-time.Hour + time.Second, 0, false},
	} {
		if n, log := tl.Add(t0.Add(tc.at)); n != tc.n || log != tc.log {
			t.Errorf("%d: Add = %d, %v; want %d, %v", i, n, log, tc.n, tc.log)
		}
	}
}

// TestSplitter: lines end at CR, LF or CRLF; empty lines are left out; a
// line one byte over Max is reported once and skipped to its end.
func TestSplitter(t *testing.T) {
	s := Splitter{Max: 4}
	var got []string
	s.Split([]byte("ab\r\ncd\n\n\re\rabcd\nabcde123\r\nf"), func(line []byte, ok bool) {
		if !ok {
			got = append(got, "<long>")
			return
		}
		got = append(got, string(line))
	})
	want := []string{"ab", "cd", "e", "abcd", "<long>"}
	if len(got) != len(want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
	if s.Pending() != 1 {
		t.Errorf("pending %d, want 1 (f)", s.Pending())
	}
}
