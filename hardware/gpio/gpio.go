// Package gpio drives single lines of a Linux GPIO character device
// (/dev/gpiochipN) with go-gpiocdev: output lines for the gate's relay,
// lamps and buzzer, an input line for the fire-alarm contact. Values are
// active states; active-low wiring is set when the line is requested. The
// daemon imports it and hands the lines to hardware/gate.
package gpio

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/warthog618/go-gpiocdev"
)

// consumer labels the lines this process holds (gpioinfo shows it).
const consumer = "checkpointd"

// Out is an output line.
type Out struct {
	name string
	line *gpiocdev.Line
}

// Output requests line offset of chip ("gpiochip0" or a /dev path) as an
// output, starting active or not as initial says.
func Output(chip string, offset int, activeLow bool, initial bool) (*Out, error) {
	name := lineName(chip, offset)
	if err := check(chip, offset); err != nil {
		return nil, fmt.Errorf("gpio: %s: %w", name, err)
	}
	l, err := gpiocdev.RequestLine(chip, offset, gpiocdev.WithConsumer(consumer),
		gpiocdev.LevelOption(activeLow), gpiocdev.AsOutput(value(initial)))
	if err != nil {
		return nil, fmt.Errorf("gpio: %s: %w", name, err)
	}
	return &Out{name: name, line: l}, nil
}

// Out sets the line active or inactive.
func (o *Out) Out(active bool) error {
	if err := o.line.SetValue(value(active)); err != nil {
		return fmt.Errorf("gpio: %s: %w", o.name, err)
	}
	return nil
}

// Close releases the line.
func (o *Out) Close() error { return closeLine(o.name, o.line) }

// In is an input line with edge detection on both edges.
type In struct {
	name string
	line *gpiocdev.Line

	mu      sync.Mutex // held while a callback runs
	watches map[int]*watch
	next    int
}

type watch struct {
	changed func(bool)
	edged   bool // an edge has been reported since the watch started
}

// Input requests line offset of chip as an input reporting both edges.
func Input(chip string, offset int, activeLow bool) (*In, error) {
	name := lineName(chip, offset)
	if err := check(chip, offset); err != nil {
		return nil, fmt.Errorf("gpio: %s: %w", name, err)
	}
	in := &In{name: name, watches: map[int]*watch{}}
	l, err := gpiocdev.RequestLine(chip, offset, gpiocdev.WithConsumer(consumer),
		gpiocdev.LevelOption(activeLow), gpiocdev.WithBothEdges, gpiocdev.WithEventHandler(in.event))
	if err != nil {
		return nil, fmt.Errorf("gpio: %s: %w", name, err)
	}
	in.line = l
	return in, nil
}

// event hands an edge to the running watches, on gpiocdev's goroutine.
func (in *In) event(e gpiocdev.LineEvent) {
	in.mu.Lock()
	defer in.mu.Unlock()
	for _, w := range in.watches {
		w.edged = true
		w.changed(e.Type == gpiocdev.LineEventRisingEdge)
	}
}

// Read returns whether the line is active.
func (in *In) Read() (bool, error) {
	v, err := in.line.Value()
	if err != nil {
		return false, fmt.Errorf("gpio: %s: %w", in.name, err)
	}
	return v == 1, nil
}

// Watch calls changed with the line's state once it watches, so that no
// edge since an earlier Read is lost, then on each edge, serially, until
// ctx ends; then it returns nil. changed must not call Close.
func (in *In) Watch(ctx context.Context, changed func(active bool)) error {
	w := &watch{changed: changed}
	in.mu.Lock()
	id := in.next
	in.next++
	in.watches[id] = w
	in.mu.Unlock()
	defer func() {
		in.mu.Lock()
		delete(in.watches, id)
		in.mu.Unlock()
	}()
	// Read without the lock: Close holds the line while it waits for a
	// callback. If an edge is reported meanwhile, it is the one to believe:
	// any later edge is reported too.
	active, err := in.Read()
	if err != nil {
		return err
	}
	in.mu.Lock()
	if !w.edged {
		changed(active)
	}
	in.mu.Unlock()
	<-ctx.Done()
	return nil
}

// Close releases the line; it waits for a running callback.
func (in *In) Close() error { return closeLine(in.name, in.line) }

func closeLine(name string, l *gpiocdev.Line) error {
	if err := l.Close(); err != nil && !errors.Is(err, gpiocdev.ErrClosed) {
		return fmt.Errorf("gpio: %s: %w", name, err)
	}
	return nil
}

func check(chip string, offset int) error {
	if chip == "" {
		return errors.New("no chip named")
	}
	if offset < 0 {
		return fmt.Errorf("negative line offset %d", offset)
	}
	return nil
}

func lineName(chip string, offset int) string {
	return fmt.Sprintf("%s line %d", chip, offset)
}

func value(active bool) int {
	if active {
		return 1
	}
	return 0
}
