package metrics

import (
	"bytes"
	"context"
	"flag"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"

	"github.com/checkpointd/checkpoint/internal/clock/clocktest"
	"github.com/checkpointd/checkpoint/scanner"
	"github.com/checkpointd/checkpoint/store"
	"github.com/checkpointd/checkpoint/sync"
)

var update = flag.Bool("update", false, "rewrite the expected metrics in testdata")

// golden compares what c reports of names with testdata/NAME.prom.
func golden(t *testing.T, name string, c prometheus.Collector, names ...string) {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	path := filepath.Join("testdata", name+".prom")
	if *update {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		for _, mf := range mfs {
			if names == nil || slices.Contains(names, mf.GetName()) {
				expfmt.MetricFamilyToText(&got, mf)
			}
		}
		if err := os.WriteFile(path, got.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := testutil.GatherAndCompare(reg, bytes.NewReader(want), names...); err != nil {
		t.Error(err)
	}
}

var t0 = time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)

// TestStoreCollector reads a real store: the disk alarm raised by a
// threshold above the free space, three events recorded, one of them
// acknowledged.
func TestStoreCollector(t *testing.T) {
	box, err := store.OpenBox(filepath.Join(t.TempDir(), "c.db"), store.Options{Clock: clocktest.New(t0), DiskLow: 1 << 62})
	if err != nil {
		t.Fatal(err)
	}
	defer box.Close()
	for range 3 {
		if _, err := box.Record(context.Background(), store.Event{Time: t0, Kind: "scan", Decision: "pass"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := box.SetMark(1); err != nil {
		t.Fatal(err)
	}
	c := NewStoreCollector(box)
	golden(t, "store", c, "checkpoint_disk_low", "checkpoint_disk_check_failed", "checkpoint_events_recorded",
		"checkpoint_events_acknowledged", "checkpoint_events_unsent", "checkpoint_store_read_failed",
		"checkpoint_revocation_list_version", "checkpoint_revocation_list_entries")
	if n := testutil.CollectAndCount(c, "checkpoint_disk_free_bytes"); n != 1 {
		t.Errorf("%d disk_free_bytes series", n)
	}
}

type fakeRevs time.Time

func (f fakeRevs) ValidUntil() time.Time { return time.Time(f) }

func TestRevocationCollector(t *testing.T) {
	clk := clocktest.New(t0)
	for _, tc := range []struct {
		name  string
		until time.Time
		now   time.Time
	}{
		{"revocations_current", t0.Add(time.Hour), t0},
		{"revocations_expired", t0.Add(time.Hour), t0.Add(2 * time.Hour)},
		{"revocations_none", time.Time{}, t0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk.Set(tc.now)
			golden(t, tc.name, NewRevocationCollector(fakeRevs(tc.until), clk))
		})
	}
}

type fakePipeline struct {
	status scanner.Status
	stats  scanner.Stats
}

func (f fakePipeline) Status() scanner.Status { return f.status }
func (f fakePipeline) Stats() scanner.Stats   { return f.stats }

func TestScannerCollector(t *testing.T) {
	p := fakePipeline{
		status: scanner.Status{Device: "/dev/video0", Kind: "camera", State: scanner.Failed, Since: t0, Opens: 3, Failures: 2, Frames: 900},
		stats: scanner.Stats{Captured: 900, Processed: 880, Dropped: 20, Reads: 40, Events: 14, Buffers: 4,
			LatencyP50: 9 * time.Millisecond, LatencyP99: 60 * time.Millisecond},
	}
	golden(t, "scanner", NewScannerCollector(map[string]Pipeline{"east": p}))
}

func TestLaneCollector(t *testing.T) {
	n := func(v uint64) func() uint64 { return func() uint64 { return v } }
	up := func(b bool) func() bool { return func() bool { return b } }
	golden(t, "lanes", NewLaneCollector([]Lane{
		{Name: "east", Passages: n(120), Readings: n(131), SensorErrors: n(3),
			Devices: map[string]func() bool{"camera": up(true), "thermometer": up(false), "id_reader": up(true)},
			Gate:    func() (uint64, bool, uint64) { return 97, true, 1 }},
		{Name: "west", Passages: n(4), Readings: n(0), SensorErrors: n(0),
			Devices: map[string]func() bool{"camera": up(true)}},
	}))
}

type fakeSyncer sync.Status

func (f fakeSyncer) Status() sync.Status { return sync.Status(f) }

func TestSyncCollector(t *testing.T) {
	golden(t, "sync", NewSyncCollector(fakeSyncer{
		LastAttempt: t0.Add(time.Minute), LastOK: t0, Failures: 2, Mark: 10, Unsent: 5,
		TrustVersion: 3, RevocationVersion: 7, Offset: -1500 * time.Millisecond,
		AnchorRefused: "round trip 40s above max_anchor_rtt 4s", ClockStep: 24 * time.Hour,
	}))
}

// TestServer scrapes /metrics over HTTP and stops the server.
func TestServer(t *testing.T) {
	reg := prometheus.NewRegistry()
	d := NewDecisions()
	reg.MustRegister(d)
	d.Add("pass", true)
	d.Add("refuse", false)
	d.Add("pass", true)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- NewServer(reg, slog.New(slog.DiscardHandler)).Serve(ctx, ln) }()
	resp, err := http.Get("http://" + ln.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`checkpoint_decisions_total{decision="pass",recorded="true"} 2`,
		`checkpoint_decisions_total{decision="refuse",recorded="false"} 1`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s:\n%s", want, body)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}
}
