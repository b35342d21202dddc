package daemon

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/checkpointd/checkpoint/internal/clock/clocktest"
	"github.com/checkpointd/checkpoint/internal/config"
	"github.com/checkpointd/checkpoint/internal/credential"
	"github.com/checkpointd/checkpoint/internal/credential/credentialtest"
	"github.com/checkpointd/checkpoint/internal/keyfile"
	"github.com/checkpointd/checkpoint/internal/scene"
	"github.com/checkpointd/checkpoint/internal/trust"
	"github.com/checkpointd/checkpoint/store"
	"github.com/checkpointd/checkpoint/verify"
)

// gateFiles writes a checkpoint's files into a new folder: the root key,
// the trust list, a video of people and a policy that takes no
// temperature; and returns a configuration of one lane naming them and a
// revocation list, revocations.cbor, which the test may or may not write.
func gateFiles(t *testing.T, f *credentialtest.Fixture, length time.Duration, ppl []scene.Appearance) config.Config {
	t.Helper()
	dir := t.TempDir()
	if err := keyfile.WritePublic(filepath.Join(dir, "root.pub"), f.Root.Public().(ed25519.PublicKey)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "trust.cbor"), f.TrustBytes, 0o644); err != nil {
		t.Fatal(err)
	}
	video := filepath.Join(dir, "gate.avi")
	if err := scene.WriteVideo(video, 10, length, 11, ppl); err != nil {
		t.Fatal(err)
	}
	policy := filepath.Join(dir, "policy.json")
	if err := os.WriteFile(policy, []byte(`{"temperature_required": false}`), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := config.Defaults()
	cfg.Trust = config.Trust{RootKey: filepath.Join(dir, "root.pub"), TrustList: filepath.Join(dir, "trust.cbor"),
		Revocations: filepath.Join(dir, "revocations.cbor"), Policy: policy}
	cfg.Camera.Device = video
	cfg.Lanes = []config.Lane{{Name: "checkpoint", Camera: cfg.Camera}}
	cfg.Store.Path = filepath.Join(dir, "checkpoint.db")
	cfg.Store.Key = filepath.Join(dir, "store.key")
	return cfg
}

// TestDecisionsFromVideo plays a gate video of three people through the
// daemon: a green code passes, a red one is refused, a screenshot is
// refused as stale; and the log holds no code, name or ID number.
func TestDecisionsFromVideo(t *testing.T) {
	f := credentialtest.New()
	green := f.Issue(f.Credential(nil))
	red := f.Issue(f.Credential(func(c *credential.Credential) { c.Status = credential.Red; c.ID[0] = 9 }))
	texts := []string{
		f.Present(green, f.Now.Add(-3*time.Second)),
		f.Present(red, f.Now.Add(-3*time.Second)),
		f.Present(green, f.Now.Add(-2*time.Minute)),
	}
	pose := scene.Params{ModulePx: 3.5, CenterX: 0.5, CenterY: 0.5, Rotation: 5, Ambient: 1, Screen: 1, Gamma: 1, Noise: 2, JPEGQuality: 85}
	var ppl []scene.Appearance
	for i, text := range texts {
		start := time.Duration(i)*1500*time.Millisecond + 300*time.Millisecond
		ppl = append(ppl, scene.Appearance{Text: text, Start: start, End: start + time.Second, Pose: pose})
	}
	cfg := gateFiles(t, f, 4500*time.Millisecond, ppl)
	revs, err := trust.SignRevocations(&trust.Revocations{Version: 1, IssuedAt: f.Now, Expires: f.Now.Add(24 * time.Hour)}, f.Root)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg.Trust.Revocations, revs, 0o644); err != nil {
		t.Fatal(err)
	}
	var display, logs bytes.Buffer
	reg := prometheus.NewRegistry()
	scrape := &scraper{reg: reg, after: 3}
	d := New(cfg, Options{
		Clock: clocktest.New(f.Now), Log: slog.New(slog.NewTextHandler(&logs, nil)), Display: io.MultiWriter(&display, scrape),
		JSON: true, Registry: reg,
	})
	if err := d.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	// What a technician's scrape says once the three are decided.
	if err := testutil.GatherAndCompare(scrape, strings.NewReader(`
# HELP checkpoint_decisions_total Decisions made, by outcome (pass, refuse, refer) and whether the event was recorded.
# TYPE checkpoint_decisions_total counter
checkpoint_decisions_total{decision="pass",recorded="true"} 1
checkpoint_decisions_total{decision="refuse",recorded="true"} 2
# HELP checkpoint_events_unsent Events recorded but not yet acknowledged by the authority.
# TYPE checkpoint_events_unsent gauge
checkpoint_events_unsent 3
# HELP checkpoint_revocation_list_stale 1 when the revocation list is missing or expired: decisions say so.
# TYPE checkpoint_revocation_list_stale gauge
checkpoint_revocation_list_stale 0
# HELP checkpoint_passages_total Passages decided (one person through one lane each).
# TYPE checkpoint_passages_total counter
checkpoint_passages_total{lane="checkpoint"} 3
# HELP checkpoint_scans_total Scan events: codes that came into view.
# TYPE checkpoint_scans_total counter
checkpoint_scans_total{lane="checkpoint"} 3
`), "checkpoint_decisions_total", "checkpoint_events_unsent", "checkpoint_revocation_list_stale", "checkpoint_scans_total",
		"checkpoint_passages_total"); err != nil {
		t.Error(err)
	}
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
	}{
		{verify.Pass, nil},
		{verify.Refuse, []verify.Reason{verify.StatusRed}},
		{verify.Refuse, []verify.Reason{verify.PresentationStale}},
	}
	if len(got) != len(want) {
		t.Fatalf("%d decisions, want %d:\n%s", len(got), len(want), display.String())
	}
	for i, w := range want {
		if got[i].Decision != w.outcome || !slices.Equal(got[i].Reasons, w.reasons) {
			t.Errorf("decision %d: %v %v, want %v %v", i, got[i].Decision, got[i].Reasons, w.outcome, w.reasons)
		}
	}
	// Every decision is in the log, chained, with what a supervisor needs.
	key, err := keyfile.ReadStoreKey(cfg.Store.Key)
	if err != nil {
		t.Fatal(err)
	}
	box, err := store.OpenBox(cfg.Store.Path, store.Options{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	defer box.Close()
	if n, err := box.VerifyChain(); err != nil || n != 3 {
		t.Fatalf("the store holds %d events (%v), want 3", n, err)
	}
	evs, err := box.Events(1, 3)
	if err != nil {
		t.Fatal(err)
	}
	if evs[1].Decision != "refuse" || evs[1].Status != "red" || len(evs[1].Subject) != 10 || evs[1].Reasons[0] != "status_red" ||
		evs[0].Reasons != nil || evs[0].Gate != "checkpoint" || evs[0].ClockUncertainty != time.Second ||
		evs[0].Kind != "passage" || evs[0].Lane != "checkpoint" || evs[0].OpenedBy != "code" || evs[0].MaskedName != "张*丰" {
		t.Errorf("recorded %+v", evs[:2])
	}
	for _, secret := range []string{credential.Prefix, credentialtest.IDNumber, credentialtest.Name, "张"} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("the log holds %q", secret)
		}
	}
	// The database file holds the masked name sealed only.
	raw, err := os.ReadFile(cfg.Store.Path)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"张*丰", "张", credentialtest.IDNumber[14:]} {
		if bytes.Contains(raw, []byte(secret)) {
			t.Errorf("the database file holds %q in the clear", secret)
		}
	}
	if !strings.Contains(logs.String(), "decision=refuse") || !strings.Contains(logs.String(), "component=daemon") ||
		!strings.Contains(logs.String(), "lane=checkpoint") {
		t.Errorf("the log lacks the decisions:\n%s", logs.String())
	}
}

// scraper gathers the registry once the display has shown after lines.
type scraper struct {
	reg   *prometheus.Registry
	after int
	lines int
	got   []*dto.MetricFamily
	err   error
}

func (s *scraper) Write(p []byte) (int, error) {
	s.lines += bytes.Count(p, []byte("\n"))
	if s.got == nil && s.lines >= s.after {
		s.got, s.err = s.reg.Gather()
	}
	return len(p), nil
}

// Gather returns what was gathered.
func (s *scraper) Gather() ([]*dto.MetricFamily, error) { return s.got, s.err }

// TestNeverSynced: a checkpoint configured for a revocation list it does
// not have yet refers everybody to a second check, saying why.
func TestNeverSynced(t *testing.T) {
	f := credentialtest.New()
	pose := scene.Params{ModulePx: 3.5, CenterX: 0.5, CenterY: 0.5, Ambient: 1, Screen: 1, Gamma: 1, Noise: 2}
	cfg := gateFiles(t, f, 2*time.Second, []scene.Appearance{
		{Text: f.Text(), Start: 200 * time.Millisecond, End: 1800 * time.Millisecond, Pose: pose},
	})
	// No revocations.cbor is written.
	cfg.Metrics.Listen = "127.0.0.1:0" // the metrics server starts, and stops with the run
	var display bytes.Buffer
	if err := New(cfg, Options{Clock: clocktest.New(f.Now), Display: &display}).Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if out := display.String(); !strings.Contains(out, "REFER") || !strings.Contains(out, "revocation_list_stale") ||
		!strings.Contains(out, "张*丰 green") {
		t.Errorf("display:\n%s", out)
	}
}
