package store

import (
	"errors"
	"path/filepath"
	"testing"
	"time"
)

// TestAuthorityDropEventsBefore: the authority's retention removes the
// events recorded before the cut-off, in batches, but never a device's
// event at its mark, which the next upload links to; the upload goes on
// from the mark, and an event removed and sent again is refused as a gap.
func TestAuthorityDropEventsBefore(t *testing.T) {
	a, err := OpenAuthority(filepath.Join(t.TempDir(), "authority.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	enrol := func(tok string) string {
		t.Helper()
		if err := a.AddToken(tok, "gate", t0.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		dev, err := a.Enroll(tok, "gate", make([]byte, 32), t0)
		if err != nil {
			t.Fatal(err)
		}
		return dev
	}
	// Event n is recorded at t0 + n seconds (chainOf).
	n := dropBatch + 500
	chain := chainOf(t, n+1)
	busy, quiet, idle := enrol("t1"), enrol("t2"), enrol("t3")
	if _, err := a.StoreEvents(busy, chain[:n]); err != nil {
		t.Fatal(err)
	}
	if _, err := a.StoreEvents(quiet, chain[:10]); err != nil {
		t.Fatal(err)
	}
	_ = idle // enrolled, nothing uploaded

	// Everything before event 10,200's time: the busy box loses events
	// 1 to 10,199 (more than one batch); the quiet box's last event is
	// old but at its mark, so it keeps it.
	dropped, err := a.DropEventsBefore(t0.Add(10_200 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if want := 10_199 + 9; dropped != want {
		t.Errorf("dropped %d events, want %d", dropped, want)
	}
	held := func(dev string) (first uint64, count int) {
		t.Helper()
		evs, err := a.DeviceEvents(dev, 0, n+10)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) > 0 {
			first = evs[0].Seq
		}
		return first, len(evs)
	}
	if first, count := held(busy); first != 10_200 || count != n-10_199 {
		t.Errorf("busy box holds %d events from %d, want %d from 10200", count, first, n-10_199)
	}
	if first, count := held(quiet); first != 10 || count != 1 {
		t.Errorf("quiet box holds %d events from %d, want its mark's event 10 alone", count, first)
	}
	if m, _ := a.Mark(busy); m != uint64(n) {
		t.Errorf("busy box's mark %d, want %d", m, n)
	}
	// The next uploads link to the events kept at the marks.
	if mark, err := a.StoreEvents(quiet, chain[10:11]); err != nil || mark != 11 {
		t.Errorf("quiet box's event 11: mark %d, %v", mark, err)
	}
	if mark, err := a.StoreEvents(busy, chain[n:n+1]); err != nil || mark != uint64(n+1) {
		t.Errorf("busy box's next event: mark %d, %v", mark, err)
	}
	// A removed event sent again is a gap, not a silent re-insert.
	if _, err := a.StoreEvents(busy, chain[4:5]); !errors.Is(err, ErrGap) {
		t.Errorf("event 5 sent again after its removal: %v, want ErrGap", err)
	}
	// The quiet box's event 10 is no longer at its mark: the next run
	// removes it, and nothing else.
	if again, err := a.DropEventsBefore(t0.Add(10_200 * time.Second)); err != nil || again != 1 {
		t.Errorf("second run dropped %d, %v; want the quiet box's event 10", again, err)
	}
	if first, count := held(quiet); first != 11 || count != 1 {
		t.Errorf("quiet box holds %d events from %d, want event 11 alone", count, first)
	}
}
