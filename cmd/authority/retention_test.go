package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/checkpointd/checkpoint/internal/clock/clocktest"
)

// fakeDropper records the cut-offs it is asked for, and fails when told.
type fakeDropper struct {
	mu   sync.Mutex
	cuts []time.Time
	fail error
}

func (f *fakeDropper) DropEventsBefore(before time.Time) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cuts = append(f.cuts, before)
	return 3, f.fail
}

func (f *fakeDropper) calls() []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Time(nil), f.cuts...)
}

// TestKeepEvents: serve's retention removes what is older than
// --keep-events at once, then every hour by the clock, keeps going after
// a failure (logged), and stops when its context ends.
func TestKeepEvents(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
	clk := clocktest.New(t0)
	db := &fakeDropper{fail: errors.New("disk on fire")}
	var logs bytes.Buffer
	var logMu sync.Mutex
	log := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		logMu.Lock()
		defer logMu.Unlock()
		return logs.Write(p)
	}), nil))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	keep := 28 * 24 * time.Hour
	go func() {
		defer close(done)
		keepEvents(ctx, db, clk, keep, log)
	}()
	waitFor := func(n int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for clk.Waiters() == 0 || len(db.calls()) < n {
			if time.Now().After(deadline) {
				t.Fatalf("retention made %d calls, want %d", len(db.calls()), n)
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitFor(1)
	db.mu.Lock()
	db.fail = nil
	db.mu.Unlock()
	clk.Advance(30 * time.Minute)
	if n := len(db.calls()); n != 1 {
		t.Errorf("%d calls before the hour was up", n)
	}
	clk.Advance(30 * time.Minute)
	waitFor(2)
	cuts := db.calls()
	if want := []time.Time{t0.Add(-keep), t0.Add(time.Hour - keep)}; !cuts[0].Equal(want[0]) || !cuts[1].Equal(want[1]) {
		t.Errorf("cut-offs %v, want %v", cuts, want)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("retention did not stop when its context ended")
	}
	logMu.Lock()
	defer logMu.Unlock()
	if s := logs.String(); !strings.Contains(s, "removing old events failed") || !strings.Contains(s, "removed=3") {
		t.Errorf("log:\n%s", s)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
