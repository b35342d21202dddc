package daemon

import (
	"context"
	"fmt"
	stdsync "sync"
	"time"

	"github.com/checkpointd/checkpoint/hardware/gate"
	"github.com/checkpointd/checkpoint/hardware/gpio"
	"github.com/checkpointd/checkpoint/hardware/lines"
	"github.com/checkpointd/checkpoint/hardware/thermometer"
	"github.com/checkpointd/checkpoint/internal/config"
	"github.com/checkpointd/checkpoint/internal/metrics"
	"github.com/checkpointd/checkpoint/scanner"
	"github.com/checkpointd/checkpoint/store"
)

// Devices is how the daemon reaches the lanes' devices. Nil fields open
// the real ones; tests give fakes (hardware/hardwaretest).
type Devices struct {
	// Serial opens a thermometer's serial port.
	Serial thermometer.Opener
	// Lines opens a card reader or a handheld scanner.
	Lines func(cfg lines.Config) lines.Opener
	// Pins returns a gpio gate's pins, and what releases them.
	Pins func(lane string, g config.Gate) (gate.Pins, func(), error)
	// Player is the command that plays the lanes' prompts; empty: aplay.
	Player string
}

// newLane makes a lane's camera pipeline and devices from its
// configuration. Nothing is opened yet: each device opens (and reopens)
// itself when the lane starts.
func (d *Daemon) newLane(cfg config.Lane, w *shared) (*lane, error) {
	l := newLane(cfg, w.policy)
	cam := cfg.Camera
	l.pipe = scanner.NewPipeline(scanner.Config{
		Source:  scanner.SourceConfig{Device: cam.Device, Width: cam.Width, Height: cam.Height, FPS: cam.FPS, Exposure: cam.Exposure},
		Workers: cam.Workers,
		Decoder: scanner.DecoderOptions{Budget: time.Duration(cam.Budget)},
		Forget:  time.Duration(cam.Forget),
		Pace:    cam.Pace,
		Loop:    cam.Loop,
	}, d.clock, d.log.With("lane", cfg.Name), d.open)

	if t := cfg.Thermometer; t.Kind == "serial" {
		open := d.devices.Serial
		if open == nil {
			open = thermometer.OpenSerial
		}
		th, err := thermometer.New(thermometer.Config{Name: cfg.Name + "/thermometer", Port: t.Port, Baud: t.Baud,
			Protocol: t.Protocol, Pattern: t.Pattern, Query: t.Query, Silence: time.Duration(t.Silence)}, open, d.clock, d.log)
		if err != nil {
			return nil, laneError(cfg.Name, err)
		}
		l.thermDev, l.therm = th, th
	}
	for _, dev := range []struct {
		cfg  config.LineDevice
		name string
		into **lines.Reader
	}{{cfg.IDReader, "id_reader", &l.idReader}, {cfg.Scanner, "scanner", &l.handheld}} {
		if dev.cfg.Kind == "" {
			continue
		}
		lc := lines.Config{Name: cfg.Name + "/" + dev.name, Kind: dev.cfg.Kind, Device: dev.cfg.Device, Baud: dev.cfg.Baud, Grab: true}
		open := lines.DeviceOpener(lc)
		if d.devices.Lines != nil {
			open = d.devices.Lines(lc)
		}
		r, err := lines.New(lc, open, d.clock, d.log)
		if err != nil {
			return nil, laneError(cfg.Name, err)
		}
		*dev.into = r
	}

	l.speech = d.speech(cfg)
	g := cfg.Gate
	var pins gate.Pins
	switch g.Kind {
	case "":
		return l, nil
	case "simulated":
		log := d.log.With("component", "gate")
		pins = gate.Pins{Relay: simulatedPin{cfg.Name, "relay", log}, Green: simulatedPin{cfg.Name, "green", log},
			Red: simulatedPin{cfg.Name, "red", log}}
	case "gpio":
		open := d.devices.Pins
		if open == nil {
			open = gpioPins
		}
		var err error
		if pins, l.release, err = open(cfg.Name, g); err != nil {
			return nil, laneError(cfg.Name, err)
		}
	}
	name := cfg.Name
	l.gateDev = gate.New(gate.Config{
		Pulse: time.Duration(g.Pulse), Lamp: time.Duration(g.Lamp), Buzz: time.Duration(g.Buzz), FailOpen: g.Fail == "open",
		OnAlarm: func(active bool, at time.Time) { l.fireAlarm(w, name, active) },
	}, pins, d.clock, d.log.With("lane", cfg.Name))
	l.gate = l.gateDev
	return l, nil
}

// gpioPins requests a gate's lines on a GPIO character device; outputs
// start inactive.
func gpioPins(lane string, g config.Gate) (gate.Pins, func(), error) {
	var pins gate.Pins
	var closers []func() error
	release := func() {
		for _, c := range closers {
			c()
		}
	}
	for _, o := range []struct {
		offset *int
		into   *gate.PinOut
	}{{g.Relay, &pins.Relay}, {g.Green, &pins.Green}, {g.Red, &pins.Red}, {g.Buzzer, &pins.Buzzer}} {
		if o.offset == nil {
			continue
		}
		out, err := gpio.Output(g.Chip, *o.offset, g.ActiveLow, false)
		if err != nil {
			release()
			return gate.Pins{}, nil, err
		}
		closers = append(closers, out.Close)
		*o.into = out
	}
	if g.FireAlarm != nil {
		in, err := gpio.Input(g.Chip, *g.FireAlarm, g.ActiveLow)
		if err != nil {
			release()
			return gate.Pins{}, nil, err
		}
		closers = append(closers, in.Close)
		pins.FireAlarm = in
	}
	return pins, release, nil
}

// start runs the lane's camera, devices, gate and passages; done is
// called when its passages stop (ctx ended, or its video ended). The
// devices and the gate stop with ctx; the gate then takes its fail state.
func (l *lane) start(ctx context.Context, wg *stdsync.WaitGroup, done func(), w *shared) {
	run := func(f func()) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f()
		}()
	}
	camera := make(chan scanner.ScanEvent, 16)
	run(func() {
		l.pipe.Run(ctx, camera)
		close(camera)
	})
	if l.thermDev != nil {
		run(func() { l.thermDev.Run(ctx, l.readings) })
	}
	if l.idReader != nil {
		run(func() { l.idReader.Run(ctx, l.cards) })
	}
	if l.handheld != nil {
		run(func() { l.handheld.Run(ctx, l.scanned) })
	}
	if l.gateDev != nil {
		run(func() { l.gateDev.Run(ctx) })
	}
	if l.speech.player != nil {
		run(func() { l.speech.player.Run(ctx) })
	}
	run(func() {
		defer done()
		l.run(ctx, w, camera)
	})
}

// close releases what the lane holds once its goroutines have stopped.
// The gate takes its fail state first (Close is idempotent): a released
// line can no longer be set.
func (l *lane) close() {
	if l.gateDev != nil {
		l.gateDev.Close() // errors are counted and logged
	}
	if l.release != nil {
		l.release()
	}
}

// fireAlarm records a change of the fire alarm as an event of its own.
func (l *lane) fireAlarm(w *shared, lane string, active bool) {
	l.alarm.Store(active)
	action := "released"
	if active {
		action = "held_open"
	}
	now := w.now()
	_, err := w.box.Record(context.Background(), store.Event{Time: now.Time, ClockUncertainty: now.Uncertainty,
		Kind: "fire_alarm", Gate: w.d.cfg.Name, Lane: lane, GateAction: action})
	w.log.Warn("fire alarm", "lane", lane, "active", active, "recorded", err == nil)
}

// pipelines are the lanes' cameras, for the scanner metrics.
func pipelines(ls []*lane) map[string]metrics.Pipeline {
	m := map[string]metrics.Pipeline{}
	for _, l := range ls {
		m[l.name] = l.pipe
	}
	return m
}

// laneSources are the lanes' devices and counters, for the lane metrics.
func laneSources(ls []*lane) []metrics.Lane {
	var out []metrics.Lane
	for _, l := range ls {
		ml := metrics.Lane{Name: l.name, Passages: l.passages.Load, Readings: l.readingsSeen.Load,
			SensorErrors: l.sensorErrors.Load, Devices: map[string]func() bool{}}
		if l.thermDev != nil {
			ml.Devices["thermometer"] = func() bool { return l.thermDev.Status().Up }
		}
		if l.idReader != nil {
			ml.Devices["id_reader"] = func() bool { return l.idReader.Status().Up }
		}
		if l.handheld != nil {
			ml.Devices["scanner"] = func() bool { return l.handheld.Status().Up }
		}
		ml.Devices["camera"] = func() bool { return l.pipe.Status().State == scanner.Running }
		if l.gateDev != nil {
			ml.Gate = func() (pulses uint64, alarm bool, errors uint64) {
				st := l.gateDev.Status()
				return uint64(st.Pulses), st.Alarm, uint64(st.Errors)
			}
		}
		out = append(out, ml)
	}
	return out
}

// laneError names the lane in an error.
func laneError(name string, err error) error {
	return fmt.Errorf("lane %s: %w", name, err)
}
