package store

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/checkpointd/checkpoint/internal/clock/clocktest"
)

// TestPrivateFieldsEncrypted: the masked name and the card's masked name
// and last characters never reach the file in the clear; they open again
// with the key, not without it, and not with another key.
func TestPrivateFieldsEncrypted(t *testing.T) {
	path := filepath.Join(t.TempDir(), "box.db")
	key := &[32]byte{1, 2, 3}
	b, err := OpenBox(path, Options{Clock: clocktest.New(t0), Key: key})
	if err != nil {
		t.Fatal(err)
	}
	const name, card = "张*丰", "李*明 …4518"
	for i := 0; i < 50; i++ {
		e := event(i)
		e.MaskedName = name
		e.ID = &IDRecord{Check: "only", Source: "reader", Masked: card}
		got, err := b.Record(context.Background(), e)
		if err != nil {
			t.Fatal(err)
		}
		if got.MaskedName != name || got.ID.Masked != card {
			t.Fatalf("Record returned %q %q, want the fields as given", got.MaskedName, got.ID.Masked)
		}
	}
	evs, err := b.Events(1, 100)
	if err != nil || len(evs) != 50 {
		t.Fatalf("Events: %d, %v", len(evs), err)
	}
	if evs[7].MaskedName != name || evs[7].ID.Masked != card {
		t.Errorf("opened with the key: %q %q", evs[7].MaskedName, evs[7].ID.Masked)
	}
	if n, err := b.VerifyChain(); err != nil || n != 50 {
		t.Errorf("VerifyChain: %d, %v", n, err)
	}
	b.Close()

	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{name, card, "4518", "张", "李"} {
		if bytes.Contains(raw, []byte(s)) {
			t.Errorf("the database file holds %q in the clear", s)
		}
	}

	b, err = OpenBox(path, Options{Clock: clocktest.New(t0)})
	if err != nil {
		t.Fatal(err)
	}
	evs, err = b.Events(1, 100)
	if err != nil || evs[0].MaskedName != "" || evs[0].ID.Masked != "" || len(evs[0].Private) == 0 {
		t.Errorf("without the key: %q %q, %v", evs[0].MaskedName, evs[0].ID.Masked, err)
	}
	b.Close()
	b, err = OpenBox(path, Options{Clock: clocktest.New(t0), Key: &[32]byte{9}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := b.Events(1, 100); !errors.Is(err, ErrPrivate) {
		t.Errorf("with another key: %v, want ErrPrivate", err)
	}
}

// TestLegacyNamesOpened: the masked names that events from before the
// encryption kept in the clear are read as the masked names, with the key
// or without it (the local API shows them from here alone).
func TestLegacyNamesOpened(t *testing.T) {
	for _, key := range []*[32]byte{nil, {1, 2, 3}} {
		e := Event{Seq: 3, LegacyName: "张*丰", ID: &IDRecord{Check: "only", LegacyMasked: "李*明 …4518"}}
		if err := openPrivate(&e, key); err != nil || e.MaskedName != "张*丰" || e.ID.Masked != "李*明 …4518" {
			t.Errorf("key %v: %q %q, %v", key != nil, e.MaskedName, e.ID.Masked, err)
		}
	}
}
