package gate_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/checkpointd/checkpoint/hardware/gate"
	"github.com/checkpointd/checkpoint/hardware/hardwaretest"
	"github.com/checkpointd/checkpoint/internal/clock/clocktest"
)

var t0 = time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)

// bound is how long a test waits for the gate's goroutines: a hang, not a
// speed.
const bound = 10 * time.Second

type rig struct {
	t     *testing.T
	clk   *clocktest.Fake
	pins  *hardwaretest.GatePins
	g     *gate.Gate
	woke  chan struct{}
	log   *lockedBuffer
	mu    sync.Mutex
	alarm []alarmCall
}

type alarmCall struct {
	active bool
	at     time.Time
}

func newRig(t *testing.T, cfg gate.Config) *rig {
	t.Helper()
	r := &rig{t: t, clk: clocktest.New(t0), woke: make(chan struct{}, 64), log: &lockedBuffer{}}
	r.pins = hardwaretest.NewGatePins(r.clk)
	cfg.OnAlarm = func(active bool, at time.Time) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.alarm = append(r.alarm, alarmCall{active, at})
	}
	r.g = gate.New(cfg, r.pins.Pins(), r.clk, slog.New(slog.NewTextHandler(r.log, nil)))
	gate.SetWoke(r.g, func() { r.woke <- struct{}{} })
	return r
}

// step moves the clock by d and waits for every timer it fires to act.
// (Only where no pin fails: a failed write adds a retry timer.)
func (r *rig) step(d time.Duration) {
	r.t.Helper()
	before := r.clk.Waiters()
	r.clk.Advance(d)
	for fired := before - r.clk.Waiters(); fired > 0; fired-- {
		select {
		case <-r.woke:
		case <-time.After(bound):
			r.t.Fatalf("a timer of the gate did not act within %v", bound)
		}
	}
}

func (r *rig) alarms() []alarmCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]alarmCall(nil), r.alarm...)
}

// run starts Run; the returned stop cancels it and checks it returned nil.
func (r *rig) run() (stop func()) {
	r.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.g.Run(ctx) }()
	r.awaitWatch()
	return func() {
		r.t.Helper()
		cancel()
		select {
		case err := <-done:
			if err != nil {
				r.t.Errorf("Run returned %v", err)
			}
		case <-time.After(bound):
			r.t.Fatalf("Run did not return within %v of its context ending", bound)
		}
	}
}

func (r *rig) awaitWatch() {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	if err := r.pins.FireAlarm.AwaitWatch(ctx, 1); err != nil {
		r.t.Fatalf("Run does not watch the fire alarm: %v", err)
	}
}

func on(d time.Duration) hardwaretest.Change { return hardwaretest.Change{At: t0.Add(d), Active: true} }
func off(d time.Duration) hardwaretest.Change {
	return hardwaretest.Change{At: t0.Add(d), Active: false}
}

func wantChanges(t *testing.T, name string, p *hardwaretest.Pin, want ...hardwaretest.Change) {
	t.Helper()
	if got := p.Changes(); !reflect.DeepEqual(got, want) && !(len(got) == 0 && len(want) == 0) {
		t.Errorf("%s: changes %v, want %v", name, got, want)
	}
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestPass: the relay is energised for exactly Pulse on the clock, the
// green lamp lit for exactly Lamp; red and buzzer stay off.
func TestPass(t *testing.T) {
	tests := []struct {
		name        string
		cfg         gate.Config
		pulse, lamp time.Duration
	}{
		{"defaults", gate.Config{}, 800 * time.Millisecond, 2 * time.Second},
		{"lamp shorter than pulse", gate.Config{Pulse: 3 * time.Second, Lamp: time.Second}, 3 * time.Second, time.Second},
		{"same", gate.Config{Pulse: time.Second, Lamp: time.Second}, time.Second, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, tt.cfg)
			if err := r.g.Pass(); err != nil {
				t.Fatal(err)
			}
			if !r.pins.Relay.Active() || !r.pins.Green.Active() {
				t.Fatal("Pass returned before the relay and the green lamp were on")
			}
			first, last := min(tt.pulse, tt.lamp), max(tt.pulse, tt.lamp)
			r.step(first - time.Nanosecond)
			if !r.pins.Relay.Active() || !r.pins.Green.Active() {
				t.Fatalf("off before %v", first)
			}
			r.step(time.Nanosecond)
			r.step(last - first)
			wantChanges(t, "relay", r.pins.Relay, on(0), off(tt.pulse))
			wantChanges(t, "green", r.pins.Green, on(0), off(tt.lamp))
			wantChanges(t, "red", r.pins.Red)
			wantChanges(t, "buzzer", r.pins.Buzzer)
			if s := r.g.Status(); s.Pulses != 1 || s.Refusals != 0 || s.Referrals != 0 || s.Errors != 0 {
				t.Errorf("status %+v", s)
			}
		})
	}
}

// TestPassExtends: a second Pass during a pulse keeps the relay energised
// without a gap until Pulse after the second.
func TestPassExtends(t *testing.T) {
	r := newRig(t, gate.Config{})
	if err := r.g.Pass(); err != nil {
		t.Fatal(err)
	}
	r.step(500 * time.Millisecond)
	if err := r.g.Pass(); err != nil {
		t.Fatal(err)
	}
	r.step(300 * time.Millisecond) // the first pulse's end
	wantChanges(t, "relay at 800 ms", r.pins.Relay, on(0))
	r.step(500*time.Millisecond - time.Nanosecond)
	wantChanges(t, "relay before 1300 ms", r.pins.Relay, on(0))
	r.step(time.Nanosecond)
	r.step(1200 * time.Millisecond)
	wantChanges(t, "relay", r.pins.Relay, on(0), off(1300*time.Millisecond))
	wantChanges(t, "green", r.pins.Green, on(0), off(2500*time.Millisecond))
	if s := r.g.Status(); s.Pulses != 2 {
		t.Errorf("Pulses = %d, want 2", s.Pulses)
	}
}

// TestRefuse: the red lamp for Lamp, the buzzer for Buzz (never when
// negative); the relay is never touched.
func TestRefuse(t *testing.T) {
	tests := []struct {
		name string
		buzz time.Duration
		want []hardwaretest.Change
	}{
		{"default buzz", 0, []hardwaretest.Change{on(0), off(300 * time.Millisecond)}},
		{"long buzz", time.Second, []hardwaretest.Change{on(0), off(time.Second)}},
		{"buzz longer than lamp", 3 * time.Second, []hardwaretest.Change{on(0), off(3 * time.Second)}},
		{"never", -1, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, gate.Config{Buzz: tt.buzz})
			if err := r.g.Refuse(); err != nil {
				t.Fatal(err)
			}
			if !r.pins.Red.Active() || r.pins.Buzzer.Active() != (tt.want != nil) {
				t.Fatal("Refuse returned before the red lamp and the buzzer were on")
			}
			r.step(300 * time.Millisecond)
			r.step(700 * time.Millisecond)
			r.step(time.Second)
			r.step(time.Second)
			wantChanges(t, "red", r.pins.Red, on(0), off(2*time.Second))
			wantChanges(t, "buzzer", r.pins.Buzzer, tt.want...)
			wantChanges(t, "relay", r.pins.Relay)
			wantChanges(t, "green", r.pins.Green)
			if s := r.g.Status(); s.Refusals != 1 || s.Pulses != 0 {
				t.Errorf("status %+v", s)
			}
		})
	}
}

// TestRefer: the red lamp for Lamp, no buzzer, no relay, no green.
func TestRefer(t *testing.T) {
	r := newRig(t, gate.Config{})
	if err := r.g.Refer(); err != nil {
		t.Fatal(err)
	}
	r.step(2 * time.Second)
	wantChanges(t, "red", r.pins.Red, on(0), off(2*time.Second))
	wantChanges(t, "buzzer", r.pins.Buzzer)
	wantChanges(t, "relay", r.pins.Relay)
	wantChanges(t, "green", r.pins.Green)
	if s := r.g.Status(); s.Referrals != 1 || s.Refusals != 0 || s.Pulses != 0 {
		t.Errorf("status %+v", s)
	}
}

// TestDecisionReplacesSignals: a refusal during the previous person's
// pulse leaves the pulse running but replaces the green lamp by red; a
// pass after a refusal silences the buzzer and puts out red.
func TestDecisionReplacesSignals(t *testing.T) {
	r := newRig(t, gate.Config{})
	if err := r.g.Pass(); err != nil {
		t.Fatal(err)
	}
	r.step(100 * time.Millisecond)
	if err := r.g.Refuse(); err != nil {
		t.Fatal(err)
	}
	r.step(100 * time.Millisecond)
	if err := r.g.Pass(); err != nil {
		t.Fatal(err)
	}
	r.step(600 * time.Millisecond)
	r.step(200 * time.Millisecond)
	r.step(1200 * time.Millisecond)
	wantChanges(t, "relay", r.pins.Relay, on(0), off(1000*time.Millisecond))
	wantChanges(t, "green", r.pins.Green, on(0), off(100*time.Millisecond), on(200*time.Millisecond), off(2200*time.Millisecond))
	wantChanges(t, "red", r.pins.Red, on(100*time.Millisecond), off(200*time.Millisecond))
	wantChanges(t, "buzzer", r.pins.Buzzer, on(100*time.Millisecond), off(200*time.Millisecond))
}

// TestFireAlarm: while the alarm is active the relay is held energised
// across passes and refusals, lamps still show; when it clears the relay
// rests, or waits for a running pulse; OnAlarm gets each change and its
// time.
func TestFireAlarm(t *testing.T) {
	r := newRig(t, gate.Config{})
	stop := r.run()
	defer stop()
	alarm := r.pins.FireAlarm

	r.step(time.Second)
	alarm.Set(true)
	wantChanges(t, "relay on alarm", r.pins.Relay, on(time.Second))
	if s := r.g.Status(); !s.Alarm || !s.AlarmSince.Equal(t0.Add(time.Second)) {
		t.Errorf("status %+v, want the alarm since 1 s", s)
	}
	if err := r.g.Pass(); err != nil {
		t.Fatal(err)
	}
	r.step(time.Second) // the pulse ends
	if err := r.g.Refuse(); err != nil {
		t.Fatal(err)
	}
	r.step(2 * time.Second)
	wantChanges(t, "relay during the alarm", r.pins.Relay, on(time.Second))
	wantChanges(t, "green during the alarm", r.pins.Green, on(time.Second), off(2*time.Second))
	wantChanges(t, "red during the alarm", r.pins.Red, on(2*time.Second), off(4*time.Second))

	alarm.Set(false) // at 4 s, no pulse: the relay rests at once
	wantChanges(t, "relay after the alarm", r.pins.Relay, on(time.Second), off(4*time.Second))

	r.step(time.Second)
	alarm.Set(true) // at 5 s
	if err := r.g.Pass(); err != nil {
		t.Fatal(err)
	}
	r.step(500 * time.Millisecond)
	alarm.Set(false) // at 5.5 s, the pulse runs to 5.8 s
	r.step(300 * time.Millisecond)
	r.step(2 * time.Second)
	wantChanges(t, "relay", r.pins.Relay, on(time.Second), off(4*time.Second), on(5*time.Second), off(5800*time.Millisecond))

	want := []alarmCall{
		{true, t0.Add(time.Second)}, {false, t0.Add(4 * time.Second)},
		{true, t0.Add(5 * time.Second)}, {false, t0.Add(5500 * time.Millisecond)},
	}
	if got := r.alarms(); !reflect.DeepEqual(got, want) {
		t.Errorf("OnAlarm calls %v, want %v", got, want)
	}
	if s := r.g.Status(); s.Alarm || !s.AlarmSince.IsZero() || s.Pulses != 2 || s.Refusals != 1 {
		t.Errorf("status %+v", s)
	}
}

// TestFireAlarmAtStart: an alarm already active when Run starts holds the
// gate open and is reported.
func TestFireAlarmAtStart(t *testing.T) {
	r := newRig(t, gate.Config{})
	r.pins.FireAlarm.Set(true)
	stop := r.run()
	defer stop()
	wantChanges(t, "relay", r.pins.Relay, on(0))
	if got, want := r.alarms(), []alarmCall{{true, t0}}; !reflect.DeepEqual(got, want) {
		t.Errorf("OnAlarm calls %v, want %v", got, want)
	}
}

// TestShutdown: when Run's context ends, or on Close, the relay takes the
// fail state, lamps and buzzer go off, later decisions are refused and
// pending timers change nothing.
func TestShutdown(t *testing.T) {
	for _, failOpen := range []bool{false, true} {
		for _, how := range []string{"run", "close"} {
			for _, alarm := range []bool{false, true} {
				name := how
				if failOpen {
					name += "/fail open"
				} else {
					name += "/fail secure"
				}
				if alarm {
					name += "/alarm"
				}
				t.Run(name, func(t *testing.T) {
					r := newRig(t, gate.Config{FailOpen: failOpen, Buzz: time.Second})
					stop := func() {
						if err := r.g.Close(); err != nil {
							t.Errorf("Close: %v", err)
						}
					}
					if how == "run" {
						stop = r.run()
					}
					if alarm {
						r.pins.FireAlarm.Set(true)
					}
					if err := r.g.Pass(); err != nil {
						t.Fatal(err)
					}
					if err := r.g.Refuse(); err != nil {
						t.Fatal(err)
					}
					stop()
					pins := map[string]*hardwaretest.Pin{"green": r.pins.Green, "red": r.pins.Red, "buzzer": r.pins.Buzzer}
					for name, p := range pins {
						if p.Active() {
							t.Errorf("%s on after shutdown", name)
						}
					}
					if got := r.pins.Relay.Active(); got != failOpen {
						t.Errorf("relay energised %v after shutdown, want %v", got, failOpen)
					}
					for _, decide := range []func() error{r.g.Pass, r.g.Refuse, r.g.Refer} {
						if err := decide(); !errors.Is(err, gate.ErrClosed) {
							t.Errorf("a decision after shutdown: %v, want ErrClosed", err)
						}
					}
					n := len(r.pins.Relay.Changes())
					r.pins.FireAlarm.Set(!alarm)
					r.clk.Advance(time.Hour)
					if got := len(r.pins.Relay.Changes()); got != n || r.pins.Relay.Active() != failOpen {
						t.Errorf("relay changed after shutdown: %v", r.pins.Relay.Changes())
					}
				})
			}
		}
	}
}

// TestPinErrors: a pin's error is returned wrapped, naming the pin,
// counted at each failure and logged once per distinct error; the other
// pins still work and the failed write is tried again a second later.
func TestPinErrors(t *testing.T) {
	r := newRig(t, gate.Config{Pulse: 5 * time.Second})
	errStuck := errors.New("line stuck")
	r.pins.Relay.Fail(errStuck)

	for i := 1; i <= 3; i++ {
		err := r.g.Pass()
		if !errors.Is(err, errStuck) || !strings.Contains(err.Error(), "relay") {
			t.Fatalf("Pass %d: %v, want the relay's error", i, err)
		}
		if s := r.g.Status(); s.Errors != int64(i) || s.LastError != err.Error() {
			t.Errorf("after %d failures: status %+v", i, s)
		}
	}
	if !r.pins.Green.Active() {
		t.Error("the green lamp is off: a failing relay stopped the others")
	}
	if n := strings.Count(r.log.String(), "line stuck"); n != 1 {
		t.Errorf("logged %d times, want once:\n%s", n, r.log)
	}
	if !strings.Contains(r.log.String(), "component=gate") {
		t.Errorf("log without the component:\n%s", r.log)
	}

	r.pins.Buzzer.Fail(errors.New("buzzer gone"))
	if err := r.g.Refuse(); err == nil || !strings.Contains(err.Error(), "buzzer") {
		t.Errorf("Refuse: %v, want the buzzer's error", err)
	}
	if n := strings.Count(r.log.String(), "pin failed"); n != 2 {
		t.Errorf("%d errors logged, want 2 (one per distinct error):\n%s", n, r.log)
	}

	// Repaired: the retry a second later energises the relay for the
	// rest of the pulse and silences nothing it should not.
	r.pins.Relay.Fail(nil)
	r.pins.Buzzer.Fail(nil)
	r.clk.Advance(time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	if err := r.pins.Relay.Await(ctx, true); err != nil {
		t.Fatalf("the relay was not retried: %v", err)
	}
	if got := r.pins.Relay.Changes(); !reflect.DeepEqual(got, []hardwaretest.Change{on(time.Second)}) {
		t.Errorf("relay changes %v, want on at 1 s", got)
	}
}

// TestFireAlarmErrors: a fire alarm that cannot be read or watched is
// counted and logged; Run tries again a second later and then follows it.
func TestFireAlarmErrors(t *testing.T) {
	r := newRig(t, gate.Config{})
	r.pins.FireAlarm.FailRead(errors.New("read failed"))
	r.pins.FireAlarm.FailWatch(errors.New("watch failed"))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.g.Run(ctx) }()

	deadline := time.Now().Add(bound)
	for r.g.Status().Errors < 2 || r.clk.Waiters() < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("Run did not fail and wait: status %+v", r.g.Status())
		}
		time.Sleep(time.Millisecond)
	}
	if s := r.g.Status(); !strings.Contains(s.LastError, "fire alarm: watch failed") {
		t.Errorf("status %+v", s)
	}
	r.pins.FireAlarm.FailRead(nil)
	r.pins.FireAlarm.Set(true) // while nobody watches
	r.clk.Advance(time.Second)
	r.awaitWatch()
	if !r.pins.Relay.Active() {
		t.Error("the alarm read after the retry does not hold the gate open")
	}
	for _, w := range []string{"read failed", "watch failed"} {
		if n := strings.Count(r.log.String(), w); n != 1 {
			t.Errorf("%q logged %d times, want once", w, n)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run returned %v", err)
	}
}

// TestOptionalPinsAbsent: a gate with only a relay decides, runs and
// closes without errors.
func TestOptionalPinsAbsent(t *testing.T) {
	clk := clocktest.New(t0)
	relay := hardwaretest.NewPin(clk)
	g := gate.New(gate.Config{FailOpen: true}, gate.Pins{Relay: relay}, clk, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	for _, decide := range []func() error{g.Pass, g.Refuse, g.Refer} {
		if err := decide(); err != nil {
			t.Fatal(err)
		}
	}
	clk.Advance(3 * time.Second)
	ctx2, cancel2 := context.WithTimeout(context.Background(), bound)
	defer cancel2()
	if err := relay.Await(ctx2, false); err != nil {
		t.Fatalf("the pulse did not end: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if !relay.Active() {
		t.Error("FailOpen: the relay is not energised after Run")
	}
	if s := g.Status(); s.Errors != 0 || s.Pulses != 1 || s.Refusals != 1 || s.Referrals != 1 {
		t.Errorf("status %+v", s)
	}
}

// TestConcurrent: lanes deciding while the alarm toggles and time passes;
// for the race detector, and the counters add up.
func TestConcurrent(t *testing.T) {
	r := newRig(t, gate.Config{})
	gate.SetWoke(r.g, nil)
	stop := r.run()
	var wg sync.WaitGroup
	const n = 200
	for _, decide := range []func() error{r.g.Pass, r.g.Refuse, r.g.Refer} {
		wg.Go(func() {
			for range n {
				if err := decide(); err != nil {
					t.Error(err)
					return
				}
				_ = r.g.Status()
			}
		})
	}
	wg.Go(func() {
		for i := range n {
			r.pins.FireAlarm.Set(i%2 == 0)
			r.clk.Advance(100 * time.Millisecond)
		}
	})
	wg.Wait()
	stop()
	if s := r.g.Status(); s.Pulses != n || s.Refusals != n || s.Referrals != n || s.Errors != 0 {
		t.Errorf("status %+v", s)
	}
	if r.pins.Relay.Active() {
		t.Error("fail secure: the relay is energised after Run")
	}
}
