// Command screenbench measures the guard's screen: from the moment a lane
// decides a passage (its decided_at, the daemon's clock) to the moment the
// guard's page, in headless Chromium, draws it (data-last-decided-at on the
// lane, the page's Date.now()). The daemon runs on the system clock, so on
// one machine the two times compare. It runs the whole daemon (scanner,
// verifier, passage, store with fsync, gate) on a rendered 1280x720 video
// of people showing codes at 30 frames a second, with a thermometer that
// answers at once, and also notes when the browser starts the next frame
// after drawing. make bench-screen runs it; the README quotes it.
package main

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/checkpointd/checkpoint/hardware/gate"
	"github.com/checkpointd/checkpoint/hardware/hardwaretest"
	"github.com/checkpointd/checkpoint/internal/browser"
	"github.com/checkpointd/checkpoint/internal/clock"
	"github.com/checkpointd/checkpoint/internal/config"
	"github.com/checkpointd/checkpoint/internal/credential"
	"github.com/checkpointd/checkpoint/internal/credential/credentialtest"
	"github.com/checkpointd/checkpoint/internal/daemon"
	"github.com/checkpointd/checkpoint/internal/keyfile"
	"github.com/checkpointd/checkpoint/internal/scene"
	"github.com/checkpointd/checkpoint/internal/trust"
)

func main() {
	out := flag.String("out", "", "also write the report to this file")
	people := flag.Int("people", 100, "people in the video")
	each := flag.Duration("each", 600*time.Millisecond, "time each person holds the phone up")
	gap := flag.Duration("gap", 300*time.Millisecond, "time between people")
	flag.Parse()
	report, err := run(context.Background(), clock.System{}, *people, *each, *gap)
	if err != nil {
		fmt.Fprintln(os.Stderr, "screenbench:", err)
		os.Exit(1)
	}
	fmt.Print(report)
	if *out != "" {
		if err := os.WriteFile(*out, []byte(report), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "screenbench:", err)
			os.Exit(1)
		}
	}
}

// lead is the video's start without a phone: time for the page to connect.
const lead = 3 * time.Second

// drawn is what the page noted of a passage it drew.
type drawn struct {
	ID    string  `json:"id"`
	At    float64 `json:"at"`    // data-last-decided-at, ms since the epoch
	Frame float64 `json:"frame"` // the next frame's start, ms since the epoch; 0: none came
}

// observe records each passage the guard's page draws, as guard.js marks
// it on the lane, and when the browser starts the frame after.
const observe = `(() => {
  window.drawnPassages = [];
  new MutationObserver((changes) => {
    for (const c of changes) {
      const rec = { id: c.target.dataset.lastDecided, at: Number(c.target.dataset.lastDecidedAt), frame: 0 };
      window.drawnPassages.push(rec);
      requestAnimationFrame(() => { rec.frame = performance.timeOrigin + performance.now(); });
    }
  }).observe(document.getElementById("lanes"), { attributes: true, subtree: true, attributeFilter: ["data-last-decided-at"] });
  return true;
})()`

func run(ctx context.Context, clk clock.Clock, people int, each, gap time.Duration) (string, error) {
	dir, err := os.MkdirTemp("", "screenbench-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	cfg, ppl, length, err := setup(dir, clk.Now(), people, each, gap)
	if err != nil {
		return "", err
	}
	video := cfg.Lanes[0].Camera.Device
	fmt.Fprintf(os.Stderr, "screenbench: rendering %d people, %.0f s of video ...\n", people, length.Seconds())
	if err := scene.WriteVideo(video, 30, length, 7, ppl); err != nil {
		return "", err
	}

	bctx, stopBrowser, err := browser.New(ctx, 1280, 800)
	if err != nil {
		return "", err
	}
	defer stopBrowser()
	if err := chromedp.Do(bctx, chromedp.EmulateViewport(1280, 800)); err != nil {
		return "", err
	}
	pins := hardwaretest.NewGatePins(clk)
	d := daemon.New(cfg, daemon.Options{Clock: clk, Devices: daemon.Devices{
		Serial: func(string, int) (io.ReadWriteCloser, error) { return newInstantThermometer("36.5"), nil },
		Pins:   func(string, config.Gate) (gate.Pins, func(), error) { return pins.Pins(), nil, nil },
	}})
	fmt.Fprintf(os.Stderr, "screenbench: playing it through checkpointd, the guard's page open in Chromium ...\n")
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	base := "http://" + cfg.Screen.Listen
	if err := waitServer(ctx, cfg.Screen.Listen, done); err != nil {
		return "", err
	}
	if err := chromedp.Do(bctx, chromedp.Navigate(base+"/")); err != nil {
		return "", fmt.Errorf("guard's page: %w", err)
	}
	if _, err := chromedp.Run(bctx, chromedp.Evaluate[bool](observe)); err != nil {
		return "", fmt.Errorf("observing the page: %w", err)
	}

	// When the lane decided each passage, from the screen's state, read
	// often enough that none leaves its last ones unseen.
	decided := map[string]passage{}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	var runErr error
wait:
	for {
		select {
		case runErr = <-done:
			break wait
		case <-tick.C:
			if err := readDecided(base, decided); err != nil && !errors.Is(err, errGone) {
				return "", err
			}
		}
	}
	if runErr != nil {
		return "", runErr
	}
	page, err := chromedp.Run(bctx, chromedp.Evaluate[[]drawn](`window.drawnPassages`))
	if err != nil {
		return "", fmt.Errorf("reading the page: %w", err)
	}

	var toDrawn, toFrame []float64
	for _, p := range page {
		q, ok := decided[p.ID]
		if !ok {
			continue
		}
		ms := float64(q.at.UnixNano()) / 1e6
		toDrawn = append(toDrawn, p.At-ms)
		if p.Frame > 0 {
			toFrame = append(toFrame, p.Frame-ms)
		}
	}
	if len(toDrawn) == 0 {
		return "", fmt.Errorf("the page drew none of the %d passages decided", len(decided))
	}
	var r strings.Builder
	fmt.Fprintf(&r, "| people | passages decided | drawn by the page | decided to drawn, p50 | p99 | max | decided to the next frame, p50 | p99 |\n"+
		"|---|---|---|---|---|---|---|---|\n")
	passed := 0
	for _, q := range decided {
		if q.outcome == "pass" {
			passed++
		}
	}
	d50, d99, dmax := percentiles(toDrawn)
	f50, f99, _ := percentiles(toFrame)
	fmt.Fprintf(&r, "| %d, every %v (%v shown) | %d (%d passed) | %d | %.1f ms | %.1f ms | %.1f ms | %.1f ms | %.1f ms |\n",
		people, each+gap, each, len(decided), passed, len(toDrawn), d50, d99, dmax, f50, f99)
	fmt.Fprintf(&r, "\nDecided: the lane's time when it hands the decided passage to the screen (after the event's fsync "+
		"and the gate's action). Drawn: the guard's page's Date.now() when it has drawn the passage (data-last-decided-at, "+
		"set by guard.js), in headless Chromium at 1280x800 on loopback, the daemon on the system clock: one machine, one clock, "+
		"Date.now() to the millisecond. Next frame: the start of the browser's next animation frame after drawing. "+
		"The daemon decodes the video at 30 frames a second meanwhile. The presentations are made before the video is "+
		"rendered, so the policy's presentation window is an hour here.\n")
	return r.String(), nil
}

// setup writes the lists, the policy and the configuration into dir, and
// returns the people to render: each with a credential of their own.
func setup(dir string, now time.Time, people int, each, gap time.Duration) (config.Config, []scene.Appearance, time.Duration, error) {
	f := credentialtest.New()
	f.Now = now
	// The fixture's lists are for its own time: these are for now.
	l := *f.Trust
	l.Version, l.IssuedAt, l.Expires = 2, now.Add(-time.Hour), now.Add(24*time.Hour)
	l.Issuers = slices.Clone(l.Issuers)
	for i := range l.Issuers {
		l.Issuers[i].NotBefore, l.Issuers[i].NotAfter = now.Add(-24*time.Hour), now.Add(365*24*time.Hour)
	}
	trustBytes, err := trust.Sign(&l, f.Root)
	if err != nil {
		return config.Config{}, nil, 0, err
	}
	revs, err := trust.SignRevocations(&trust.Revocations{Version: 1, IssuedAt: now, Expires: now.Add(24 * time.Hour)}, f.Root)
	if err != nil {
		return config.Config{}, nil, 0, err
	}
	if err := keyfile.WritePublic(filepath.Join(dir, "root.pub"), f.Root.Public().(ed25519.PublicKey)); err != nil {
		return config.Config{}, nil, 0, err
	}
	for name, data := range map[string][]byte{"trust.cbor": trustBytes, "revocations.cbor": revs,
		"policy.json": []byte(`{"presentation_window": "1h"}`)} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return config.Config{}, nil, 0, err
		}
	}

	var ppl []scene.Appearance
	t := lead
	for i := 0; i < people; i++ {
		c := f.Credential(func(c *credential.Credential) { c.ID[0], c.ID[1] = byte(i), byte(i>>8) })
		pose := scene.Params{
			ModulePx: 3.2 + 0.4*float64(i%3), CenterX: 0.42 + 0.08*float64(i%3), CenterY: 0.5,
			Rotation: float64(-12 + 9*(i%4)), TiltX: float64(-10 + 7*(i%4)), TiltY: float64(8 - 6*(i%3)),
			Ambient: 0.9, Screen: 0.95, Gamma: 1, Noise: 2.5, JPEGQuality: 85, Glare: 0.3 * float64(i%2),
			GlareX: 0.7, GlareY: 0.3,
		}
		ppl = append(ppl, scene.Appearance{Text: f.Present(f.Issue(c), now.Add(t)), Start: t, End: t + each, Pose: pose})
		t += each + gap
	}

	addr, err := freeAddr()
	if err != nil {
		return config.Config{}, nil, 0, err
	}
	cfg := config.Defaults()
	cfg.Name = "bench"
	cfg.Trust = config.Trust{RootKey: filepath.Join(dir, "root.pub"), TrustList: filepath.Join(dir, "trust.cbor"),
		Revocations: filepath.Join(dir, "revocations.cbor"), Policy: filepath.Join(dir, "policy.json")}
	cfg.Store.Path = filepath.Join(dir, "checkpoint.db")
	cfg.Screen.Listen = addr
	cam := cfg.Camera
	cam.Device, cam.Pace = filepath.Join(dir, "gate.avi"), 30
	relay := 0
	cfg.Lanes = []config.Lane{{Name: "lane-1", Camera: cam,
		Thermometer: config.Thermometer{Kind: "serial", Port: "bench", Query: "M\r\n"},
		Gate:        config.Gate{Kind: "gpio", Chip: "bench", Relay: &relay, Fail: "closed"}}}
	return cfg, ppl, t + 2*time.Second, nil
}

// client reads the screen's state; the screen is on this machine.
var client = &http.Client{Timeout: 5 * time.Second}

// errGone: the screen no longer answers (the daemon has stopped).
var errGone = errors.New("screen gone")

// passage is a decided passage: when, and its outcome.
type passage struct {
	at      time.Time
	outcome string
}

// readDecided adds the lane's last decided passages to decided.
func readDecided(base string, decided map[string]passage) error {
	res, err := client.Get(base + "/api/state")
	if err != nil {
		return fmt.Errorf("%w: %w", errGone, err)
	}
	defer res.Body.Close()
	var st struct {
		Lanes []struct {
			Last []struct {
				ID        string    `json:"id"`
				Outcome   string    `json:"outcome"`
				DecidedAt time.Time `json:"decided_at"`
			} `json:"last"`
		} `json:"lanes"`
	}
	if err := json.NewDecoder(res.Body).Decode(&st); err != nil {
		return fmt.Errorf("screen state: %w", err)
	}
	for _, l := range st.Lanes {
		for _, p := range l.Last {
			decided[p.ID] = passage{p.DecidedAt, p.Outcome}
		}
	}
	return nil
}

// percentiles returns the median, the 99th percentile and the largest.
func percentiles(v []float64) (p50, p99, largest float64) {
	if len(v) == 0 {
		return 0, 0, 0
	}
	slices.Sort(v)
	return v[len(v)/2], v[min(len(v)-1, len(v)*99/100)], v[len(v)-1]
}

// waitServer waits until the screen listens, or the daemon has stopped.
func waitServer(ctx context.Context, addr string, done <-chan error) error {
	for {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return nil
		}
		select {
		case err := <-done:
			return fmt.Errorf("checkpointd stopped before serving its screen: %v", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// freeAddr returns a loopback address nothing listens on.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// instantThermometer is a serial thermometer that answers each query at
// once with the same reading.
type instantThermometer struct {
	*hardwaretest.Port
	reading string
}

func newInstantThermometer(reading string) *instantThermometer {
	return &instantThermometer{Port: hardwaretest.NewPort(), reading: reading}
}

func (t *instantThermometer) Write(p []byte) (int, error) {
	t.Port.Feed(t.reading + "\r\n")
	return len(p), nil
}
