// Package storagetest is the test suite of the authority's storage: every
// implementation of internal/authority's Storage must pass it, with the
// semantics of store.Authority (tokens, uploads checked against the hash
// chain and stored once, purge declarations, revocation versions and
// digests, registrations on a proof, holders' colours and histories,
// risk areas, feeds applied once per version), also when called from many
// goroutines at once. store's tests run it on bbolt, store/postgres's on
// PostgreSQL; nothing else imports it.
package storagetest

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/checkpointd/checkpoint/internal/authority"
	"github.com/checkpointd/checkpoint/store"
)

// Storage is what the suite uses of an implementation: the server's
// Storage, and what cmd/authority uses beside it.
type Storage interface {
	authority.Storage

	DeviceEvents(device string, from uint64, limit int) ([]store.Event, error)
	Purged(device string) ([]store.ForcedPurge, error)
	SetTrustList(raw []byte) error
}

// Open returns a new, empty storage for a test, closed when the test ends.
type Open func(t *testing.T) Storage

// t0 is the suite's time.
var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// Run runs the suite, each case on a storage of its own, in parallel.
func Run(t *testing.T, open Open) {
	cases := []struct {
		name string
		run  func(*testing.T, Storage)
	}{
		{"Tokens", testTokens},
		{"EventsInOrder", testEventsInOrder},
		{"ConflictsAndBadEvents", testConflictsAndBadEvents},
		{"UnknownDevice", testUnknownDevice},
		{"PurgeDeclared", testPurgeDeclared},
		{"DeviceEvents", testDeviceEvents},
		{"RevocationExpiryAndDeltas", testExpiryAndDeltas},
		{"RevocationDigests", testRevocationDigests},
		{"TrustList", testTrustList},
		{"ConcurrentUploads", testConcurrentUploads},
		{"ConcurrentEnrolments", testConcurrentEnrolments},
		{"ConcurrentRevocations", testConcurrentRevocations},

		// holders.go
		{"Register", testRegister},
		{"RegisterKeepsColour", testRegisterKeepsColour},
		{"SameSecondCutoffs", testSameSecondCutoffs},
		{"DeclarationBeforeNewPhone", testDeclarationBeforeNewPhone},
		{"ConcurrentSameSecondCutoffs", testConcurrentSameSecondCutoffs},
		{"UpdateHolder", testUpdateHolder},
		{"ColourStateKept", testColourStateKept},
		{"ApplyFeed", testApplyFeed},
		{"FeedVersions", testFeedVersions},
		{"RiskAreas", testRiskAreas},
		{"ConcurrentRegistrations", testConcurrentRegistrations},
		{"ConcurrentHolderUpdates", testConcurrentHolderUpdates},
		{"ConcurrentFeedAndDeclarations", testConcurrentFeedAndDeclarations},
		{"ConcurrentFeeds", testConcurrentFeeds},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.run(t, open(t))
		})
	}
}

func subj(c byte) [store.SubjectSize]byte {
	var s [store.SubjectSize]byte
	for i := range s {
		s[i] = c
	}
	return s
}

// event returns event seq linked to prev, as a box records it.
func event(t *testing.T, seq uint64, prev [32]byte, gate string) (store.Event, []byte) {
	t.Helper()
	e := store.Event{Seq: seq, Time: t0.Add(time.Duration(seq) * time.Second), Kind: "scan", Decision: "pass", Gate: gate, Prev: prev}
	var err error
	if e.Hash, err = store.ChainHash(e); err != nil {
		t.Fatal(err)
	}
	raw, err := store.EncodeEvent(e)
	if err != nil {
		t.Fatal(err)
	}
	return e, raw
}

// chain is n events as a box records them: raws[i] is event i+1.
type chain struct {
	raws   [][]byte
	hashes [][32]byte
}

func chainOf(t *testing.T, n int, gate string) chain {
	t.Helper()
	var c chain
	var prev [32]byte
	for seq := uint64(1); seq <= uint64(n); seq++ {
		e, raw := event(t, seq, prev, gate)
		c.raws, c.hashes = append(c.raws, raw), append(c.hashes, e.Hash)
		prev = e.Hash
	}
	return c
}

// enrol enrols a device and returns its id.
func enrol(t *testing.T, st Storage, name string) string {
	t.Helper()
	tok := "tok-" + name
	if err := st.AddToken(tok, name, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	key := make([]byte, ed25519.PublicKeySize)
	copy(key, name)
	id, err := st.Enroll(tok, name, key, t0)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// held checks that the storage holds exactly events from..to of c for
// the device, once each, and that its mark is mark.
func held(t *testing.T, st Storage, dev string, c chain, from, to int, mark uint64) {
	t.Helper()
	evs, err := st.DeviceEvents(dev, 0, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != to-from+1 {
		t.Fatalf("%d events held, want %d (%d to %d)", len(evs), to-from+1, from, to)
	}
	for i, e := range evs {
		if e.Seq != uint64(from+i) || e.Hash != c.hashes[from+i-1] {
			t.Fatalf("held event %d is seq %d, not the box's event %d", i, e.Seq, from+i)
		}
	}
	if m, err := st.Mark(dev); err != nil || m != mark {
		t.Fatalf("mark %d, %v; want %d", m, err, mark)
	}
}

func testTokens(t *testing.T, st Storage) {
	if err := st.AddToken("tok", "gate-1", t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	key := ed25519.PublicKey(bytes.Repeat([]byte{7}, ed25519.PublicKeySize))
	if _, err := st.Enroll("nope", "gate-1", key, t0); !errors.Is(err, store.ErrBadToken) {
		t.Errorf("an unknown token: %v, want ErrBadToken", err)
	}
	if _, err := st.Enroll("tok", "gate-1", key, t0.Add(time.Hour+time.Second)); !errors.Is(err, store.ErrBadToken) {
		t.Errorf("an expired token: %v, want ErrBadToken", err)
	}
	// At its expiry a token still works, once.
	id, err := st.Enroll("tok", "gate-1", key, t0.Add(time.Hour))
	if err != nil || id == "" {
		t.Fatalf("enrolment: %q, %v", id, err)
	}
	if _, err := st.Enroll("tok", "gate-1", key, t0); !errors.Is(err, store.ErrBadToken) {
		t.Errorf("a used token: %v, want ErrBadToken", err)
	}
	// A token added again takes its new expiry.
	if err := st.AddToken("tok2", "gate-2", t0); err != nil {
		t.Fatal(err)
	}
	if err := st.AddToken("tok2", "gate-2", t0.Add(3*time.Hour)); err != nil {
		t.Fatal(err)
	}
	key2 := ed25519.PublicKey(bytes.Repeat([]byte{8}, ed25519.PublicKeySize))
	id2, err := st.Enroll("tok2", "gate-2", key2, t0.Add(2*time.Hour))
	if err != nil {
		t.Fatalf("a token added again: %v", err)
	}
	if got, err := st.DeviceKey(id); err != nil || !got.Equal(key) {
		t.Errorf("key %x, %v", got, err)
	}
	if got, err := st.DeviceKey(id2); err != nil || !got.Equal(key2) {
		t.Errorf("key %x, %v", got, err)
	}
	if _, err := st.DeviceKey("0123456789abcdef"); !errors.Is(err, store.ErrUnknownDevice) {
		t.Errorf("an unknown device's key: %v, want ErrUnknownDevice", err)
	}
	ds, err := st.Devices()
	if err != nil || len(ds) != 2 {
		t.Fatalf("devices %+v, %v", ds, err)
	}
	if !slices.IsSortedFunc(ds, func(a, b store.EnrolledDevice) int { return bytes.Compare([]byte(a.ID), []byte(b.ID)) }) {
		t.Errorf("devices not in id order: %+v", ds)
	}
	want := map[string]store.EnrolledDevice{id: {ID: id, Name: "gate-1", Enrolled: t0.Add(time.Hour)},
		id2: {ID: id2, Name: "gate-2", Enrolled: t0.Add(2 * time.Hour)}}
	for _, d := range ds {
		w := want[d.ID]
		if d.Name != w.Name || !d.Enrolled.Equal(w.Enrolled) || d.Mark != 0 {
			t.Errorf("device %+v, want %+v", d, w)
		}
	}
}

// testEventsInOrder: an upload must continue the events held without a
// gap, so that every event's link to the one before it is checked.
func testEventsInOrder(t *testing.T, st Storage) {
	dev := enrol(t, st, "gate")
	c := chainOf(t, 120, "gate")
	if mark, err := st.StoreEvents(dev, c.raws[:5]); err != nil || mark != 5 {
		t.Fatalf("events 1-5: mark %d, %v", mark, err)
	}
	if mark, err := st.StoreEvents(dev, c.raws[99:100]); !errors.Is(err, store.ErrGap) || mark != 0 {
		t.Errorf("event 100 after event 5: mark %d, %v (want ErrGap)", mark, err)
	}
	if evs, _ := st.DeviceEvents(dev, 6, 200); len(evs) != 0 {
		t.Errorf("%d events held past the gap", len(evs))
	}
	// Well formed, but not linked to event 5.
	forged := store.Event{Seq: 6, Time: t0, Kind: "scan", Decision: "pass"}
	forged.Hash, _ = store.ChainHash(forged)
	raw, _ := store.EncodeEvent(forged)
	if _, err := st.StoreEvents(dev, [][]byte{raw}); !errors.Is(err, store.ErrBadEvent) {
		t.Errorf("event 6 not linked to event 5: %v", err)
	}
	// A batch that starts inside what is held and goes on is fine.
	if mark, err := st.StoreEvents(dev, c.raws[2:120]); err != nil || mark != 120 {
		t.Errorf("events 3-120: mark %d, %v", mark, err)
	}
	// An empty batch answers the mark.
	if mark, err := st.StoreEvents(dev, nil); err != nil || mark != 120 {
		t.Errorf("an empty batch: mark %d, %v", mark, err)
	}
	held(t, st, dev, c, 1, 120, 120)
}

// testConflictsAndBadEvents: an event held with another content is a
// conflict, a malformed or unhashed one is refused, and a batch with
// either stores nothing; an upload sent again is stored once.
func testConflictsAndBadEvents(t *testing.T, st Storage) {
	dev := enrol(t, st, "gate")
	c := chainOf(t, 12, "gate")
	other := chainOf(t, 12, "other") // the same sequence numbers, other events
	if mark, err := st.StoreEvents(dev, c.raws[:5]); err != nil || mark != 5 {
		t.Fatalf("events 1-5: mark %d, %v", mark, err)
	}
	batch := append(slices.Clone(c.raws[5:7]), other.raws[2])
	if mark, err := st.StoreEvents(dev, batch); !errors.Is(err, store.ErrConflict) || mark != 0 {
		t.Errorf("events 6, 7 and another event 3: mark %d, %v; want ErrConflict", mark, err)
	}
	held(t, st, dev, c, 1, 5, 5)

	bad := store.Event{Seq: 6, Time: t0, Kind: "scan", Decision: "pass", Prev: c.hashes[4]}
	bad.Hash, _ = store.ChainHash(bad)
	bad.Decision = "refuse" // after hashing
	badRaw, _ := store.EncodeEvent(bad)
	zero := store.Event{Seq: 0, Time: t0, Kind: "scan", Decision: "pass"}
	zero.Hash, _ = store.ChainHash(zero)
	zeroRaw, _ := store.EncodeEvent(zero)
	for name, raws := range map[string][][]byte{
		"undecodable":  {c.raws[5], []byte("not an event")},
		"wrong hash":   {badRaw},
		"sequence 0":   {c.raws[5], c.raws[6], zeroRaw},
		"another's 3":  {other.raws[2], c.raws[5]},
		"gap in batch": {c.raws[5], c.raws[7]},
	} {
		_, err := st.StoreEvents(dev, raws)
		want := store.ErrBadEvent
		switch name {
		case "another's 3":
			want = store.ErrConflict
		case "gap in batch":
			want = store.ErrGap
		}
		if !errors.Is(err, want) {
			t.Errorf("%s: %v, want %v", name, err, want)
		}
	}
	held(t, st, dev, c, 1, 5, 5)

	// Sent again, and with an event twice in one batch: stored once.
	for range 2 {
		batch := append(slices.Clone(c.raws[:10]), c.raws[9])
		if mark, err := st.StoreEvents(dev, batch); err != nil || mark != 10 {
			t.Fatalf("events 1-10 again: mark %d, %v", mark, err)
		}
	}
	held(t, st, dev, c, 1, 10, 10)
	// Event 11, then another chain's 12, which does not link to it: nothing.
	if _, err := st.StoreEvents(dev, [][]byte{c.raws[10], other.raws[11]}); !errors.Is(err, store.ErrBadEvent) {
		t.Errorf("event 11 and another's 12: %v, want ErrBadEvent", err)
	}
	held(t, st, dev, c, 1, 10, 10)
}

func testUnknownDevice(t *testing.T, st Storage) {
	c := chainOf(t, 1, "gate")
	if _, err := st.StoreEvents("0123456789abcdef", c.raws); !errors.Is(err, store.ErrUnknownDevice) {
		t.Errorf("upload: %v, want ErrUnknownDevice", err)
	}
	if _, err := st.DeclarePurged("0123456789abcdef", store.ForcedPurge{From: 1, To: 2}); !errors.Is(err, store.ErrUnknownDevice) {
		t.Errorf("purge declaration: %v, want ErrUnknownDevice", err)
	}
	if _, err := st.DeviceEvents("0123456789abcdef", 0, 10); !errors.Is(err, store.ErrUnknownDevice) {
		t.Errorf("events: %v, want ErrUnknownDevice", err)
	}
	if m, err := st.Mark("0123456789abcdef"); m != 0 || err != nil {
		t.Errorf("mark %d, %v; want 0, nil", m, err)
	}
	if ps, err := st.Purged("0123456789abcdef"); len(ps) != 0 || err != nil {
		t.Errorf("purged %v, %v", ps, err)
	}
}

// testPurgeDeclared: a device declares a range purged before upload; the
// mark moves past it and the next event links to its last.
func testPurgeDeclared(t *testing.T, st Storage) {
	dev := enrol(t, st, "gate")
	c := chainOf(t, 20, "gate")
	if mark, err := st.StoreEvents(dev, c.raws[:5]); err != nil || mark != 5 {
		t.Fatalf("events 1-5: mark %d, %v", mark, err)
	}
	at := t0.Add(time.Hour)
	g := store.ForcedPurge{From: 6, To: 9, Last: c.hashes[8], At: at}
	if _, err := st.DeclarePurged(dev, store.ForcedPurge{From: 7, To: 9, Last: c.hashes[8], At: at}); !errors.Is(err, store.ErrGap) {
		t.Errorf("purged 7-9 after 5: %v; want ErrGap", err)
	}
	if mark, err := st.DeclarePurged(dev, g); err != nil || mark != 9 {
		t.Fatalf("purged 6-9: mark %d, %v", mark, err)
	}
	// Declared again (a retried upload): behind the mark, ignored.
	if mark, err := st.DeclarePurged(dev, g); err != nil || mark != 9 {
		t.Errorf("purged 6-9 again: mark %d, %v", mark, err)
	}
	ps, err := st.Purged(dev)
	if err != nil || len(ps) != 1 || ps[0].From != 6 || ps[0].To != 9 || ps[0].Last != c.hashes[8] || !ps[0].At.Equal(at) {
		t.Fatalf("purged %+v, %v", ps, err)
	}
	// An event of the purged range is not held: a gap.
	if _, err := st.StoreEvents(dev, c.raws[6:7]); !errors.Is(err, store.ErrGap) {
		t.Errorf("purged event 7 uploaded: %v, want ErrGap", err)
	}
	if mark, err := st.StoreEvents(dev, c.raws[9:12]); err != nil || mark != 12 {
		t.Fatalf("events 10-12 after the purge: mark %d, %v", mark, err)
	}
	if evs, err := st.DeviceEvents(dev, 0, 100); err != nil || len(evs) != 8 || evs[5].Seq != 10 {
		t.Errorf("events held: %d, %v", len(evs), err)
	}
	if mark, err := st.StoreEvents(dev, c.raws[9:12]); err != nil || mark != 12 {
		t.Errorf("events 10-12 again: mark %d, %v", mark, err)
	}
	// Sent again with the purged events, which the authority never held.
	if _, err := st.StoreEvents(dev, c.raws[:12]); !errors.Is(err, store.ErrGap) {
		t.Errorf("events 1-12, 6-9 purged: %v, want ErrGap", err)
	}

	// The first events purged; and a purge whose last hash is not the
	// next event's link.
	dev2 := enrol(t, st, "gate-2")
	if mark, err := st.DeclarePurged(dev2, store.ForcedPurge{From: 1, To: 3, Last: c.hashes[2], At: at}); err != nil || mark != 3 {
		t.Fatalf("purged 1-3: mark %d, %v", mark, err)
	}
	if mark, err := st.StoreEvents(dev2, c.raws[3:6]); err != nil || mark != 6 {
		t.Errorf("events 4-6 after purged 1-3: mark %d, %v", mark, err)
	}
	dev3 := enrol(t, st, "gate-3")
	if _, err := st.DeclarePurged(dev3, store.ForcedPurge{From: 1, To: 3, Last: c.hashes[1], At: at}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.StoreEvents(dev3, c.raws[3:6]); !errors.Is(err, store.ErrBadEvent) {
		t.Errorf("event 4 not linked to the purge's last: %v, want ErrBadEvent", err)
	}
	if m, _ := st.Mark(dev3); m != 3 {
		t.Errorf("mark %d, want 3", m)
	}
}

func testDeviceEvents(t *testing.T, st Storage) {
	dev := enrol(t, st, "gate")
	c := chainOf(t, 30, "gate")
	if _, err := st.StoreEvents(dev, c.raws); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		from          uint64
		limit         int
		first, number int
	}{{0, 5, 1, 5}, {1, 100, 1, 30}, {7, 4, 7, 4}, {28, 10, 28, 3}, {31, 10, 0, 0}, {1 << 62, 10, 0, 0}} {
		evs, err := st.DeviceEvents(dev, tc.from, tc.limit)
		if err != nil || len(evs) != tc.number || (tc.number > 0 && evs[0].Seq != uint64(tc.first)) {
			t.Errorf("from %d limit %d: %d events, %v", tc.from, tc.limit, len(evs), err)
			continue
		}
		for i, e := range evs {
			if e.Seq != uint64(tc.first+i) || e.Hash != c.hashes[tc.first+i-1] || e.Gate != "gate" {
				t.Errorf("from %d: event %d is %+v", tc.from, i, e)
			}
		}
	}
}

// testExpiryAndDeltas: entries leave the set at their drop-after time, as
// one new version with tombstones, and a box at any earlier version gets
// exactly the subjects changed since.
func testExpiryAndDeltas(t *testing.T, st Storage) {
	drop := func(c byte, after time.Duration) store.RevEntry {
		return store.RevEntry{Subject: subj(c), Before: t0.Unix(), DropAfter: t0.Add(after).Unix()}
	}
	if v, err := st.Revoke([]store.RevEntry{drop('a', time.Hour), drop('b', 3*time.Hour), drop('e', 9*time.Hour), drop('f', 9*time.Hour)}); err != nil || v != 1 {
		t.Fatalf("version %d, %v", v, err)
	}
	if v, err := st.Revoke([]store.RevEntry{drop('a', 2*time.Hour), drop('c', time.Hour)}); err != nil || v != 2 {
		t.Fatalf("version %d, %v", v, err)
	}
	if v, n, err := st.Expire(t0.Add(30 * time.Minute)); err != nil || n != 0 || v != 2 {
		t.Fatalf("nothing due: version %d, %d removed, %v", v, n, err)
	}
	if v, n, err := st.Expire(t0.Add(90 * time.Minute)); err != nil || n != 1 || v != 3 {
		t.Fatalf("c due: version %d, %d removed, %v", v, n, err)
	}
	if v, n, err := st.Expire(t0.Add(150 * time.Minute)); err != nil || n != 1 || v != 4 {
		t.Fatalf("a due: version %d, %d removed, %v", v, n, err)
	}
	if v, err := st.Revoke([]store.RevEntry{drop('h', 9*time.Hour)}); err != nil || v != 5 {
		t.Fatalf("version %d, %v", v, err)
	}
	v, set, err := st.RevocationState()
	if err != nil || v != 5 || set != digestOf(drop('b', 3*time.Hour), drop('e', 9*time.Hour), drop('f', 9*time.Hour), drop('h', 9*time.Hour)) {
		t.Fatalf("state: version %d, %+v, %v", v, set, err)
	}
	subjects := func(es []store.RevEntry) (live, gone []byte) {
		for _, e := range es {
			if e.Tombstone {
				gone = append(gone, e.Subject[0])
			} else {
				live = append(live, e.Subject[0])
			}
		}
		return
	}
	for _, tc := range []struct {
		since      uint64
		snapshot   bool
		live, gone string
	}{
		{0, true, "befh", ""},
		{1, false, "h", "ac"},
		{2, false, "h", "ac"},
		{3, false, "h", "a"},
		{4, false, "h", ""},
		{5, false, "", ""},
		{6, false, "", ""},
	} {
		items, snapshot, version, _, err := st.RevocationItems(tc.since)
		live, gone := subjects(items)
		if err != nil || snapshot != tc.snapshot || version != 5 || string(live) != tc.live || string(gone) != tc.gone {
			t.Errorf("since %d: snapshot %v, live %q, gone %q (%v); want %v, %q, %q",
				tc.since, snapshot, live, gone, err, tc.snapshot, tc.live, tc.gone)
		}
	}
	// A subject gone and revoked again is an entry again; one revoked
	// twice in a call keeps the later times.
	if v, err := st.Revoke([]store.RevEntry{drop('a', 5*time.Hour), drop('k', time.Hour), drop('k', 4*time.Hour), drop('k', 2*time.Hour)}); err != nil || v != 6 {
		t.Fatalf("version %d, %v", v, err)
	}
	items, snapshot, _, set, err := st.RevocationItems(4)
	if err != nil || snapshot || len(items) != 3 || items[0] != drop('a', 5*time.Hour) || items[2] != drop('k', 4*time.Hour) {
		t.Errorf("since 4: %+v, snapshot %v, %v", items, snapshot, err)
	}
	if set != digestOf(drop('a', 5*time.Hour), drop('b', 3*time.Hour), drop('e', 9*time.Hour), drop('f', 9*time.Hour), drop('h', 9*time.Hour), drop('k', 4*time.Hour)) {
		t.Errorf("set %+v", set)
	}
	// Revoked again within what it has: a new version, with no change.
	if v, err := st.Revoke([]store.RevEntry{drop('k', 3*time.Hour)}); err != nil || v != 7 {
		t.Fatalf("version %d, %v", v, err)
	}
	if items, snapshot, v, _, err := st.RevocationItems(6); err != nil || snapshot || len(items) != 0 || v != 7 {
		t.Errorf("since 6: %+v, snapshot %v, version %d, %v", items, snapshot, v, err)
	}
	// A delta larger than the set is a snapshot.
	if _, n, err := st.Expire(t0.Add(10 * time.Hour)); err != nil || n != 6 {
		t.Fatalf("all due: %d removed, %v", n, err)
	}
	if v, err := st.Revoke([]store.RevEntry{drop('z', 20*time.Hour)}); err != nil || v != 9 {
		t.Fatalf("version %d, %v", v, err)
	}
	items, snapshot, _, _, err = st.RevocationItems(1)
	if err != nil || !snapshot || len(items) != 1 || items[0] != drop('z', 20*time.Hour) {
		t.Errorf("since 1 with 1 entry left: %+v, snapshot %v, %v", items, snapshot, err)
	}
}

func digestOf(es ...store.RevEntry) store.SetDigest {
	var d store.SetDigest
	for _, e := range es {
		d.Add(e)
	}
	return d
}

// box is a checkpoint's view of the revocations: it applies what
// RevocationItems gives it.
type box struct {
	version uint64
	set     map[[store.SubjectSize]byte]store.RevEntry
}

func (b *box) apply(t *testing.T, st Storage) {
	t.Helper()
	items, snapshot, version, set, err := st.RevocationItems(b.version)
	if err != nil {
		t.Fatal(err)
	}
	if snapshot || b.set == nil {
		b.set = map[[store.SubjectSize]byte]store.RevEntry{}
	}
	if !slices.IsSortedFunc(items, func(x, y store.RevEntry) int { return bytes.Compare(x.Subject[:], y.Subject[:]) }) {
		t.Errorf("since %d: items not in subject order", b.version)
	}
	for _, e := range items {
		if e.Tombstone {
			delete(b.set, e.Subject)
		} else {
			b.set[e.Subject] = e
		}
	}
	b.version = version
	var d store.SetDigest
	for _, e := range b.set {
		d.Add(e)
	}
	if d != set {
		t.Fatalf("at version %d the box's set (%d) does not match the authority's digest (%d)", version, d.Count, set.Count)
	}
}

// testRevocationDigests: after any sequence of revocations and expiries,
// a box at any earlier version that applies what it is given ends with
// the set the authority's count and digest describe.
func testRevocationDigests(t *testing.T, st Storage) {
	r := rand.New(rand.NewPCG(1, 2))
	var boxes []*box
	now := t0
	for step := range 40 {
		if r.IntN(4) == 0 {
			now = now.Add(time.Duration(r.IntN(120)) * time.Minute)
			if _, _, err := st.Expire(now); err != nil {
				t.Fatal(err)
			}
		} else {
			var es []store.RevEntry
			for range 1 + r.IntN(4) {
				before := now.Add(-time.Duration(r.IntN(60)) * time.Minute)
				es = append(es, store.RevEntry{Subject: subj(byte('a' + r.IntN(16))), Before: before.Unix(),
					DropAfter: before.Add(time.Duration(30+r.IntN(300)) * time.Minute).Unix()})
			}
			if _, err := st.Revoke(es); err != nil {
				t.Fatal(err)
			}
		}
		if step%3 == 0 {
			boxes = append(boxes, &box{})
		}
		for _, b := range boxes {
			if r.IntN(2) == 0 {
				b.apply(t, st)
			}
		}
	}
	for _, b := range boxes {
		b.apply(t, st)
	}
}

func testTrustList(t *testing.T, st Storage) {
	if raw, err := st.TrustList(); err != nil || len(raw) != 0 {
		t.Fatalf("no trust list yet: %x, %v", raw, err)
	}
	for _, raw := range [][]byte{[]byte("list one"), []byte("list two, longer")} {
		if err := st.SetTrustList(raw); err != nil {
			t.Fatal(err)
		}
		if got, err := st.TrustList(); err != nil || !bytes.Equal(got, raw) {
			t.Errorf("trust list %q, %v; want %q", got, err, raw)
		}
	}
}

// testConcurrentUploads: goroutines upload overlapping batches of one
// device at once, as a box that retried while its first upload was still
// being stored (or two authority processes behind a load balancer) would;
// the device ends with every event once and the mark at the last. Another
// device uploads meanwhile.
func testConcurrentUploads(t *testing.T, st Storage) {
	dev, dev2 := enrol(t, st, "gate"), enrol(t, st, "gate-2")
	const n = 1200
	c, c2 := chainOf(t, n, "gate"), chainOf(t, n, "gate-2")
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	upload := func(dev string, c chain, size, overlap int) {
		defer wg.Done()
		for {
			m, err := st.Mark(dev)
			if err != nil {
				errs <- err
				return
			}
			if m >= n {
				return
			}
			from := max(0, int(m)-overlap)
			mark, err := st.StoreEvents(dev, c.raws[from:min(n, int(m)+size)])
			if err != nil || mark < m {
				errs <- fmt.Errorf("events %d on with mark %d: mark %d, %v", from+1, m, mark, err)
				return
			}
		}
	}
	for i := range 4 {
		wg.Add(1)
		go upload(dev, c, 100+50*i, 30*i)
	}
	// The same whole batch, twice at once.
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if mark, err := st.StoreEvents(dev, c.raws[:300]); err != nil || mark < 300 {
				errs <- fmt.Errorf("events 1-300: mark %d, %v", mark, err)
			}
		}()
	}
	wg.Add(1)
	go upload(dev2, c2, 200, 0)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	held(t, st, dev, c, 1, n, n)
	held(t, st, dev2, c2, 1, n, n)
}

func testConcurrentEnrolments(t *testing.T, st Storage) {
	if err := st.AddToken("once", "gate", t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok, bad := 0, 0
	for i := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := st.Enroll("once", fmt.Sprintf("gate-%d", i), bytes.Repeat([]byte{byte(i)}, 32), t0)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case errors.Is(err, store.ErrBadToken):
				bad++
			default:
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if ok != 1 || bad != 5 {
		t.Errorf("one token, six enrolments at once: %d enrolled, %d refused", ok, bad)
	}
	if ds, _ := st.Devices(); len(ds) != 1 {
		t.Errorf("%d devices", len(ds))
	}
}

func testConcurrentRevocations(t *testing.T, st Storage) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	versions := map[uint64]bool{}
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 5 {
				before := t0.Add(time.Duration(i) * time.Minute)
				es := []store.RevEntry{{Subject: subj(byte('a' + g*5 + i)), Before: before.Unix(), DropAfter: before.Add(time.Hour).Unix()},
					{Subject: subj('z'), Before: before.Unix(), DropAfter: before.Add(time.Duration(g+1) * time.Hour).Unix()}}
				v, err := st.Revoke(es)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if versions[v] {
					t.Errorf("version %d made twice", v)
				}
				versions[v] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	v, set, err := st.RevocationState()
	if err != nil || v != 20 || set.Count != 21 {
		t.Fatalf("after 20 revocations of 21 subjects: version %d, %d entries, %v", v, set.Count, err)
	}
	(&box{}).apply(t, st)
	items, _, _, _, _ := st.RevocationItems(0)
	last := items[len(items)-1]
	if last.Subject != subj('z') || last.Before != t0.Add(4*time.Minute).Unix() || last.DropAfter != t0.Add(4*time.Minute+4*time.Hour).Unix() {
		t.Errorf("the subject revoked by all: %+v", last)
	}
}
