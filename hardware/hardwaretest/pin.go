package hardwaretest

import (
	"context"
	"sync"
	"time"

	"github.com/checkpointd/checkpoint/internal/clock"
)

// Change is one write to an output pin.
type Change struct {
	At     time.Time // the clock's time of the write
	Active bool
}

// Pin is a fake output pin (gate.PinOut). It records every write that
// succeeded, with the clock's time, and fails on cue. It is safe for
// concurrent use.
type Pin struct {
	clk clock.Clock

	mu      sync.Mutex
	active  bool
	changes []Change
	err     error
	changed chan struct{} // closed and replaced at each write
}

// NewPin returns an inactive pin that stamps writes with clk's time.
func NewPin(clk clock.Clock) *Pin {
	return &Pin{clk: clk, changed: make(chan struct{})}
}

// Out sets the pin, or returns the error set by Fail.
func (p *Pin) Out(active bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return p.err
	}
	p.active = active
	p.changes = append(p.changes, Change{At: p.clk.Now(), Active: active})
	close(p.changed)
	p.changed = make(chan struct{})
	return nil
}

// Fail makes every Out return err from now on; nil makes them work again.
func (p *Pin) Fail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.err = err
}

// Active tells the pin's state.
func (p *Pin) Active() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.active
}

// Changes returns the writes so far, in order.
func (p *Pin) Changes() []Change {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Change(nil), p.changes...)
}

// Await waits until the pin is in state active, or ctx ends.
func (p *Pin) Await(ctx context.Context, active bool) error {
	for {
		p.mu.Lock()
		now, changed := p.active, p.changed
		p.mu.Unlock()
		if now == active {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// InputPin is a fake input pin (gate.PinIn) whose state the test sets.
// Like the gpio driver, Watch reports the current state once when it
// starts, then each change. It is safe for concurrent use.
type InputPin struct {
	deliver sync.Mutex // held while callbacks run: serial, none after Watch returns

	mu       sync.Mutex
	active   bool
	readErr  error
	watchErr error
	next     int
	watchers map[int]func(bool)
	watched  chan struct{} // closed and replaced when a Watch starts
}

// NewInputPin returns an input pin in state active.
func NewInputPin(active bool) *InputPin {
	return &InputPin{active: active, watchers: map[int]func(bool){}, watched: make(chan struct{})}
}

// Set changes the state; on a change each running Watch's callback is
// called before Set returns.
func (p *InputPin) Set(active bool) {
	p.deliver.Lock()
	defer p.deliver.Unlock()
	p.mu.Lock()
	if p.active == active {
		p.mu.Unlock()
		return
	}
	p.active = active
	fns := make([]func(bool), 0, len(p.watchers))
	for _, fn := range p.watchers {
		fns = append(fns, fn)
	}
	p.mu.Unlock()
	for _, fn := range fns {
		fn(active)
	}
}

// FailRead makes Read return err from now on; nil makes it work again.
func (p *InputPin) FailRead(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.readErr = err
}

// FailWatch makes the next Watch return err at once.
func (p *InputPin) FailWatch(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.watchErr = err
}

// Read returns the state, or the error set by FailRead.
func (p *InputPin) Read() (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.readErr != nil {
		return false, p.readErr
	}
	return p.active, nil
}

// Watch calls changed with the current state, then on each change, until
// ctx ends; then it returns nil.
func (p *InputPin) Watch(ctx context.Context, changed func(active bool)) error {
	p.deliver.Lock()
	p.mu.Lock()
	if err := p.watchErr; err != nil {
		p.watchErr = nil
		p.mu.Unlock()
		p.deliver.Unlock()
		return err
	}
	id := p.next
	p.next++
	p.watchers[id] = changed
	active := p.active
	close(p.watched)
	p.watched = make(chan struct{})
	p.mu.Unlock()
	changed(active)
	p.deliver.Unlock()

	<-ctx.Done()
	p.deliver.Lock()
	p.mu.Lock()
	delete(p.watchers, id)
	p.mu.Unlock()
	p.deliver.Unlock()
	return nil
}

// Watching returns how many Watch calls are running.
func (p *InputPin) Watching() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.watchers)
}

// AwaitWatch waits until at least n Watch calls are running, or ctx ends.
func (p *InputPin) AwaitWatch(ctx context.Context, n int) error {
	for {
		p.mu.Lock()
		running, watched := len(p.watchers), p.watched
		p.mu.Unlock()
		if running >= n {
			return nil
		}
		select {
		case <-watched:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
