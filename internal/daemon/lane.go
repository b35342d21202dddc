package daemon

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"math"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/nacl/box"

	"github.com/checkpointd/checkpoint/hardware"
	"github.com/checkpointd/checkpoint/hardware/gate"
	"github.com/checkpointd/checkpoint/hardware/lines"
	"github.com/checkpointd/checkpoint/hardware/thermometer"
	"github.com/checkpointd/checkpoint/internal/config"
	"github.com/checkpointd/checkpoint/internal/credential"
	"github.com/checkpointd/checkpoint/internal/screen"
	"github.com/checkpointd/checkpoint/internal/trust"
	"github.com/checkpointd/checkpoint/passage"
	"github.com/checkpointd/checkpoint/scanner"
	"github.com/checkpointd/checkpoint/store"
	"github.com/checkpointd/checkpoint/verify"
)

// Thermometer is what a lane asks of its thermometer: a reading, when the
// device takes queries.
type Thermometer interface {
	Measure() error
}

// Gate is what a lane asks of its gate.
type Gate interface {
	Pass() error
	Refuse() error
	Refer() error
}

// lane is one lane at work: what its camera, scanner, card reader,
// thermometer and guard bring goes into its passages; each decided
// passage is recorded, then the gate acts, then the guard is shown.
type lane struct {
	name  string
	cfg   config.Lane
	pas   *passage.Lane
	therm Thermometer // nil: none
	gate  Gate        // nil: none
	alarm atomic.Bool // the fire alarm holds the gate open

	// The devices, as opened by newLane.
	pipe               *scanner.Pipeline
	thermDev           *thermometer.Thermometer
	idReader, handheld *lines.Reader
	gateDev            *gate.Gate
	release            func() // gives back the gate's lines
	speech             speech // spoken prompts, when the lane's voice is on

	scanned  chan hardware.Line // a handheld scanner's
	cards    chan hardware.Line // the card reader's
	readings chan hardware.Reading
	guard    chan passage.Action

	// Counted for the metrics.
	passages, sensorErrors, readingsSeen atomic.Uint64
}

// shared is what every lane of a box decides and records with.
type shared struct {
	d      *Daemon
	box    *store.Box
	now    func() verify.Instant
	trust  func() *trust.List
	revs   verify.Revocations
	replay *verify.ReplayCache
	policy passage.Policy
	log    *slog.Logger
	screen *screen.Server // nil: none
}

func newLane(cfg config.Lane, policy passage.Policy) *lane {
	return &lane{
		name: cfg.Name, cfg: cfg, pas: passage.NewLane(cfg.Name, policy),
		scanned: make(chan hardware.Line, 4), cards: make(chan hardware.Line, 4),
		readings: make(chan hardware.Reading, 16), guard: make(chan passage.Action, 4),
	}
}

// run gathers the lane's passages until ctx ends or its camera's video
// comes to its end (camera is closed): then the passage open is decided
// with what it has and recorded.
func (l *lane) run(ctx context.Context, w *shared, camera <-chan scanner.ScanEvent) {
	clk := w.d.clock
	for {
		var tick <-chan time.Time
		if next, ok := l.pas.Next(); ok {
			tick = clk.After(next.Sub(clk.Now()))
		}
		var e passage.Effects
		select {
		case <-ctx.Done():
			l.finish(w)
			return
		case ev, ok := <-camera:
			if !ok {
				l.finish(w)
				return
			}
			e = l.pas.Code(ev.Captured, l.verify(w, ev.Text))
		case line := <-l.scanned:
			e = l.pas.Code(line.At, l.verify(w, line.Text))
		case line := <-l.cards:
			e = l.pas.ID(cardRead(line))
		case r := <-l.readings:
			l.readingsSeen.Add(1)
			if r.Body < w.policy.SensorMin || r.Body > w.policy.SensorMax {
				l.sensorErrors.Add(1)
			}
			e = l.pas.Reading(r)
		case a := <-l.guard:
			e = l.pas.Guard(a)
		case now := <-tick:
			e = l.pas.Tick(now)
		}
		l.apply(w, e)
	}
}

// finish decides and records the passage still open, without acting on
// the gate: the lane is stopping.
func (l *lane) finish(w *shared) {
	far := time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, open := l.pas.Next(); open {
		for _, p := range l.pas.Tick(far).Closed {
			p.Closed = w.d.clock.Now()
			l.record(w, p, "")
		}
	}
}

// verify decides on a code, at the checkpoint's best idea of the time.
func (l *lane) verify(w *shared, text string) verify.Decision {
	return verify.Verify(verify.Input{
		Text: text, Trust: w.trust(), Revocations: w.revs, Replay: w.replay, Policy: w.policy.Policy, Now: w.now(),
	})
}

// apply carries out what the passage asks for.
func (l *lane) apply(w *shared, e passage.Effects) {
	if e.Measure && l.therm != nil {
		if err := l.therm.Measure(); err != nil {
			w.log.Warn("thermometer query failed", "lane", l.name, "err", err)
		}
	}
	var current *screen.Passage
	if w.screen != nil && e.Current != nil {
		v := screen.View(*e.Current, w.policy, nil, time.Time{})
		current = &v
	}
	for _, p := range e.Closed {
		closed := l.decide(w, p)
		if w.screen != nil {
			v := screen.View(p, w.policy, &closed, w.d.clock.Now())
			w.screen.Publish(l.name, current, &v)
		}
	}
	if w.screen != nil && len(e.Closed) == 0 {
		w.screen.Publish(l.name, current, nil)
	}
	l.speak(e)
}

// decide records a decided passage and only then drives the gate: nothing
// opens the gate that is not on disk first. A passage that cannot be
// recorded does not open it either.
func (l *lane) decide(w *shared, p passage.Passage) screen.Closed {
	action := ""
	if l.gate != nil {
		switch {
		case l.alarm.Load():
			action = "held_open"
		case p.Outcome == verify.Pass:
			action = "pulse"
		default:
			action = "closed"
		}
	}
	closed := l.record(w, p, action)
	l.sayOutcome(p, closed.Recorded)
	if l.gate == nil {
		return closed
	}
	var err error
	switch {
	case p.Outcome == verify.Pass && closed.Recorded:
		err = l.gate.Pass()
	case p.Outcome == verify.Refuse:
		err = l.gate.Refuse()
	default:
		err = l.gate.Refer()
	}
	if err != nil {
		w.log.Error("gate failed", "lane", l.name, "err", err)
	}
	return closed
}

// record writes the passage's event, shows it, and reports what became of
// it: its sequence number, and whether it is on disk.
func (l *lane) record(w *shared, p passage.Passage, action string) screen.Closed {
	l.passages.Add(1)
	now := w.now()
	ev := eventOf(w.d.cfg.Name, now, p, action, w.trust(), w.d.clock.Now())
	if p.IDOnly() && ev.ID != nil && ev.ID.Check == "only" && ev.ID.Sealed == nil {
		w.log.Warn("the trust list names no event key: the ID number of a person without a code is not kept", "lane", l.name)
	}
	rec, err := w.box.Record(context.Background(), ev)
	if err != nil {
		w.log.Error("passage not recorded", "lane", l.name, "err", err)
	}
	w.d.decisions.Add(p.Outcome.String(), err == nil)
	// Decision, reasons and timing only: never a code, a name or an ID
	// number.
	w.log.Info("passage", "lane", l.name, "decision", p.Outcome.String(), "reasons", reasonList(p.Reasons),
		"seq", rec.Seq, "readings", len(p.Readings), "gate", action, "gathered_ms", p.Closed.Sub(p.Opened).Milliseconds())
	if err := w.d.show(p, ev, err == nil); err != nil {
		w.log.Error("display failed", "err", err)
	}
	c := screen.Closed{Seq: rec.Seq, Gate: action, Recorded: err == nil}
	if ev.ID != nil {
		c.IDCheck, c.IDMasked = ev.ID.Check, ev.ID.Masked
	}
	return c
}

// cardRead reads a card reader's line: the ID number, and the name when
// the reader gives it, separated by a comma, a tab, '|' or ';', in either
// order.
func cardRead(line hardware.Line) passage.IDRead {
	id := passage.IDRead{Source: line.Source, At: line.At}
	fields := strings.FieldsFunc(line.Text, func(r rune) bool { return r == ',' || r == '\t' || r == '|' || r == ';' })
	for _, f := range fields {
		f = strings.TrimSpace(f)
		if _, err := credential.ParseID(f); err == nil && id.Number == "" {
			id.Number = f
		} else if id.Name == "" && !isIDLike(f) {
			id.Name = f
		}
	}
	if id.Number == "" && len(fields) > 0 {
		id.Number = strings.TrimSpace(fields[0]) // not a valid number: the passage says so
	}
	return id
}

// isIDLike reports whether s looks like an attempt at an ID number rather
// than a name.
func isIDLike(s string) bool {
	return s != "" && strings.Trim(strings.ToUpper(s), "0123456789X") == ""
}

// eventOf is the log record of a decided passage. Its times are the
// checkpoint's estimate (now); the passage's own, taken by the box's
// clock (local), are moved by the same offset. The ID number of a person
// without a code is sealed to the authority's event key, and never kept
// otherwise.
func eventOf(checkpoint string, now verify.Instant, p passage.Passage, action string, tl *trust.List, local time.Time) store.Event {
	shift := now.Time.Sub(local)
	e := store.Event{
		Time: now.Time, ClockUncertainty: now.Uncertainty, Kind: "passage", Decision: p.Outcome.String(),
		Gate: checkpoint, Lane: p.Lane, OpenedBy: p.OpenedBy, Gathered: p.Closed.Sub(p.Opened), GateAction: action,
	}
	for _, r := range p.Reasons {
		e.Reasons = append(e.Reasons, string(r))
	}
	if c := p.Code; c != nil {
		e.Repeat = c.Repeat
		if ci := c.Code; ci != nil {
			e.Status, e.Static, e.MaskedName = ci.Status, ci.Static, ci.MaskedName
			e.Subject, _ = hex.DecodeString(ci.Subject)
			e.CredentialID, _ = hex.DecodeString(ci.CredentialID)
			e.KeyID, _ = hex.DecodeString(ci.KeyID)
		}
	}
	for _, r := range p.Readings {
		rr := store.ReadingRecord{Body: centi(r.Body), Source: r.Source, At: r.At.Add(shift)}
		if r.HasAmbient {
			a := centi(r.Ambient)
			rr.Ambient = &a
		}
		e.Readings = append(e.Readings, rr)
	}
	if t := p.Temperature; t != nil {
		e.Temperature = int16(math.Round(t.Body * 10))
	}
	for _, a := range p.Actions {
		ar := store.ActionRecord{Kind: string(a.Kind), Guard: a.Guard, At: a.At.Add(shift), Reason: a.Reason}
		if a.Kind == passage.Override {
			ar.Outcome = a.Outcome.String()
		}
		if a.Kind == passage.Temperature {
			ar.Body = centi(a.Celsius)
		}
		e.Actions = append(e.Actions, ar)
	}
	e.ID = idRecord(p, tl)
	if p.IDOnly() && e.ID != nil {
		e.MaskedName = e.ID.Masked
	}
	return e
}

// idRecord is the passage's ID check as the log keeps it.
func idRecord(p passage.Passage, tl *trust.List) *store.IDRecord {
	confirmed := false
	for _, a := range p.Actions {
		confirmed = confirmed || a.Kind == passage.ConfirmID
	}
	switch {
	case p.Code != nil && p.Code.IDChecked && p.Code.IDMatched:
		return &store.IDRecord{Check: "match", Source: p.ID.Source}
	case p.Code != nil && p.Code.IDChecked:
		return &store.IDRecord{Check: "mismatch", Source: p.ID.Source}
	case p.Code != nil && confirmed:
		return &store.IDRecord{Check: "confirmed", Source: "guard"}
	case p.Code != nil || p.ID == nil:
		return nil
	}
	number, err := credential.ParseID(p.ID.Number)
	if err != nil {
		return &store.IDRecord{Check: "invalid", Source: p.ID.Source}
	}
	r := &store.IDRecord{Check: "only", Source: p.ID.Source, Masked: credential.MaskName(p.ID.Name) + " …" + number[len(number)-4:]}
	if tl != nil && len(tl.EventKey) == trust.EventKeySize {
		sealed, err := box.SealAnonymous(nil, []byte(number), (*[32]byte)(tl.EventKey), rand.Reader)
		if err == nil {
			r.Sealed = sealed
		}
	}
	return r
}

// centi is a temperature in hundredths of a degree, as the log keeps it.
func centi(c float64) int32 { return int32(math.Round(c * 100)) }

// simulatedPin is a gate line on a box without one: it logs what the line
// would do.
type simulatedPin struct {
	lane, line string
	log        *slog.Logger
}

func (p simulatedPin) Out(active bool) error {
	p.log.Info("simulated gate", "lane", p.lane, "line", p.line, "active", active)
	return nil
}

var _ gate.PinOut = simulatedPin{}
