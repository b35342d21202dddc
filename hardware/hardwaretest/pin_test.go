package hardwaretest

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/checkpointd/checkpoint/internal/clock/clocktest"
)

var t0 = time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)

// TestPin: writes are recorded with the clock's time, a failure on cue
// records nothing, Await sees a later write.
func TestPin(t *testing.T) {
	clk := clocktest.New(t0)
	p := NewPin(clk)
	if err := p.Out(true); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Second)
	errCue := errors.New("cue")
	p.Fail(errCue)
	if err := p.Out(false); !errors.Is(err, errCue) {
		t.Fatalf("Out after Fail: %v", err)
	}
	p.Fail(nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.Await(ctx, false) }()
	if err := p.Out(false); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Await: %v", err)
	}
	want := []Change{{t0, true}, {t0.Add(time.Second), false}}
	if got := p.Changes(); !reflect.DeepEqual(got, want) || p.Active() {
		t.Errorf("changes %v, active %v; want %v, inactive", got, p.Active(), want)
	}
}

// TestInputPin: Watch reports the state at its start, then each change
// Set makes, until its context ends; a failure on cue.
func TestInputPin(t *testing.T) {
	p := NewInputPin(true)
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan bool, 8)
	done := make(chan error, 1)
	go func() { done <- p.Watch(ctx, func(active bool) { got <- active }) }()
	wait, stop := context.WithTimeout(context.Background(), 10*time.Second)
	defer stop()
	if err := p.AwaitWatch(wait, 1); err != nil {
		t.Fatal(err)
	}
	p.Set(true) // no change: no call
	p.Set(false)
	p.Set(true)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Watch: %v", err)
	}
	p.Set(false) // nobody watches
	close(got)
	var calls []bool
	for a := range got {
		calls = append(calls, a)
	}
	if want := []bool{true, false, true}; !reflect.DeepEqual(calls, want) {
		t.Errorf("callbacks %v, want %v", calls, want)
	}
	if a, err := p.Read(); a || err != nil || p.Watching() != 0 {
		t.Errorf("Read = %v, %v; watching %d", a, err, p.Watching())
	}
	errCue := errors.New("cue")
	p.FailRead(errCue)
	p.FailWatch(errCue)
	if _, err := p.Read(); !errors.Is(err, errCue) {
		t.Errorf("Read: %v", err)
	}
	if err := p.Watch(context.Background(), func(bool) {}); !errors.Is(err, errCue) {
		t.Errorf("Watch: %v", err)
	}
}
