package authority

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/checkpointd/checkpoint/internal/clock/clocktest"
	"github.com/checkpointd/checkpoint/internal/credential/credentialtest"
	"github.com/checkpointd/checkpoint/internal/protocol"
	"github.com/checkpointd/checkpoint/store"
)

// TestSlots: expensive work takes a slot; a request that finds none waits
// until one is given back, or answers busy after the queue time.
func TestSlots(t *testing.T) {
	clk := clocktest.New(time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC))
	s := make(slots, 1)
	if !s.take(context.Background(), clk, time.Second) {
		t.Fatal("the first take waited")
	}
	got := make(chan bool, 1)
	go func() { got <- s.take(context.Background(), clk, 10*time.Second) }()
	for clk.Waiters() == 0 {
		time.Sleep(time.Millisecond)
	}
	clk.Advance(9 * time.Second)
	select {
	case <-got:
		t.Fatal("a second take returned while the slot was held and the queue time not over")
	case <-time.After(20 * time.Millisecond):
	}
	clk.Advance(time.Second)
	if <-got {
		t.Error("a take got a slot that was never given back")
	}
	go func() { got <- s.take(context.Background(), clk, 10*time.Second) }()
	for clk.Waiters() == 0 {
		time.Sleep(time.Millisecond)
	}
	s.give()
	if !<-got {
		t.Error("a waiting take did not get the slot given back")
	}
	w := httptest.NewRecorder()
	busy(w)
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
		t.Errorf("busy: %d %v", w.Code, w.Header())
	}
}

// TestDeclarationsWaitForHashing: with every hashing slot taken, a
// declaration is answered 503 once the queue time is over, without using
// up the holder's declaration of the day; with the slot back, it is served.
func TestDeclarationsWaitForHashing(t *testing.T) {
	f := credentialtest.New()
	db, err := store.OpenAuthority(filepath.Join(t.TempDir(), "authority.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	clk := clocktest.New(f.Now)
	s := New(db, Keys{Issuer: f.Issuer, IssuerCode: "GD", List: credentialtest.Key("list"), Pseudonym: f.PseudonymKey},
		Options{Clock: clk, AdminToken: "admin", Region: "44", Declarations: true,
			Limits: Limits{Hashing: 1, Queue: 5 * time.Second}})
	body, _ := protocol.Enc.Marshal(protocol.Declaration{IDNumber: credentialtest.IDNumber, Name: credentialtest.Name,
		HolderKey: credentialtest.Key("holder").Public().(ed25519.PublicKey)})
	declare := func() int {
		r := httptest.NewRequest(http.MethodPost, protocol.PathDeclare, bytes.NewReader(body))
		r.Header.Set(protocol.HeaderAdmin, "Bearer admin")
		w := httptest.NewRecorder()
		s.Handler().ServeHTTP(w, r)
		return w.Code
	}
	s.hashing.take(context.Background(), clk, 0) // all the slots busy
	code := make(chan int, 1)
	go func() { code <- declare() }()
	for clk.Waiters() == 0 {
		time.Sleep(time.Millisecond)
	}
	clk.Advance(5 * time.Second)
	if c := <-code; c != http.StatusServiceUnavailable {
		t.Errorf("declaration with no hashing slot: %d", c)
	}
	s.hashing.give()
	if c := declare(); c != http.StatusOK {
		t.Errorf("declaration once the slot is back: %d (the refused one must not count as the day's)", c)
	}
}

// TestSeenRequests: a nonce is accepted once per device while its
// request is within the window, and forgotten after.
func TestSeenRequests(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	s := newSeenRequests(2 * time.Minute)
	if !s.add("d1", []byte("n1"), now, now) || s.add("d1", []byte("n1"), now, now) {
		t.Error("the same request was not refused the second time")
	}
	if !s.add("d2", []byte("n1"), now, now) {
		t.Error("another device's nonce was refused")
	}
	later := now.Add(3 * time.Minute)
	s.add("d3", []byte("n9"), later, later) // sweeps
	if _, ok := s.seen["d1\x00n1"]; ok {
		t.Error("a request older than the window is still remembered")
	}
}
