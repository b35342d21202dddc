package sync_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/checkpointd/checkpoint/internal/credential/credentialtest"
	"github.com/checkpointd/checkpoint/internal/protocol"
	"github.com/checkpointd/checkpoint/sync"
)

// TestClockAcrossRestart: the box's wall clock is stepped while
// checkpointd is stopped. Restarted in the same boot, the boot clock
// carries the anchor: the estimate stays right and the step is reported
// and logged once. After a reboot, or with an anchor stored without a boot
// id, only the wall clock is left: it is believed with the restart
// penalty, or not trusted if it is earlier than a time already trusted.
func TestClockAcrossRestart(t *testing.T) {
	const day = 24 * time.Hour
	for _, tc := range []struct {
		name     string
		restart  bool // a new Estimator on the same store
		reboot   bool
		oldAnch  bool // the anchor was stored without a boot id
		step     time.Duration
		byWall   bool // the estimate follows the wall clock, with the restart penalty
		untrusts bool
	}{
		{name: "same process, a day ahead", step: day},
		{name: "same boot, a day ahead", restart: true, step: day},
		{name: "same boot, a day back", restart: true, step: -day},
		{name: "same boot, not stepped", restart: true},
		{name: "reboot, a day ahead", restart: true, reboot: true, step: day, byWall: true},
		{name: "reboot, a day back", restart: true, reboot: true, step: -day, untrusts: true},
		{name: "reboot, not stepped", restart: true, reboot: true, byWall: true},
		{name: "anchor without boot id, a day ahead", restart: true, oldAnch: true, step: day, byWall: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			w.mustSync()
			if tc.oldAnch {
				a, _, _ := w.box.Anchor()
				a.BootID, a.Boot = "", 0
				if err := w.box.SetAnchor(a); err != nil {
					t.Fatal(err)
				}
			}
			w.aclock.Advance(time.Hour)
			w.bclock.Advance(time.Hour)
			if tc.reboot {
				w.bclock.Reboot()
			}
			w.bclock.Set(w.bclock.Now().Add(tc.step))
			var logs bytes.Buffer
			est := w.est
			if tc.restart {
				var err error
				if est, err = sync.NewEstimator(w.bclock, w.box, -1, slog.New(slog.NewTextHandler(&logs, nil))); err != nil {
					t.Fatal(err)
				}
			}
			for range 3 {
				w.aclock.Advance(time.Minute)
				w.bclock.Advance(time.Minute)
				got, truth := est.Now(), w.aclock.Now()
				switch {
				case tc.untrusts:
					if got.Uncertainty >= 0 {
						t.Fatalf("a wall clock set back before a trusted time is trusted: %v ± %v", got.Time, got.Uncertainty)
					}
				case tc.byWall:
					if !got.Time.Equal(w.bclock.Now()) || got.Uncertainty < 2*time.Second {
						t.Fatalf("after a reboot: %v ± %v, want the wall clock %v with the restart penalty", got.Time, got.Uncertainty, w.bclock.Now())
					}
				default:
					if got.Uncertainty < 0 || got.Uncertainty > time.Second || got.Time.Sub(truth).Abs() > time.Second {
						t.Fatalf("the box thinks it is %v ± %v; it is %v", got.Time, got.Uncertainty, truth)
					}
				}
			}
			wantStep := tc.step
			if tc.byWall || tc.untrusts {
				wantStep = 0 // nothing to measure the wall clock against
			}
			if got := est.ClockStep(); (got - wantStep).Abs() > time.Second {
				t.Errorf("ClockStep %v, want %v", got, wantStep)
			}
			// A syncer of the restarted checkpoint, on the same store.
			s, err := sync.New(sync.Config{Authority: w.srv.URL, DeviceKey: credentialtest.Key("device"),
				Root: w.f.Root.Public().(ed25519.PublicKey)}, w.box, est, w.bclock, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := s.Status().ClockStep; (got - wantStep).Abs() > time.Second {
				t.Errorf("status ClockStep %v, want %v", got, wantStep)
			}
			if tc.restart {
				n := strings.Count(logs.String(), "the wall clock was stepped")
				switch {
				case wantStep == 0 && n != 0:
					t.Errorf("a step logged where none can be seen:\n%s", logs.String())
				case wantStep != 0 && (n != 1 || !strings.Contains(logs.String(), "component=clock") ||
					!strings.Contains(logs.String(), fmt.Sprintf("step_seconds=%g", wantStep.Seconds()))):
					t.Errorf("want the step logged once, with its seconds; log:\n%s", logs.String())
				}
			}
			// The next sync anchors anew: the step is no longer current.
			if err := s.SyncOnce(context.Background()); err != nil {
				t.Fatal(err)
			}
			if got := est.Now(); got.Uncertainty < 0 || got.Time.Sub(w.aclock.Now()).Abs() > time.Second || est.ClockStep() != 0 {
				t.Errorf("after the next sync: %v ± %v (truth %v), step %v", got.Time, got.Uncertainty, w.aclock.Now(), est.ClockStep())
			}
		})
	}
}

// TestSlowStatusAnswer: a status answer delayed 40 s on its way back would
// anchor the clock 20 s off with ±20 s; it still counts for the rest of the
// sync, but the clock keeps its previous anchor (or stays unsynced), and
// the status says why. A 100 ms round trip anchors.
func TestSlowStatusAnswer(t *testing.T) {
	w := newWorld(t)
	delay := func(d time.Duration) func(string, []byte) ([]byte, error) {
		return func(path string, body []byte) ([]byte, error) {
			if strings.HasPrefix(path, protocol.PathStatus) {
				w.aclock.Advance(d)
				w.bclock.Advance(d)
			}
			return body, nil
		}
	}
	w.record(3)
	w.tap.set(delay(40 * time.Second))
	w.mustSync()
	if n := w.held(); n != 3 {
		t.Fatalf("the authority holds %d events, want 3", n)
	}
	if _, ok, _ := w.box.Anchor(); ok {
		t.Error("a 40 s round trip anchored the clock")
	}
	if got := w.est.Now(); got.Uncertainty >= 0 {
		t.Errorf("an unsynced box trusts %v ± %v after a 40 s round trip", got.Time, got.Uncertainty)
	}
	if st := w.syncer.Status(); !strings.Contains(st.AnchorRefused, "40s") || st.Error != "" {
		t.Errorf("status %+v: want the sync done and the anchor refused for its 40s round trip", st)
	}

	// With an anchor in place, a slow answer leaves it.
	w.tap.set(nil)
	w.mustSync()
	before, ok, _ := w.box.Anchor()
	if !ok || w.syncer.Status().AnchorRefused != "" {
		t.Fatalf("a prompt answer did not anchor: %v, %+v", ok, w.syncer.Status())
	}
	w.aclock.Advance(time.Hour)
	w.bclock.Advance(time.Hour)
	w.record(2)
	w.tap.set(delay(40 * time.Second))
	w.mustSync()
	if after, _, _ := w.box.Anchor(); !after.Server.Equal(before.Server) || after.RTT != before.RTT {
		t.Errorf("anchor %+v replaced by %+v from a 40 s round trip", before, after)
	}
	if n := w.held(); n != 5 {
		t.Errorf("the authority holds %d events, want 5", n)
	}
	if got := w.est.Now(); got.Uncertainty < 0 || got.Time.Sub(w.aclock.Now()).Abs() > time.Second {
		t.Errorf("the box thinks it is %v ± %v; it is %v", got.Time, got.Uncertainty, w.aclock.Now())
	}
	if st := w.syncer.Status(); st.AnchorRefused == "" {
		t.Errorf("status %+v does not say the anchor was refused", st)
	}

	// 100 ms anchors, and the status no longer says refused.
	w.tap.set(delay(100 * time.Millisecond))
	w.mustSync()
	after, _, _ := w.box.Anchor()
	if after.Server.Equal(before.Server) || after.RTT != 100*time.Millisecond {
		t.Errorf("a 100 ms round trip did not anchor: %+v", after)
	}
	if got := w.est.Now(); got.Uncertainty < 0 || got.Uncertainty > 100*time.Millisecond ||
		got.Time.Sub(w.aclock.Now()).Abs() > got.Uncertainty {
		t.Errorf("the box thinks it is %v ± %v; it is %v", got.Time, got.Uncertainty, w.aclock.Now())
	}
	if st := w.syncer.Status(); st.AnchorRefused != "" {
		t.Errorf("status still says %q", st.AnchorRefused)
	}
}

// TestClockThroughSuspend: the box is suspended for an hour after a sync.
// The monotonic clock stops meanwhile; the boot clock does not, and it
// carries the estimate within the process too: the time stays right and no
// step of the wall clock is seen.
func TestClockThroughSuspend(t *testing.T) {
	w := newWorld(t)
	w.mustSync()
	w.aclock.Advance(time.Hour)
	w.bclock.Suspend(time.Hour)
	got, truth := w.est.Now(), w.aclock.Now()
	if got.Uncertainty < 0 || got.Time.Sub(truth).Abs() > time.Second {
		t.Errorf("after a suspend the box thinks it is %v ± %v; it is %v", got.Time, got.Uncertainty, truth)
	}
	if step := w.est.ClockStep(); step != 0 {
		t.Errorf("the wall clock, right through the suspend, taken as stepped by %v", step)
	}
}
