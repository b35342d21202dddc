// Package daemon is checkpointd's main loop: it loads the pinned root key
// and the signed lists, runs the scanner pipeline on the configured
// camera, verifies every code that comes into view, and shows each
// decision on the guard's display. cmd/checkpointd imports it; the store,
// the sync and the local API will join it here.
package daemon

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/checkpointd/checkpoint/internal/clock"
	"github.com/checkpointd/checkpoint/internal/config"
	"github.com/checkpointd/checkpoint/internal/keyfile"
	"github.com/checkpointd/checkpoint/internal/trust"
	"github.com/checkpointd/checkpoint/scanner"
	"github.com/checkpointd/checkpoint/verify"
)

// Daemon is one checkpoint.
type Daemon struct {
	cfg     config.Config
	clock   clock.Clock
	log     *slog.Logger
	display io.Writer
	json    bool
	open    scanner.OpenFunc
}

// Options are the daemon's edges: its clock, its log, the guard's display
// (decisions as text, or JSON lines), and how video sources are opened
// (nil: for real).
type Options struct {
	Clock   clock.Clock
	Log     *slog.Logger
	Display io.Writer
	JSON    bool
	Open    scanner.OpenFunc
}

// New returns a daemon for cfg.
func New(cfg config.Config, o Options) *Daemon {
	if o.Clock == nil {
		o.Clock = clock.System{}
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Display == nil {
		o.Display = io.Discard
	}
	return &Daemon{cfg: cfg, clock: o.Clock, log: o.Log, display: o.Display, json: o.JSON, open: o.Open}
}

// lists is what the verifier checks codes against.
type lists struct {
	root   ed25519.PublicKey
	trust  *trust.List
	revs   verify.Revocations
	policy verify.Policy
}

// noRevocations stands for a checkpoint that has never had a revocation
// list: nothing is known revoked, and the list is stale from the start.
type noRevocations struct{}

func (noRevocations) Revoked([]byte, time.Time) bool { return false }
func (noRevocations) ValidUntil() time.Time          { return time.Time{} }

func (d *Daemon) load() (*lists, error) {
	l := &lists{policy: verify.DefaultPolicy(), revs: noRevocations{}}
	var err error
	if l.root, err = keyfile.ReadPublic(d.cfg.Trust.RootKey); err != nil {
		return nil, fmt.Errorf("root key: %w", err)
	}
	data, err := os.ReadFile(d.cfg.Trust.TrustList)
	if err != nil {
		return nil, fmt.Errorf("trust list: %w", err)
	}
	if l.trust, err = trust.Parse(data, l.root); err != nil {
		return nil, fmt.Errorf("trust list %s: %w", d.cfg.Trust.TrustList, err)
	}
	if p := d.cfg.Trust.Revocations; p != "" {
		data, err := os.ReadFile(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			d.log.Warn("no revocation list yet: decisions will say it is stale", "component", "daemon", "path", p)
		case err != nil:
			return nil, fmt.Errorf("revocation list: %w", err)
		default:
			r, err := trust.ParseRevocations(data, l.root)
			if err != nil {
				return nil, fmt.Errorf("revocation list %s: %w", p, err)
			}
			l.revs = trust.NewRevocationSet(r)
		}
	}
	if p := d.cfg.Trust.Policy; p != "" {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("policy: %w", err)
		}
		if l.policy, err = verify.ParsePolicy(data); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// Run runs the checkpoint until ctx ends, or until a video file it plays
// comes to its end.
func (d *Daemon) Run(ctx context.Context) error {
	l, err := d.load()
	if err != nil {
		return err
	}
	log := d.log.With("component", "daemon", "checkpoint", d.cfg.Name)
	log.Info("checkpoint starting", "device", d.cfg.Camera.Device, "trust_list_version", l.trust.Version,
		"issuer_keys", len(l.trust.Issuers))
	cam := d.cfg.Camera
	p := scanner.NewPipeline(scanner.Config{
		Source:  scanner.SourceConfig{Device: cam.Device, Width: cam.Width, Height: cam.Height, FPS: cam.FPS, Exposure: cam.Exposure},
		Workers: cam.Workers,
		Decoder: scanner.DecoderOptions{Budget: time.Duration(cam.Budget)},
		Forget:  time.Duration(cam.Forget),
		Pace:    cam.Pace,
	}, d.clock, d.log, d.open)
	replay := verify.NewReplayCache(1 << 14)

	events := make(chan scanner.ScanEvent, 16)
	done := make(chan error, 1)
	go func() {
		done <- p.Run(ctx, events)
		close(events)
	}()
	for ev := range events {
		dec := verify.Verify(verify.Input{
			Text: ev.Text, Trust: l.trust, Revocations: l.revs, Replay: replay, Policy: l.policy,
			// Until the clock is anchored by syncs, the system clock is
			// taken as right: boxes run NTP when they have a network.
			Now: verify.Instant{Time: d.clock.Now()},
		})
		// Decision, reasons and timing only: never the code, a name or an
		// ID number.
		log.Info("decision", "decision", dec.Outcome.String(), "reasons", reasonList(dec.Reasons),
			"repeat", dec.Repeat, "frame", ev.Seq, "latency_ms", d.clock.Now().Sub(ev.Captured).Milliseconds())
		if err := d.show(ev, dec); err != nil {
			return err
		}
	}
	err = <-done
	st := p.Stats()
	log.Info("checkpoint stopped", "frames", st.Captured, "processed", st.Processed, "dropped", st.Dropped, "events", st.Events)
	return err
}

func reasonList(rs []verify.Reason) string {
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = string(r)
	}
	return strings.Join(s, ",")
}

// shown is the JSON form of a decision on the display.
type shown struct {
	Time     time.Time        `json:"time"`
	Decision verify.Outcome   `json:"decision"`
	Reasons  []verify.Reason  `json:"reasons"`
	Repeat   bool             `json:"repeat"`
	Code     *verify.CodeInfo `json:"code,omitempty"`
	Frame    uint64           `json:"frame"`
}

// show puts a decision on the guard's display.
func (d *Daemon) show(ev scanner.ScanEvent, dec verify.Decision) error {
	now := d.clock.Now()
	if d.json {
		s := shown{Time: now, Decision: dec.Outcome, Reasons: dec.Reasons, Repeat: dec.Repeat, Code: dec.Code, Frame: ev.Seq}
		if s.Reasons == nil {
			s.Reasons = []verify.Reason{}
		}
		enc := json.NewEncoder(d.display)
		enc.SetEscapeHTML(false)
		return enc.Encode(s)
	}
	zh, en := dec.Outcome.Words()
	line := fmt.Sprintf("%s  %-6s %s %s", now.Format("15:04:05"), strings.ToUpper(dec.Outcome.String()), zh, en)
	if c := dec.Code; c != nil {
		line += fmt.Sprintf("  %s …%s %s", c.MaskedName, c.IDSuffix, c.Status)
	}
	if dec.Repeat {
		line += "  (same person, already shown)"
	}
	for _, r := range dec.Reasons {
		zh, en := r.Words()
		line += fmt.Sprintf("\n          %s: %s / %s", r, zh, en)
	}
	_, err := fmt.Fprintln(d.display, line)
	return err
}
