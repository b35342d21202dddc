package daemon

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/crypto/nacl/box"

	"github.com/checkpointd/checkpoint/hardware"
	"github.com/checkpointd/checkpoint/hardware/gate"
	"github.com/checkpointd/checkpoint/hardware/hardwaretest"
	"github.com/checkpointd/checkpoint/hardware/lines"
	"github.com/checkpointd/checkpoint/internal/clock/clocktest"
	"github.com/checkpointd/checkpoint/internal/config"
	"github.com/checkpointd/checkpoint/internal/credential"
	"github.com/checkpointd/checkpoint/internal/credential/credentialtest"
	"github.com/checkpointd/checkpoint/internal/keyfile"
	"github.com/checkpointd/checkpoint/internal/scene"
	"github.com/checkpointd/checkpoint/internal/trust"
	"github.com/checkpointd/checkpoint/passage"
	"github.com/checkpointd/checkpoint/store"
	"github.com/checkpointd/checkpoint/verify"
)

// orderGate is a gate that checks, when told to pass, that the passage is
// already in the store.
type orderGate struct {
	t      *testing.T
	box    *store.Box
	passes int
	seen   []string
}

func (g *orderGate) Pass() error {
	g.passes++
	seq := g.box.LastSeq()
	evs, err := g.box.Events(seq, 1)
	if err != nil || len(evs) != 1 || evs[0].Decision != "pass" || evs[0].GateAction != "pulse" {
		g.t.Errorf("the gate was told to open before its passage was recorded: last event %d %+v %v", seq, evs, err)
	}
	g.seen = append(g.seen, "pass")
	return nil
}
func (g *orderGate) Refuse() error { g.seen = append(g.seen, "refuse"); return nil }
func (g *orderGate) Refer() error  { g.seen = append(g.seen, "refer"); return nil }

// TestRecordedBeforeThePulse: a passage is on disk before the gate opens
// for it; one that cannot be recorded does not open the gate.
func TestRecordedBeforeThePulse(t *testing.T) {
	f := credentialtest.New()
	b, err := store.OpenBox(filepath.Join(t.TempDir(), "box.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Defaults()
	d := New(cfg, Options{Clock: clocktest.New(f.Now)})
	w := &shared{d: d, box: b, now: func() verify.Instant { return verify.Instant{Time: f.Now} },
		trust: func() *trust.List { return f.Trust }, policy: passage.DefaultPolicy(), log: slog.New(slog.DiscardHandler)}
	g := &orderGate{t: t, box: b}
	l := newLane(config.Lane{Name: "east"}, w.policy)
	l.gate = g
	green := verify.Verify(verify.Input{Text: f.Text(), Trust: f.Trust, Policy: w.policy.Policy, Now: w.now()})
	reading := func(c float64) passage.Effects {
		return l.pas.Reading(hardwareReading(f.Now, c))
	}
	l.apply(w, l.pas.Code(f.Now, green))
	l.apply(w, reading(36.5))
	l.apply(w, l.pas.Code(f.Now, verify.Decision{Outcome: verify.Refuse, Reasons: []verify.Reason{verify.Malformed}}))
	if g.passes != 1 || !slices.Equal(g.seen, []string{"pass", "refuse"}) {
		t.Errorf("gate told %v", g.seen)
	}
	b.Close() // the disk is gone
	l.apply(w, l.pas.Guard(passage.Action{Kind: passage.Override, Guard: "李明", Outcome: verify.Pass, Reason: "official_duty", At: f.Now}))
	if g.passes != 1 || g.seen[len(g.seen)-1] != "refer" {
		t.Errorf("a passage that could not be recorded: gate told %v", g.seen)
	}
}

// ptyThermometer is a thermometer on the far end of a pseudo-terminal: it
// answers each query with the next of its readings, calling before (if
// set) first.
type ptyThermometer struct {
	master   *os.File
	readings []string
	before   map[int]func() // by query number, from 1
	queries  int
	mu       sync.Mutex
}

func (p *ptyThermometer) serve() {
	sc := bufio.NewScanner(p.master)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) != "M" {
			continue
		}
		p.mu.Lock()
		p.queries++
		n := p.queries
		p.mu.Unlock()
		if f := p.before[n]; f != nil {
			f()
		}
		if n <= len(p.readings) {
			io.WriteString(p.master, p.readings[n-1]+"\r\n")
		}
	}
}

// laneBox is a checkpoint's folder for the lane tests: keys, a trust list
// naming an event key, a policy, and a video of people one second apart.
type laneBox struct {
	dir      string
	cfg      config.Config
	eventKey *ecdh.PrivateKey
}

func newLaneBox(t *testing.T, f *credentialtest.Fixture, policy string, videos map[string][]string) *laneBox {
	t.Helper()
	lb := &laneBox{dir: t.TempDir()}
	var err error
	if lb.eventKey, err = ecdh.X25519().GenerateKey(rand.Reader); err != nil {
		t.Fatal(err)
	}
	l := *f.Trust
	l.EventKey = lb.eventKey.PublicKey().Bytes()
	raw, err := trust.Sign(&l, f.Root)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte) string {
		p := filepath.Join(lb.dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if err := keyfile.WritePublic(filepath.Join(lb.dir, "root.pub"), f.Root.Public().(ed25519.PublicKey)); err != nil {
		t.Fatal(err)
	}
	revs, err := trust.SignRevocations(&trust.Revocations{Version: 1, IssuedAt: f.Now, Expires: f.Now.Add(24 * time.Hour)}, f.Root)
	if err != nil {
		t.Fatal(err)
	}
	lb.cfg = config.Defaults()
	lb.cfg.Name = "station"
	lb.cfg.Trust = config.Trust{RootKey: filepath.Join(lb.dir, "root.pub"), TrustList: write("trust.cbor", raw),
		Revocations: write("revocations.cbor", revs), Policy: write("policy.json", []byte(policy))}
	lb.cfg.Store.Path = filepath.Join(lb.dir, "checkpoint.db")
	lb.cfg.Store.Key = filepath.Join(lb.dir, "store.key")
	pose := scene.Params{ModulePx: 4, CenterX: 0.5, CenterY: 0.5, Ambient: 1, Screen: 1, Gamma: 1, Noise: 2}
	for lane, texts := range videos {
		var ppl []scene.Appearance
		for i, text := range texts {
			start := time.Duration(i)*time.Second + 300*time.Millisecond
			ppl = append(ppl, scene.Appearance{Text: text, Start: start, End: start + 900*time.Millisecond, Pose: pose})
		}
		video := filepath.Join(lb.dir, lane+".avi")
		if err := scene.WriteVideo(video, 10, time.Duration(len(texts))*time.Second+2*time.Second, 5, ppl); err != nil {
			t.Fatal(err)
		}
		cam := lb.cfg.Camera
		cam.Device, cam.Pace = video, 10
		lb.cfg.Lanes = append(lb.cfg.Lanes, config.Lane{Name: lane, Camera: cam, Gate: config.Gate{Fail: "closed"}})
	}
	slices.SortFunc(lb.cfg.Lanes, func(a, b config.Lane) int { return strings.Compare(a.Name, b.Name) })
	return lb
}

// events returns what the box recorded.
func (lb *laneBox) events(t *testing.T) []store.Event {
	t.Helper()
	key, err := keyfile.ReadStoreKey(lb.cfg.Store.Key)
	if err != nil {
		t.Fatal(err)
	}
	b, err := store.OpenBox(lb.cfg.Store.Path, store.Options{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	evs, err := b.Events(1, 100)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// codes are presentations of distinct credentials of the fixture holder,
// made at the fixture's time.
func codes(f *credentialtest.Fixture, n int) []string {
	var out []string
	for i := 0; i < n; i++ {
		c := f.Credential(func(c *credential.Credential) { c.ID[0] = byte(10 + i) })
		out = append(out, f.Present(f.Issue(c), f.Now))
	}
	return out
}

func hardwareReading(at time.Time, c float64) hardware.Reading {
	return hardware.Reading{Body: c, Source: "test", At: at}
}

// TestLaneWithDevices plays people one second apart through a lane with a
// thermometer on a real pseudo-terminal, a card reader and a gate: a
// normal reading passes and opens the gate; a fever confirmed by the
// re-measure refuses; a sensor error cleared by the re-measure passes;
// another person's card refuses; a person without a phone passes on the
// card and a normal reading, the number sealed for the authority alone.
// Every reading goes with its own passage, and the gate opens only on a
// pass.
func TestLaneWithDevices(t *testing.T) {
	t.Parallel()
	f := credentialtest.New()
	texts := codes(f, 4)
	lb := newLaneBox(t, f, `{"code_window": "1s", "passage_window": "5s"}`, map[string][]string{"east": texts})
	lc := &lb.cfg.Lanes[0]
	master, slave, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer master.Close()
	defer slave.Close()
	lc.Thermometer = config.Thermometer{Kind: "serial", Port: slave.Name(), Query: "M\r\n"}
	lc.IDReader = config.LineDevice{Kind: "serial", Device: "card"}
	relay := 0
	lc.Gate = config.Gate{Kind: "gpio", Chip: "fake", Relay: &relay, Fail: "closed"}

	clk := clocktest.NewRunning(f.Now)
	cards := hardwaretest.NewPort()
	pins := hardwaretest.NewGatePins(clk)
	var display bytes.Buffer
	var nshown int
	displayed := make(chan int, 16)
	const other = "440305198805061238"
	therm := &ptyThermometer{master: master,
		readings: []string{"36.5", "38.2", "38.1", "12.0", "36.7", "36.4", "36.6"},
		before: map[int]func(){
			// Person 4 puts another person's card on the reader.
			6: func() { cards.Feed(other + "\r\n"); time.Sleep(200 * time.Millisecond) },
		},
	}
	go therm.serve()
	go func() {
		// Once person 4 is decided, someone without a phone shows a card.
		for n := range displayed {
			if n == 4 {
				cards.Feed("张三丰," + credentialtest.IDNumber + "\r\n")
			}
		}
	}()
	d := New(lb.cfg, Options{Clock: clk, Display: writerFunc(func(p []byte) (int, error) {
		display.Write(p)
		nshown++
		displayed <- nshown
		return len(p), nil
	}), JSON: true, Devices: Devices{
		Lines: func(lines.Config) lines.Opener {
			return func(string, int) (io.ReadCloser, error) { return cards, nil }
		},
		Pins: func(string, config.Gate) (gate.Pins, func(), error) { return pins.Pins(), nil, nil },
	}})
	if err := d.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	close(displayed)

	var got []shown
	for _, line := range strings.Split(strings.TrimSpace(display.String()), "\n") {
		var s shown
		if err := json.Unmarshal([]byte(line), &s); err != nil {
			t.Fatalf("display line %q: %v", line, err)
		}
		got = append(got, s)
	}
	want := []struct {
		outcome verify.Outcome
		reasons []verify.Reason
		temps   []float64
		gate    string
	}{
		{verify.Pass, nil, []float64{36.5}, "pulse"},
		{verify.Refuse, []verify.Reason{verify.Fever}, []float64{38.2, 38.1}, "closed"},
		{verify.Pass, nil, []float64{12.0, 36.7}, "pulse"},
		{verify.Refuse, []verify.Reason{verify.IDMismatch}, []float64{36.4}, "closed"},
		{verify.Pass, []verify.Reason{verify.IDOnly}, []float64{36.6}, "pulse"},
	}
	if len(got) != len(want) {
		t.Fatalf("%d passages, want %d:\n%s", len(got), len(want), display.String())
	}
	for i, w := range want {
		var temps []float64
		for _, r := range got[i].Temperatures {
			temps = append(temps, r.Celsius)
		}
		if got[i].Decision != w.outcome || !slices.Equal(got[i].Reasons, w.reasons) || !slices.Equal(temps, w.temps) || got[i].Gate != w.gate {
			t.Errorf("person %d: %v %v %v gate %q; want %v %v %v %q", i+1, got[i].Decision, got[i].Reasons, temps, got[i].Gate,
				w.outcome, w.reasons, w.temps, w.gate)
		}
	}
	pulses := 0
	for _, c := range pins.Relay.Changes() {
		if c.Active {
			pulses++
		}
	}
	if pulses != 3 || pins.Relay.Active() {
		t.Errorf("the relay was energised %d times (want 3, one per pass), and is active at the end: %v", pulses, pins.Relay.Active())
	}

	evs := lb.events(t)
	if len(evs) != 5 {
		t.Fatalf("%d events recorded", len(evs))
	}
	if r := evs[1].Readings; len(r) != 2 || r[0].Body != 3820 || r[1].Body != 3810 || r[0].Source != "east/thermometer" {
		t.Errorf("the fever's readings: %+v", r)
	}
	only := evs[4]
	if only.ID == nil || only.ID.Check != "only" || !strings.HasSuffix(only.ID.Masked, "002X") || only.MaskedName != only.ID.Masked {
		t.Fatalf("the person without a phone: %+v", only.ID)
	}
	var priv, pub [32]byte
	copy(priv[:], lb.eventKey.Bytes())
	copy(pub[:], lb.eventKey.PublicKey().Bytes())
	if number, ok := box.OpenAnonymous(nil, only.ID.Sealed, &pub, &priv); !ok || string(number) != credentialtest.IDNumber {
		t.Errorf("the sealed number opens to %q, %v", number, ok)
	}
	for i, ev := range evs {
		raw, _ := store.EncodeEvent(ev)
		if bytes.Contains(raw, []byte(credentialtest.IDNumber)) || bytes.Contains(raw, []byte(other)) ||
			bytes.Contains(raw, []byte(credentialtest.Name)) {
			t.Errorf("event %d keeps an ID number or a name in the clear", i+1)
		}
	}
}

// TestTwoLanes: one lane's thermometer is unplugged; the other lane goes
// on taking readings and deciding.
func TestTwoLanes(t *testing.T) {
	t.Parallel()
	f := credentialtest.New()
	texts := codes(f, 4)
	lb := newLaneBox(t, f, `{"passage_window": "3s"}`, map[string][]string{"east": texts[:2], "west": texts[2:]})
	lb.cfg.Lanes[0].Thermometer = config.Thermometer{Kind: "serial", Port: "/dev/ttyEAST", Query: "M\n"}
	lb.cfg.Lanes[1].Thermometer = config.Thermometer{Kind: "serial", Port: "/dev/ttyWEST", Query: "M\n"}
	west := hardwaretest.NewPort()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		// West's thermometer answers each query.
		asked := 0
		for ctx.Err() == nil {
			if n := strings.Count(west.Written(), "M\n"); n > asked {
				asked++
				west.Feed("36.8\n")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	var display bytes.Buffer
	d := New(lb.cfg, Options{Clock: clocktest.NewRunning(f.Now), Display: &display, JSON: true, Devices: Devices{
		Serial: func(port string, baud int) (io.ReadWriteCloser, error) {
			if port == "/dev/ttyWEST" {
				return west, nil
			}
			return nil, errors.New("no such device")
		},
	}})
	if err := d.Run(ctx); err != nil {
		t.Fatal(err)
	}
	byLane := map[string][]shown{}
	for _, line := range strings.Split(strings.TrimSpace(display.String()), "\n") {
		var s shown
		if err := json.Unmarshal([]byte(line), &s); err != nil {
			t.Fatalf("display line %q: %v", line, err)
		}
		byLane[s.Lane] = append(byLane[s.Lane], s)
	}
	if len(byLane["east"]) != 2 || len(byLane["west"]) != 2 {
		t.Fatalf("passages by lane: east %d, west %d:\n%s", len(byLane["east"]), len(byLane["west"]), display.String())
	}
	for _, s := range byLane["west"] {
		if s.Decision != verify.Pass || len(s.Temperatures) != 1 {
			t.Errorf("west: %v %v %v", s.Decision, s.Reasons, s.Temperatures)
		}
	}
	for _, s := range byLane["east"] {
		if s.Decision != verify.Refer || !slices.Equal(s.Reasons, []verify.Reason{verify.TemperatureMissing}) {
			t.Errorf("east, thermometer unplugged: %v %v", s.Decision, s.Reasons)
		}
	}
}

// TestShutdownLeavesGateInFailState: when checkpointd stops, because it
// is told to or because its video ended, the gate is left as configured:
// held open (fail-safe) or closed (fail-secure), before its lines are
// released.
func TestShutdownLeavesGateInFailState(t *testing.T) {
	t.Parallel()
	f := credentialtest.New()
	for _, end := range []string{"cancel", "video"} {
		for _, fail := range []string{"open", "closed"} {
			lb := newLaneBox(t, f, `{}`, map[string][]string{"east": nil})
			relay := 3
			lb.cfg.Lanes[0].Gate = config.Gate{Kind: "gpio", Chip: "fake", Relay: &relay, Fail: fail}
			if end == "cancel" {
				lb.cfg.Lanes[0].Camera.Device = "/dev/video-absent" // never ends
			}
			clk := clocktest.NewRunning(f.Now)
			pins := hardwaretest.NewGatePins(clk)
			released := make(chan bool, 1) // the relay's state when its line was released
			ctx, cancel := context.WithCancel(context.Background())
			d := New(lb.cfg, Options{Clock: clk, Devices: Devices{
				Pins: func(string, config.Gate) (gate.Pins, func(), error) {
					return pins.Pins(), func() {
						released <- pins.Relay.Active()
						pins.Relay.Fail(errors.New("line released"))
					}, nil
				},
			}})
			done := make(chan error, 1)
			go func() { done <- d.Run(ctx) }()
			if end == "cancel" {
				time.Sleep(300 * time.Millisecond)
				cancel()
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			cancel()
			if got := pins.Relay.Active(); got != (fail == "open") {
				t.Errorf("%s, fail = %s: relay active %v after shutdown", end, fail, got)
			}
			select {
			case got := <-released:
				if got != (fail == "open") {
					t.Errorf("%s, fail = %s: relay active %v when its line was released", end, fail, got)
				}
			default:
				t.Errorf("%s, fail = %s: the gate's lines were not released", end, fail)
			}
		}
	}
}

// writerFunc is an io.Writer from a function.
type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// TestGuardActs: a lane without a thermometer takes the guard's reading
// from a handheld thermometer; the action is recorded with the guard's
// name; a lane that is not there is an error.
func TestGuardActs(t *testing.T) {
	t.Parallel()
	f := credentialtest.New()
	lb := newLaneBox(t, f, `{}`, map[string][]string{"east": codes(f, 1)})
	var display bytes.Buffer
	d := New(lb.cfg, Options{Clock: clocktest.NewRunning(f.Now), Display: &display, JSON: true})
	ctx := context.Background()
	if err := d.Act(ctx, "east", passage.Action{Kind: passage.Temperature}); !errors.Is(err, ErrNoLane) {
		t.Errorf("acting before the lanes run: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	a := passage.Action{Kind: passage.Temperature, Guard: "李明", Celsius: 36.4, At: f.Now}
	for err := d.Act(ctx, "east", a); errors.Is(err, ErrNoLane); err = d.Act(ctx, "east", a) {
		time.Sleep(5 * time.Millisecond)
	}
	if err := d.Act(ctx, "west", a); !errors.Is(err, ErrNoLane) {
		t.Errorf("acting on a lane the box does not have: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var s shown
	if err := json.Unmarshal(display.Bytes(), &s); err != nil {
		t.Fatalf("display %q: %v", display.String(), err)
	}
	if s.Decision != verify.Pass || len(s.Temperatures) != 1 || s.Temperatures[0].Source != "guard" {
		t.Errorf("the guard's reading: %+v", s)
	}
	evs := lb.events(t)
	if len(evs) != 1 || len(evs[0].Actions) != 1 || evs[0].Actions[0].Guard != "李明" || evs[0].Actions[0].Body != 3640 {
		t.Errorf("recorded %+v", evs)
	}
}

// TestFireAlarm: the fire alarm holds the gate open, and each change of
// it is recorded as an event of its own.
func TestFireAlarm(t *testing.T) {
	t.Parallel()
	f := credentialtest.New()
	lb := newLaneBox(t, f, `{}`, map[string][]string{"east": nil})
	relay, alarm := 3, 4
	lb.cfg.Lanes[0].Gate = config.Gate{Kind: "gpio", Chip: "fake", Relay: &relay, FireAlarm: &alarm, Fail: "closed"}
	lb.cfg.Lanes[0].Camera.Device = "/dev/video-absent"
	clk := clocktest.NewRunning(f.Now)
	pins := hardwaretest.NewGatePins(clk)
	ctx, cancel := context.WithCancel(context.Background())
	d := New(lb.cfg, Options{Clock: clk, Devices: Devices{
		Pins: func(string, config.Gate) (gate.Pins, func(), error) { return pins.Pins(), nil, nil },
	}})
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	wait := func(cond func() bool, what string) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	wait(func() bool { return pins.FireAlarm.Watching() > 0 }, "the gate to watch the alarm")
	pins.FireAlarm.Set(true)
	wait(pins.Relay.Active, "the relay to be held")
	pins.FireAlarm.Set(false)
	wait(func() bool { return !pins.Relay.Active() }, "the relay to rest")
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	evs := lb.events(t)
	if len(evs) != 2 || evs[0].Kind != "fire_alarm" || evs[0].GateAction != "held_open" || evs[1].GateAction != "released" ||
		evs[0].Lane != "east" {
		t.Errorf("recorded %+v", evs)
	}
}
