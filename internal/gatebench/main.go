// Command gatebench measures a lane end to end: from the moment a person's
// code is shown to the camera to the gate's pulse, with a thermometer that
// answers at once, on a 1280x720 video played at 30 frames a second
// through the whole daemon (scanner, verifier, passage, store with fsync,
// gate). It plays people at the demo's spacing and closer, and reports the
// latency's median and 99th percentile and the passages a minute the lane
// decides right. make bench-gate runs it; the README quotes it.
package main

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	stdsync "sync"
	"time"

	"gocv.io/x/gocv"

	"github.com/checkpointd/checkpoint/hardware/gate"
	"github.com/checkpointd/checkpoint/hardware/hardwaretest"
	"github.com/checkpointd/checkpoint/internal/clock/clocktest"
	"github.com/checkpointd/checkpoint/internal/config"
	"github.com/checkpointd/checkpoint/internal/credential"
	"github.com/checkpointd/checkpoint/internal/credential/credentialtest"
	"github.com/checkpointd/checkpoint/internal/daemon"
	"github.com/checkpointd/checkpoint/internal/keyfile"
	"github.com/checkpointd/checkpoint/internal/scene"
	"github.com/checkpointd/checkpoint/internal/trust"
	"github.com/checkpointd/checkpoint/scanner"
)

// spacing is how people follow one another: each holds the phone up for
// each, with gap between them.
type spacing struct {
	name      string
	people    int
	each, gap time.Duration
}

func main() {
	out := flag.String("out", "", "also write the report to this file")
	flag.Parse()
	runs := []spacing{
		{"the demo's (gatevideo)", 20, 2 * time.Second, time.Second},
		{"a busy station", 30, time.Second, 500 * time.Millisecond},
		{"a queue at full speed", 30, 600 * time.Millisecond, 300 * time.Millisecond},
	}
	var report strings.Builder
	fmt.Fprintf(&report, "| spacing | people | offered a minute | decided right | code read to pulse, p50 | p99 | phone raised to pulse, p50 | p99 |\n"+
		"|---|---|---|---|---|---|---|---|\n")
	for _, sp := range runs {
		r, err := run(sp)
		if err != nil {
			fmt.Fprintln(os.Stderr, "gatebench:", err)
			os.Exit(1)
		}
		fmt.Fprintf(&report, "| %s, %v shown + %v | %d | %.0f | %d (%.0f a minute) | %.1f ms | %.1f ms | %.0f ms | %.0f ms |\n",
			sp.name, sp.each, sp.gap, sp.people, 60/(sp.each+sp.gap).Seconds(), r.right,
			float64(r.right)/r.length.Minutes(), ms(r.p50), ms(r.p99), ms(r.raiseP50), ms(r.raiseP99))
	}
	fmt.Fprintf(&report, "\nCode read to pulse: from the capture of the frame the code was first read in to the gate's "+
		"pulse: decoding, verification, the thermometer's query and answer (at once), the passage, the fsync of its event. "+
		"Phone raised to pulse: from the moment the phone starts rising into view (it takes %v), what the person waits.\n", scene.RaiseTime)
	fmt.Print(report.String())
	if *out != "" {
		if err := os.WriteFile(*out, []byte(report.String()), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "gatebench:", err)
			os.Exit(1)
		}
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

type result struct {
	right              int
	p50, p99           time.Duration // from the frame the code was read in
	raiseP50, raiseP99 time.Duration // from the start of raising the phone
	length             time.Duration
}

func run(sp spacing) (result, error) {
	dir, err := os.MkdirTemp("", "gatebench-")
	if err != nil {
		return result{}, err
	}
	defer os.RemoveAll(dir)
	f := credentialtest.New()
	if err := keyfile.WritePublic(filepath.Join(dir, "root.pub"), f.Root.Public().(ed25519.PublicKey)); err != nil {
		return result{}, err
	}
	revs, err := trust.SignRevocations(&trust.Revocations{Version: 1, IssuedAt: f.Now, Expires: f.Now.Add(24 * time.Hour)}, f.Root)
	if err != nil {
		return result{}, err
	}
	for name, data := range map[string][]byte{"trust.cbor": f.TrustBytes, "revocations.cbor": revs} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return result{}, err
		}
	}

	// The people: each a credential of their own, presented as they raise
	// the phone, held the way gatevideo holds them.
	var ppl []scene.Appearance
	t := sp.gap
	for i := 0; i < sp.people; i++ {
		c := f.Credential(func(c *credential.Credential) { c.ID[0], c.ID[1] = byte(i), byte(i>>8) })
		pose := scene.Params{
			ModulePx: 3.2 + 0.4*float64(i%3), CenterX: 0.42 + 0.08*float64(i%3), CenterY: 0.5,
			Rotation: float64(-12 + 9*(i%4)), TiltX: float64(-10 + 7*(i%4)), TiltY: float64(8 - 6*(i%3)),
			Ambient: 0.9, Screen: 0.95, Gamma: 1, Noise: 2.5, JPEGQuality: 85, Glare: 0.3 * float64(i%2),
			GlareX: 0.7, GlareY: 0.3,
		}
		ppl = append(ppl, scene.Appearance{Text: f.Present(f.Issue(c), f.Now.Add(t)), Start: t, End: t + sp.each, Pose: pose})
		t += sp.each + sp.gap
	}
	video := filepath.Join(dir, "gate.avi")
	fmt.Fprintf(os.Stderr, "gatebench: rendering %d people, %.0f s of video ...\n", sp.people, t.Seconds())
	if err := scene.WriteVideo(video, 30, t+time.Second, 7, ppl); err != nil {
		return result{}, err
	}

	cfg := config.Defaults()
	cfg.Name = "bench"
	cfg.Trust = config.Trust{RootKey: filepath.Join(dir, "root.pub"), TrustList: filepath.Join(dir, "trust.cbor"),
		Revocations: filepath.Join(dir, "revocations.cbor")}
	cfg.Store.Path = filepath.Join(dir, "checkpoint.db")
	cam := cfg.Camera
	cam.Device, cam.Pace = video, 30
	relay := 0
	cfg.Lanes = []config.Lane{{Name: "lane-1", Camera: cam,
		Thermometer: config.Thermometer{Kind: "serial", Port: "bench", Query: "M\r\n"},
		Gate:        config.Gate{Kind: "gpio", Chip: "bench", Relay: &relay, Fail: "closed"}}}

	clk := clocktest.NewRunning(f.Now)
	pins := hardwaretest.NewGatePins(clk)
	var mu stdsync.Mutex
	var first time.Time // when the video's first frame was read
	// For each person's passage, found by the credential id: when the
	// frame its code was first read in was taken, and when it was decided
	// (the gate acts just before the display shows it).
	type times struct{ read, decided time.Time }
	passed := map[int]times{}
	display := writer(func(p []byte) (int, error) {
		at := clk.Now()
		var d struct {
			Decision string    `json:"decision"`
			Opened   time.Time `json:"opened"`
			Code     struct {
				CredentialID string `json:"credential_id"`
			} `json:"code"`
		}
		json.Unmarshal(p, &d)
		var id [8]byte
		if n, _ := hex.Decode(id[:], []byte(d.Code.CredentialID)); n == 8 && d.Decision == "pass" {
			mu.Lock()
			passed[int(id[0])|int(id[1])<<8] = times{d.Opened, at}
			mu.Unlock()
		}
		return len(p), nil
	})
	open := func(sc scanner.SourceConfig) (scanner.Source, error) {
		src, err := scanner.Open(sc)
		if err != nil {
			return nil, err
		}
		return &firstRead{Source: src, at: func() {
			mu.Lock()
			if first.IsZero() {
				first = clk.Now()
			}
			mu.Unlock()
		}}, nil
	}
	d := daemon.New(cfg, daemon.Options{Clock: clk, Display: display, JSON: true, Open: open, Devices: daemon.Devices{
		Serial: func(string, int) (io.ReadWriteCloser, error) { return newInstantThermometer("36.5"), nil },
		Pins:   func(string, config.Gate) (gate.Pins, func(), error) { return pins.Pins(), nil, nil },
	}})
	if err := d.Run(context.Background()); err != nil {
		return result{}, err
	}

	r := result{length: t}
	var lat, raised []time.Duration
	for i, at := range passed {
		r.right++
		lat = append(lat, at.decided.Sub(at.read))
		raised = append(raised, at.decided.Sub(first.Add(ppl[i].Start)))
	}
	if len(lat) == 0 {
		return r, fmt.Errorf("%s: no passage decided right", sp.name)
	}
	r.p50, r.p99 = percentiles(lat)
	r.raiseP50, r.raiseP99 = percentiles(raised)
	return r, nil
}

func percentiles(ds []time.Duration) (p50, p99 time.Duration) {
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[len(ds)/2], ds[min(len(ds)-1, len(ds)*99/100)]
}

// firstRead notes when a source's first frame is read.
type firstRead struct {
	scanner.Source
	at   func()
	once stdsync.Once
}

func (f *firstRead) Read(dst *gocv.Mat) error {
	f.once.Do(f.at)
	return f.Source.Read(dst)
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

type writer func([]byte) (int, error)

func (w writer) Write(p []byte) (int, error) { return w(p) }
