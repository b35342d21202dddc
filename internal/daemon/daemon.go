// Package daemon is checkpointd's main loop: it opens the store, loads
// the pinned root key and the lists, runs the scanner pipeline on the
// configured camera and the sync with the authority beside it, verifies
// every code that comes into view against the estimated time, records
// each decision, shows it on the guard's display, and serves the
// supervisors' local API (internal/localapi) beside. cmd/checkpointd
// imports it.
package daemon

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	stdsync "sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/checkpointd/checkpoint/internal/clock"
	"github.com/checkpointd/checkpoint/internal/config"
	"github.com/checkpointd/checkpoint/internal/keyfile"
	"github.com/checkpointd/checkpoint/internal/metrics"
	"github.com/checkpointd/checkpoint/internal/trust"
	"github.com/checkpointd/checkpoint/passage"
	"github.com/checkpointd/checkpoint/scanner"
	"github.com/checkpointd/checkpoint/store"
	"github.com/checkpointd/checkpoint/sync"
	"github.com/checkpointd/checkpoint/verify"
)

// Daemon is one checkpoint.
type Daemon struct {
	cfg       config.Config
	clock     clock.Clock
	log       *slog.Logger
	display   io.Writer
	displayMu stdsync.Mutex // lanes show their passages one at a time
	json      bool
	open      scanner.OpenFunc
	devices   Devices
	reg       *prometheus.Registry
	decisions *metrics.Decisions

	lanesMu stdsync.Mutex
	lanes   map[string]*lane // while Run runs
}

// Options are the daemon's edges: its clock, its log, the guard's display
// (decisions as text, or JSON lines), how video sources and devices are
// opened (nil: for real), and the registry its metrics go to while it
// runs (nil: a new one, served on [metrics] listen when that is set).
type Options struct {
	Clock    clock.Clock
	Log      *slog.Logger
	Display  io.Writer
	JSON     bool
	Open     scanner.OpenFunc
	Devices  Devices
	Registry *prometheus.Registry
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
	if o.Registry == nil {
		o.Registry = prometheus.NewRegistry()
		o.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	return &Daemon{cfg: cfg, clock: o.Clock, log: o.Log, display: o.Display, json: o.JSON, open: o.Open, devices: o.Devices,
		reg: o.Registry, decisions: metrics.NewDecisions()}
}

// lists is what the verifier checks codes against when no authority
// keeps them current: the files named in the configuration.
type lists struct {
	root     ed25519.PublicKey
	trust    *trust.List
	trustRaw []byte             // the trust list as signed, to seed the store with
	revs     verify.Revocations // nil: the store's
	revVer   uint64             // the version of revs read from a file
	policy   passage.Policy
}

// noRevocations stands for a checkpoint that has never had a revocation
// list: nothing is known revoked, and the list is stale from the start.
type noRevocations struct{}

func (noRevocations) Revoked([]byte, time.Time) bool { return false }
func (noRevocations) ValidUntil() time.Time          { return time.Time{} }

func (d *Daemon) load() (*lists, error) {
	l := &lists{policy: passage.DefaultPolicy()}
	var err error
	if l.root, err = keyfile.ReadPublic(d.cfg.Trust.RootKey); err != nil {
		return nil, fmt.Errorf("root key: %w", err)
	}
	if p := d.cfg.Trust.TrustList; p != "" {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("trust list: %w", err)
		}
		if l.trust, err = trust.Parse(data, l.root); err != nil {
			return nil, fmt.Errorf("trust list %s: %w", p, err)
		}
		l.trustRaw = data
	}
	if p := d.cfg.Trust.Revocations; p != "" && d.cfg.Sync.Authority == "" {
		data, err := os.ReadFile(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			d.log.Warn("no revocation list yet: decisions will say it is stale", "component", "daemon", "path", p)
			l.revs = noRevocations{}
		case err != nil:
			return nil, fmt.Errorf("revocation list: %w", err)
		default:
			r, err := trust.ParseRevocations(data, l.root)
			if err != nil {
				return nil, fmt.Errorf("revocation list %s: %w", p, err)
			}
			l.revs, l.revVer = trust.NewRevocationSet(r), r.Version
		}
	}
	if p := d.cfg.Trust.Policy; p != "" {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("policy: %w", err)
		}
		if l.policy, err = passage.ParsePolicy(data); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// deviceKey reads the checkpoint's device key, making one on first start.
func deviceKey(path string) (ed25519.PrivateKey, error) {
	k, err := keyfile.ReadPrivate(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	_, k, err = ed25519.GenerateKey(nil)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	return k, keyfile.WritePrivate(path, k)
}

// openStore opens the checkpoint's store and the clock estimator kept in
// it.
func (d *Daemon) openStore() (*store.Box, *sync.Estimator, error) {
	keyPath := d.cfg.Store.Key
	if keyPath == "" {
		keyPath = filepath.Join(filepath.Dir(d.cfg.Store.Path), "store.key")
	}
	key, err := keyfile.StoreKey(keyPath)
	if err != nil {
		return nil, nil, fmt.Errorf("store key: %w", err)
	}
	box, err := store.OpenBox(d.cfg.Store.Path, store.Options{Clock: d.clock, Log: d.log, DiskLow: int64(d.cfg.Store.DiskLowMB) << 20,
		Key: key})
	if err != nil {
		return nil, nil, err
	}
	est, err := sync.NewEstimator(d.clock, box, time.Duration(d.cfg.Clock.UnsyncedUncertainty), d.log)
	if err != nil {
		box.Close()
		return nil, nil, err
	}
	return box, est, nil
}

// newSyncer returns the syncer with the authority, making the device key
// on first start. A store that has never synced is seeded with the
// configured trust list, so that it can check the authority's first
// answers.
func (d *Daemon) newSyncer(l *lists, box *store.Box, est *sync.Estimator) (*sync.Syncer, error) {
	key, err := deviceKey(d.cfg.Sync.DeviceKey)
	if err != nil {
		return nil, fmt.Errorf("device key: %w", err)
	}
	if l.trustRaw != nil {
		raw, err := box.TrustList()
		if err != nil {
			return nil, err
		}
		if raw == nil {
			if err := box.SetTrustList(l.trustRaw); err != nil {
				return nil, err
			}
		}
	}
	client, err := httpClient(d.cfg.Sync.CAFile)
	if err != nil {
		return nil, err
	}
	return sync.New(sync.Config{
		Authority: d.cfg.Sync.Authority, Name: d.cfg.Name, EnrollToken: d.cfg.Sync.EnrollToken,
		DeviceKey: key, Root: l.root, Interval: time.Duration(d.cfg.Sync.Interval),
		Retention: time.Duration(d.cfg.Store.Retention), Batch: d.cfg.Sync.Batch,
		MaxAnchorRTT: time.Duration(d.cfg.Sync.MaxAnchorRTT),
	}, box, est, d.clock, d.log, client)
}

// httpClient is the client the sync talks to the authority with: it
// trusts the certificates in caFile, if named, instead of the system's.
func httpClient(caFile string) (*http.Client, error) {
	// No overall timeout: the sync gives each request a deadline for its
	// size, so that an upload on a slow link is not cut off. The
	// connection's setup is bounded here.
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSHandshakeTimeout = 10 * time.Second
	t.ResponseHeaderTimeout = 60 * time.Second
	t.IdleConnTimeout = 30 * time.Second
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("sync.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("sync.ca_file %s: no PEM certificate in it", caFile)
		}
		t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: t}, nil
}

// SyncOnce runs one sync with the authority and reports it, without the
// camera: for installation (enrolment and first lists) and for a
// technician who wants the box to catch up now.
func (d *Daemon) SyncOnce(ctx context.Context, out io.Writer) error {
	if d.cfg.Sync.Authority == "" {
		return errors.New("no sync.authority configured")
	}
	l, err := d.load()
	if err != nil {
		return err
	}
	box, est, err := d.openStore()
	if err != nil {
		return err
	}
	defer box.Close()
	unsent, _ := box.Unsent()
	s, err := d.newSyncer(l, box, est)
	if err != nil {
		return err
	}
	if err := s.SyncOnce(ctx); err != nil {
		return err
	}
	st := s.Status()
	dev, _, _ := box.Device()
	v, until, set := box.RevocationVersion()
	now := est.Now()
	fmt.Fprintf(out, "synced with %s as checkpoint %s: %d events sent, %d held by the authority, none unsent\n",
		d.cfg.Sync.Authority, dev.ID, unsent, st.Mark)
	fmt.Fprintf(out, "trust list version %d; revocations version %d (%d entries), current until %s\n",
		s.Trust().Version, v, set.Count, until.Format(time.RFC3339))
	fmt.Fprintf(out, "clock: authority minus box %v; time now %s ± %v\n", st.Offset.Round(time.Millisecond),
		now.Time.Format(time.RFC3339), now.Uncertainty.Round(time.Millisecond))
	if st.AnchorRefused != "" {
		fmt.Fprintf(out, "clock not anchored by this sync: %s\n", st.AnchorRefused)
	}
	if st.ClockStep != 0 {
		fmt.Fprintf(out, "the wall clock was stepped %v against the clock anchor\n", st.ClockStep.Round(time.Second))
	}
	return nil
}

// Run runs the checkpoint until ctx ends, or until a video file it plays
// comes to its end.
func (d *Daemon) Run(ctx context.Context) error {
	l, err := d.load()
	if err != nil {
		return err
	}
	log := d.log.With("component", "daemon", "checkpoint", d.cfg.Name)
	box, est, err := d.openStore()
	if err != nil {
		return err
	}
	defer box.Close()

	// With an authority, the trust list and revocations are the synced
	// ones (the files only bootstrap); without, the files.
	var syncer *sync.Syncer
	var wg stdsync.WaitGroup
	ctx, stop := context.WithCancel(ctx)
	var lanes []*lane
	defer func() {
		stop()
		wg.Wait()
		// Once their goroutines have stopped: a gate takes its fail
		// state before its lines are released.
		for _, ln := range lanes {
			ln.close()
		}
	}()
	if d.cfg.Sync.Authority != "" {
		if syncer, err = d.newSyncer(l, box, est); err != nil {
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			syncer.Run(ctx)
		}()
	}
	currentTrust := func() *trust.List {
		if syncer != nil {
			if t := syncer.Trust(); t != nil {
				return t
			}
		}
		return l.trust
	}
	var revs verify.Revocations = box
	if l.revs != nil {
		revs = l.revs
	}
	if currentTrust() == nil && syncer == nil {
		return errors.New("no trust list: configure trust.trust_list or sync.authority")
	}

	log.Info("checkpoint starting", "lanes", len(d.cfg.Lanes), "events_recorded", box.LastSeq(), "sync", d.cfg.Sync.Authority != "")
	w := &shared{d: d, box: box, now: est.Now, trust: currentTrust, revs: revs, replay: verify.NewReplayCache(1 << 14),
		policy: l.policy, log: log}
	for _, lc := range d.cfg.Lanes {
		ln, err := d.newLane(lc, w)
		if err != nil {
			return err
		}
		lanes = append(lanes, ln)
	}

	cs := []prometheus.Collector{d.decisions, metrics.NewStoreCollector(box), metrics.NewRevocationCollector(revs, d.clock),
		metrics.NewScannerCollector(pipelines(lanes)), metrics.NewLaneCollector(laneSources(lanes))}
	if syncer != nil {
		cs = append(cs, metrics.NewSyncCollector(syncer))
	}
	for _, c := range cs {
		d.reg.MustRegister(c)
		defer d.reg.Unregister(c) // before the store closes
	}
	if d.cfg.Screen.Listen != "" {
		st := statusOf{d: d, box: box, est: est, syncer: syncer, revs: revs, policy: l.policy, lanes: lanes}
		if w.screen, err = d.serveScreen(ctx, &wg, lanes, st.status); err != nil {
			return err
		}
	}
	api := &apiBackend{est: est, syncer: syncer, trust: currentTrust, lanes: lanes}
	if l.revs != nil {
		api.revs, api.revVersion = l.revs, l.revVer
	}
	if err := d.serveAPI(ctx, &wg, box, api); err != nil {
		return err
	}
	if addr := d.cfg.Metrics.Listen; addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := metrics.NewServer(d.reg, d.log).Serve(ctx, ln); err != nil {
				log.Error("metrics server stopped", "err", err)
			}
		}()
	}

	d.lanesMu.Lock()
	d.lanes = map[string]*lane{}
	for _, ln := range lanes {
		d.lanes[ln.name] = ln
	}
	d.lanesMu.Unlock()
	defer func() {
		d.lanesMu.Lock()
		d.lanes = nil
		d.lanesMu.Unlock()
	}()

	// Each lane runs on its own: one lane's failing device never stops
	// another. The box stops when ctx ends, or when every lane's video
	// has come to its end.
	var lanesDone stdsync.WaitGroup
	for _, ln := range lanes {
		lanesDone.Add(1)
		ln.start(ctx, &wg, func() { lanesDone.Done() }, w)
	}
	lanesDone.Wait()
	for _, ln := range lanes {
		st := ln.pipe.Stats()
		log.Info("lane stopped", "lane", ln.name, "frames", st.Captured, "processed", st.Processed, "dropped", st.Dropped,
			"scans", st.Events, "passages", ln.passages.Load())
	}
	if syncer != nil && ctx.Err() == nil {
		// A video file ended: give the link one last chance to send
		// what was recorded.
		if err := syncer.SyncOnce(ctx); err != nil {
			log.Warn("final sync failed", "err", err)
		}
	}
	return nil
}

// ErrNoLane is returned by Act for a lane the running daemon does not
// have (or when it is not running).
var ErrNoLane = errors.New("no such lane running")

// Act gives a guard's action to a lane's passages: a temperature taken
// with a handheld thermometer, an ID number typed from a card, the
// confirmation that a card matches, an override. The guard's screen calls
// it.
func (d *Daemon) Act(ctx context.Context, lane string, a passage.Action) error {
	d.lanesMu.Lock()
	l := d.lanes[lane]
	d.lanesMu.Unlock()
	if l == nil {
		return fmt.Errorf("%w: %q", ErrNoLane, lane)
	}
	select {
	case l.guard <- a:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func reasonList(rs []verify.Reason) string {
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = string(r)
	}
	return strings.Join(s, ",")
}

// shown is the JSON form of a decided passage on the display.
type shown struct {
	Time time.Time `json:"time"`
	// Opened is when the passage opened: for a code, when the frame or
	// the scan it was read in was taken.
	Opened   time.Time        `json:"opened"`
	Lane     string           `json:"lane"`
	Decision verify.Outcome   `json:"decision"`
	Reasons  []verify.Reason  `json:"reasons"`
	Code     *verify.CodeInfo `json:"code,omitempty"`
	// Temperatures are every reading of the passage, in °C, as taken.
	Temperatures []shownReading `json:"temperatures"`
	// ID is the ID check: match, mismatch, confirmed, only (no code),
	// invalid; empty when no card was checked.
	ID       string `json:"id,omitempty"`
	IDMasked string `json:"id_masked,omitempty"` // a person without a code: masked name and last characters
	Gate     string `json:"gate,omitempty"`      // pulse, closed, held_open; empty: the lane has no gate
	Recorded bool   `json:"recorded"`
}

type shownReading struct {
	Celsius float64  `json:"celsius"`
	Ambient *float64 `json:"ambient,omitempty"`
	Source  string   `json:"source"`
}

// show puts a decided passage on the guard's display; recorded false
// warns that its event could not be written (and the gate stayed shut).
func (d *Daemon) show(p passage.Passage, ev store.Event, recorded bool) error {
	d.displayMu.Lock()
	defer d.displayMu.Unlock()
	s := shown{Time: ev.Time, Opened: ev.Time.Add(-ev.Gathered), Lane: p.Lane, Decision: p.Outcome, Reasons: p.Reasons,
		Gate: ev.GateAction, Recorded: recorded, Temperatures: []shownReading{}}
	if s.Reasons == nil {
		s.Reasons = []verify.Reason{}
	}
	if p.Code != nil {
		s.Code = p.Code.Code
	}
	for _, r := range p.Readings {
		sr := shownReading{Celsius: r.Body, Source: r.Source}
		if r.HasAmbient {
			a := r.Ambient
			sr.Ambient = &a
		}
		s.Temperatures = append(s.Temperatures, sr)
	}
	if ev.ID != nil {
		s.ID, s.IDMasked = ev.ID.Check, ev.ID.Masked
	}
	if d.json {
		enc := json.NewEncoder(d.display)
		enc.SetEscapeHTML(false)
		return enc.Encode(s)
	}
	zh, en := p.Outcome.Words()
	line := fmt.Sprintf("%s  %s  %-6s %s %s", ev.Time.Format("15:04:05"), p.Lane, strings.ToUpper(p.Outcome.String()), zh, en)
	switch {
	case s.Code != nil:
		line += fmt.Sprintf("  %s %s", s.Code.MaskedName, s.Code.Status)
	case s.IDMasked != "":
		line += "  " + s.IDMasked + " (ID card)"
	}
	for _, r := range s.Temperatures {
		line += fmt.Sprintf("  %.1f°C", r.Celsius)
	}
	if s.Gate != "" {
		line += "  gate: " + s.Gate
	}
	if !recorded {
		line += "  NOT RECORDED: the log could not be written; the gate stays shut"
	}
	for _, r := range p.Reasons {
		zh, en := r.Words()
		line += fmt.Sprintf("\n          %s: %s / %s", r, zh, en)
	}
	_, err := fmt.Fprintln(d.display, line)
	return err
}
