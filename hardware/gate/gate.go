// Package gate drives a lane's gate: the relay that opens the turnstile or
// door, the green and red lamps, the buzzer, and the fire-alarm input that
// holds the gate open. It works on small pin interfaces (gpio drives them
// on a Linux GPIO character device, hardwaretest fakes them). The daemon
// imports it and turns each passage's decision into Pass, Refuse or Refer.
//
// Signals:
//
//   - Pass energises the relay for Config.Pulse and lights the green lamp
//     for Config.Lamp. A Pass while a pulse runs extends it, so people
//     passing one after another keep the gate open without a gap.
//   - Refuse lights the red lamp for Lamp and sounds the buzzer for Buzz.
//   - Refer (a second check) lights the red lamp for Lamp and does not
//     sound the buzzer: red tells the person not to pass; the buzzer is
//     kept for refusals, so the guard hears which is which, and the
//     guard's screen says what the second check is. Both lamps lit at once
//     would read as a fault, and green as a pass.
//
// Neither Refuse nor Refer touches the relay: a pulse already running for
// the person before runs its course. Each decision replaces the lamps and
// the buzzer of the one before.
//
// While the fire alarm is active the relay is held energised whatever the
// decisions; lamps and buzzer still show them. When it clears the relay
// rests unless a pulse is running. A fire-alarm input that cannot be read
// keeps its last known state: opening every gate on a wiring fault would
// let anyone through.
//
// A pin write that fails is returned, counted in Status, logged once per
// distinct error, and tried again a second later.
//
// On shutdown (Run's context ends, or Close) the relay takes the configured
// fail state, energised with FailOpen (fail-safe, for escape routes),
// released otherwise (fail-secure), and lamps and buzzer go off. What the
// gate does when the box loses power is the wiring's: a fail-safe
// installation uses a relay whose rest state holds the gate open.
package gate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/checkpointd/checkpoint/internal/clock"
)

// PinOut is an output pin: a relay, a lamp, a buzzer. Active means
// energised, lit or sounding; active-low wiring is the driver's business.
type PinOut interface {
	Out(active bool) error
}

// PinIn is an input pin: the fire-alarm contact. Watch blocks until ctx
// ends, calling changed on each edge, serially. An implementation may also
// call changed with the current state when the watch starts, so that an
// edge between a Read and the Watch is not lost; the gate ignores a state
// it already has.
type PinIn interface {
	Read() (bool, error)
	Watch(ctx context.Context, changed func(active bool)) error
}

// Config says how long each signal lasts and what shutdown leaves.
type Config struct {
	Pulse    time.Duration // relay pulse on pass; 0 or less: 800 ms
	Lamp     time.Duration // how long a decision's lamp stays lit; 0 or less: 2 s
	Buzz     time.Duration // buzzer on refuse; 0: 300 ms; negative: never
	FailOpen bool          // on shutdown hold the gate open (fail-safe) rather than closed (fail-secure)

	// OnAlarm, if set, is told each change of the fire alarm and when the
	// gate saw it, so that the daemon can record it. It is called from
	// Run's goroutine or the pin's watcher, outside the gate's lock.
	OnAlarm func(active bool, at time.Time)
}

// Pins are the gate's pins. Only Relay is required. The gate takes the
// outputs to be inactive when it starts (gpio.Output with initial false).
type Pins struct {
	Relay              PinOut
	Green, Red, Buzzer PinOut // optional, nil: none
	FireAlarm          PinIn  // optional
}

// Status is what the gate has done, for metrics.
type Status struct {
	Pulses     int64     `json:"pulses"`
	Refusals   int64     `json:"refusals"`
	Referrals  int64     `json:"referrals"`
	Alarm      bool      `json:"alarm"`
	AlarmSince time.Time `json:"alarm_since,omitzero"`
	Errors     int64     `json:"errors"`
	LastError  string    `json:"last_error,omitempty"`
}

// ErrClosed is returned by a decision after Close or the end of Run.
var ErrClosed = errors.New("gate: closed")

const (
	defaultPulse = 800 * time.Millisecond
	defaultLamp  = 2 * time.Second
	defaultBuzz  = 300 * time.Millisecond
	retryAfter   = time.Second // a failed pin write, or a watch that ended
	maxLogged    = 64          // distinct errors logged; more are only counted
)

// output is one pin and what the gate last wrote to it successfully.
type output struct {
	name  string
	pin   PinOut
	on    bool
	known bool // false after a failed write: write it again
}

// Gate drives one lane's gate. It is safe for concurrent use.
type Gate struct {
	cfg  Config
	pins Pins
	clk  clock.Clock
	log  *slog.Logger
	done chan struct{} // closed by Close: pending timers give up
	woke func()        // tests: called after each timed apply

	mu                     sync.Mutex
	relay, green, red, buz output
	pulseUntil             time.Time
	greenUntil, redUntil   time.Time
	buzzUntil              time.Time
	alarm                  bool
	closed                 bool
	retrying               bool
	status                 Status
	logged                 map[string]bool
}

// New returns a gate on pins. A nil log discards.
func New(cfg Config, pins Pins, clk clock.Clock, log *slog.Logger) *Gate {
	if cfg.Pulse <= 0 {
		cfg.Pulse = defaultPulse
	}
	if cfg.Lamp <= 0 {
		cfg.Lamp = defaultLamp
	}
	if cfg.Buzz == 0 {
		cfg.Buzz = defaultBuzz
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Gate{
		cfg:    cfg,
		pins:   pins,
		clk:    clk,
		log:    log.With("component", "gate"),
		done:   make(chan struct{}),
		relay:  output{name: "relay", pin: pins.Relay, known: true},
		green:  output{name: "green lamp", pin: pins.Green, known: true},
		red:    output{name: "red lamp", pin: pins.Red, known: true},
		buz:    output{name: "buzzer", pin: pins.Buzzer, known: true},
		logged: map[string]bool{},
	}
}

// Pass opens the gate for one person: the relay for Pulse, extending a
// pulse that runs, and the green lamp for Lamp. It returns once the relay
// is energised; the release is scheduled on the clock.
func (g *Gate) Pass() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return ErrClosed
	}
	g.status.Pulses++
	now := g.clk.Now()
	g.pulseUntil = now.Add(g.cfg.Pulse)
	g.greenUntil, g.redUntil, g.buzzUntil = now.Add(g.cfg.Lamp), time.Time{}, time.Time{}
	g.wakeAfter(g.cfg.Pulse)
	g.wakeAfter(g.cfg.Lamp)
	return g.apply(now)
}

// Refuse shows a refusal: the red lamp for Lamp and the buzzer for Buzz.
func (g *Gate) Refuse() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return ErrClosed
	}
	g.status.Refusals++
	now := g.clk.Now()
	g.greenUntil, g.redUntil, g.buzzUntil = time.Time{}, now.Add(g.cfg.Lamp), time.Time{}
	g.wakeAfter(g.cfg.Lamp)
	if g.cfg.Buzz > 0 {
		g.buzzUntil = now.Add(g.cfg.Buzz)
		g.wakeAfter(g.cfg.Buzz)
	}
	return g.apply(now)
}

// Refer sends the person to a second check: the red lamp for Lamp, no
// buzzer, the gate stays shut.
func (g *Gate) Refer() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return ErrClosed
	}
	g.status.Referrals++
	now := g.clk.Now()
	g.greenUntil, g.redUntil, g.buzzUntil = time.Time{}, now.Add(g.cfg.Lamp), time.Time{}
	g.wakeAfter(g.cfg.Lamp)
	return g.apply(now)
}

// Run watches the fire alarm, if there is one, until ctx ends; then it
// puts the gate in its fail state (see Close) and returns nil. A read or
// watch that fails is counted, logged and tried again a second later.
func (g *Gate) Run(ctx context.Context) error {
	if in := g.pins.FireAlarm; in != nil {
		for ctx.Err() == nil {
			if active, err := in.Read(); err != nil {
				g.alarmFailed(err)
			} else {
				g.setAlarm(active)
			}
			err := in.Watch(ctx, g.setAlarm)
			if ctx.Err() != nil {
				break
			}
			if err == nil {
				err = errors.New("watch ended")
			}
			g.alarmFailed(err)
			select {
			case <-ctx.Done():
			case <-g.clk.After(retryAfter):
			}
		}
	}
	<-ctx.Done()
	g.Close() // errors are counted and logged
	return nil
}

// Close puts the gate in its fail state: the relay energised with
// FailOpen, released otherwise, lamps and buzzer off. Decisions after it
// return ErrClosed. It does not close the pins, which the caller owns.
func (g *Gate) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.closed {
		g.closed = true
		close(g.done)
	}
	return errors.Join(
		g.set(&g.relay, g.cfg.FailOpen),
		g.set(&g.green, false),
		g.set(&g.red, false),
		g.set(&g.buz, false),
	)
}

// Status returns the counters and the alarm state.
func (g *Gate) Status() Status {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.status
}

// setAlarm records a state of the fire alarm and tells OnAlarm of a change.
func (g *Gate) setAlarm(active bool) {
	g.mu.Lock()
	if g.closed || active == g.alarm {
		g.mu.Unlock()
		return
	}
	now := g.clk.Now()
	g.alarm = active
	g.status.Alarm = active
	if active {
		g.status.AlarmSince = now
		g.log.Warn("fire alarm: gate held open")
	} else {
		g.status.AlarmSince = time.Time{}
		g.log.Info("fire alarm cleared")
	}
	g.apply(now) // errors are counted, logged and retried
	g.mu.Unlock()
	if g.cfg.OnAlarm != nil {
		g.cfg.OnAlarm(active, now)
	}
}

// wakeAfter applies the outputs again once d has passed. With g.mu held.
func (g *Gate) wakeAfter(d time.Duration) {
	c := g.clk.After(d)
	go func() {
		select {
		case <-c:
		case <-g.done:
			return
		}
		g.mu.Lock()
		g.apply(g.clk.Now())
		g.mu.Unlock()
		if g.woke != nil {
			g.woke()
		}
	}()
}

// apply writes to each pin what it should show at now, and schedules a
// retry if a write fails. With g.mu held.
func (g *Gate) apply(now time.Time) error {
	if g.closed {
		return nil
	}
	err := errors.Join(
		g.set(&g.relay, g.alarm || now.Before(g.pulseUntil)),
		g.set(&g.green, now.Before(g.greenUntil)),
		g.set(&g.red, now.Before(g.redUntil)),
		g.set(&g.buz, now.Before(g.buzzUntil)),
	)
	if err != nil && !g.retrying {
		g.retrying = true
		c := g.clk.After(retryAfter)
		go func() {
			select {
			case <-c:
			case <-g.done:
				return
			}
			g.mu.Lock()
			g.retrying = false
			g.apply(g.clk.Now())
			g.mu.Unlock()
			if g.woke != nil {
				g.woke()
			}
		}()
	}
	return err
}

// set writes active to o unless it already shows it. With g.mu held.
func (g *Gate) set(o *output, active bool) error {
	if o.pin == nil || (o.known && o.on == active) {
		return nil
	}
	if err := o.pin.Out(active); err != nil {
		o.known = false
		return g.fail(o.name, err)
	}
	o.on, o.known = active, true
	return nil
}

// fail counts a pin's error and logs it the first time it is seen. With
// g.mu held.
func (g *Gate) fail(pin string, err error) error {
	err = fmt.Errorf("gate: %s: %w", pin, err)
	msg := err.Error()
	g.status.Errors++
	g.status.LastError = msg
	if !g.logged[msg] && len(g.logged) < maxLogged {
		g.logged[msg] = true
		g.log.Error("pin failed", "err", err)
	}
	return err
}

// alarmFailed counts an error of the fire-alarm input.
func (g *Gate) alarmFailed(err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.fail("fire alarm", err)
}
