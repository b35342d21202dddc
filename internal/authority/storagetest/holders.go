package storagetest

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/checkpointd/checkpoint/store"
)

// The holders' side of the suite: registration proofs, holders' colours
// and histories, risk areas and feeds (docs/authority.md), alone and at
// once.

func holderKey(b byte) ed25519.PublicKey { return bytes.Repeat([]byte{b}, ed25519.PublicKeySize) }

func revOf(s [store.SubjectSize]byte, at time.Time) store.RevEntry {
	return store.RevEntry{Subject: s, Before: at.Unix(), DropAfter: at.Add(30 * 24 * time.Hour).Unix()}
}

func addCode(t *testing.T, st Storage, hash string, s [store.SubjectSize]byte, expires time.Time) {
	t.Helper()
	if err := st.AddRegistrationCode(store.RegistrationCode{Hash: []byte(hash), Subject: s, MaskedName: "王*", IDHash: []byte{1, 2},
		Operator: "office-1", Expires: expires}); err != nil {
		t.Fatal(err)
	}
}

// registerByAssertion registers key for s with a fresh assertion id.
func registerByAssertion(t *testing.T, st Storage, s [store.SubjectSize]byte, key byte, at time.Time) store.Registered {
	t.Helper()
	r, err := st.Register(store.Registration{Subject: s, Key: holderKey(key), MaskedName: "李*", IDHash: []byte{3, 4}, At: at,
		AssertionID: []byte(fmt.Sprintf("assertion-%x-%d-%d", s[:1], key, at.UnixNano())), AssertionExpires: at.Add(10 * time.Minute),
		Revoke: revOf(s, at)})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// sameState compares colour states, times by instant.
func sameState(a, b store.ColourState) bool {
	return a.Colour == b.Colour && a.Since.Equal(b.Since) && slices.Equal(a.Reasons, b.Reasons) &&
		a.QuarantineEnd.Equal(b.QuarantineEnd) && a.LastDeclaration.Equal(b.LastDeclaration) && a.DeclareNow == b.DeclareNow &&
		slices.EqualFunc(a.Holds, b.Holds, func(x, y store.Hold) bool {
			return x.Reason == y.Reason && x.Colour == y.Colour && x.End.Equal(y.End)
		})
}

// testRegister: a code registers the person it was issued for, once,
// before its expiry; an assertion id once; a new key replaces the old and
// revokes its credentials in the same transaction; expired proofs are
// forgotten.
func testRegister(t *testing.T, st Storage) {
	alice, bob := subj('a'), subj('b')
	addCode(t, st, "alice-code", alice, t0.Add(15*time.Minute))
	addCode(t, st, "old-code", alice, t0.Add(-time.Second))
	reg := func(s [store.SubjectSize]byte, key byte, name, hash string, at time.Time) (store.Registered, error) {
		return st.Register(store.Registration{Subject: s, Key: holderKey(key), MaskedName: name, At: at, CodeHash: []byte(hash),
			Revoke: revOf(s, at)})
	}
	for _, tc := range []struct {
		name string
		s    [store.SubjectSize]byte
		mask string
		hash string
		at   time.Time
	}{
		{"another person's code", bob, "王*", "alice-code", t0},
		{"the code for another name", alice, "李*", "alice-code", t0},
		{"an unknown code", alice, "王*", "guess", t0},
		{"an expired code", alice, "王*", "old-code", t0},
		{"a code at its expiry", alice, "王*", "alice-code", t0.Add(15 * time.Minute)},
	} {
		if _, err := reg(tc.s, 1, tc.mask, tc.hash, tc.at); !errors.Is(err, store.ErrBadProof) {
			t.Errorf("%s: %v, want ErrBadProof", tc.name, err)
		}
	}
	if h, err := st.Holder(alice); !errors.Is(err, store.ErrUnknownHolder) || h.Key != nil {
		t.Errorf("before registering: %+v, %v; want ErrUnknownHolder", h, err)
	}
	if _, err := st.Holder(bob); !errors.Is(err, store.ErrUnknownHolder) {
		t.Errorf("the subject a code was tried for: %v, want ErrUnknownHolder", err)
	}
	// A code refused for another person is still good for its own.
	r, err := reg(alice, 1, "王*", "alice-code", t0)
	if err != nil || r.Replaced || r.Version != 0 {
		t.Fatalf("register: %+v, %v", r, err)
	}
	h, err := st.Holder(alice)
	if err != nil || h.Subject != alice || !h.Key.Equal(holderKey(1)) || !h.Registered.Equal(t0) || h.MaskedName != "王*" ||
		!bytes.Equal(h.IDHash, []byte{1, 2}) || !h.Colour.DeclareNow || h.Colour.Colour != "" || !h.RevokedBefore.IsZero() {
		t.Fatalf("holder %+v, %v", h, err)
	}
	if _, err := reg(alice, 2, "王*", "alice-code", t0); !errors.Is(err, store.ErrBadProof) {
		t.Errorf("a used code: %v, want ErrBadProof", err)
	}
	if v, _, _ := st.RevocationState(); v != 0 {
		t.Errorf("a first registration made revocation version %d", v)
	}

	// A new phone: a new proof, the key replaced, the old one's
	// credentials revoked, as one new version.
	addCode(t, st, "alice-again", alice, t0.Add(time.Hour))
	later := t0.Add(10 * time.Minute)
	r, err = reg(alice, 2, "王*", "alice-again", later)
	if err != nil || !r.Replaced || r.Version != 1 {
		t.Fatalf("register a new phone: %+v, %v", r, err)
	}
	h, _ = st.Holder(alice)
	if !h.Key.Equal(holderKey(2)) || !h.Registered.Equal(later) || !h.RevokedBefore.Equal(later) || !h.Colour.DeclareNow {
		t.Errorf("after the new phone: %+v", h)
	}
	if items, _, v, set, _ := st.RevocationItems(0); v != 1 || set.Count != 1 || len(items) != 1 || items[0] != revOf(alice, later) {
		t.Errorf("revocations after the new phone: version %d, %+v", v, items)
	}
	// The same key registered again, on a new proof: nothing to revoke.
	addCode(t, st, "alice-third", alice, t0.Add(time.Hour))
	if r, err := reg(alice, 2, "王*", "alice-third", later.Add(time.Minute)); err != nil || r.Replaced || r.Version != 0 {
		t.Errorf("the same key again: %+v, %v", r, err)
	}
	if v, _, _ := st.RevocationState(); v != 1 {
		t.Errorf("the same key again made revocation version %d", v)
	}

	// Assertions: each id once; the masked name and ID hash are the
	// registration's.
	assert := func(id string, key byte) (store.Registered, error) {
		return st.Register(store.Registration{Subject: bob, Key: holderKey(key), MaskedName: "李*", IDHash: []byte{3, 4}, At: t0,
			AssertionID: []byte(id), AssertionExpires: t0.Add(10 * time.Minute), Revoke: revOf(bob, t0)})
	}
	if r, err := assert("assertion-1", 3); err != nil || r.Replaced {
		t.Fatalf("assertion: %+v, %v", r, err)
	}
	if _, err := assert("assertion-1", 4); !errors.Is(err, store.ErrBadProof) {
		t.Errorf("an assertion used again: %v, want ErrBadProof", err)
	}
	if h, _ := st.Holder(bob); !h.Key.Equal(holderKey(3)) || h.MaskedName != "李*" || !bytes.Equal(h.IDHash, []byte{3, 4}) {
		t.Errorf("holder by assertion: %+v", h)
	}
	for name, r := range map[string]store.Registration{
		"no proof":                   {Subject: bob, Key: holderKey(5), At: t0},
		"two proofs":                 {Subject: bob, Key: holderKey(5), At: t0, CodeHash: []byte("x"), AssertionID: []byte("y"), IDHash: []byte{1}},
		"an assertion with no hash":  {Subject: bob, Key: holderKey(5), At: t0, AssertionID: []byte("assertion-2")},
		"an empty code":              {Subject: bob, Key: holderKey(5), MaskedName: "李*", At: t0, CodeHash: []byte{}},
		"another person's used code": {Subject: bob, Key: holderKey(5), MaskedName: "王*", At: t0, CodeHash: []byte("alice-code")},
	} {
		if _, err := st.Register(r); !errors.Is(err, store.ErrBadProof) {
			t.Errorf("%s: %v, want ErrBadProof", name, err)
		}
	}
	if h, _ := st.Holder(bob); !h.Key.Equal(holderKey(3)) {
		t.Errorf("a refused registration changed the key: %x", h.Key)
	}
	// "assertion-2" was refused, so it is not used.
	if _, err := st.Register(store.Registration{Subject: bob, Key: holderKey(3), MaskedName: "李*", IDHash: []byte{3, 4}, At: t0,
		AssertionID: []byte("assertion-2"), AssertionExpires: t0.Add(5 * time.Minute)}); err != nil {
		t.Errorf("an assertion refused once, then given right: %v", err)
	}

	// Expired proofs are forgotten; those still good are kept. At 20
	// minutes: the expired code and both used assertions; "alice-code"
	// and "alice-again" were used.
	addCode(t, st, "good-code", bob, t0.Add(time.Hour))
	if n, err := st.ExpireProofs(t0.Add(20 * time.Minute)); err != nil || n != 3 {
		t.Errorf("ExpireProofs: %d, %v; want 3", n, err)
	}
	if n, err := st.ExpireProofs(t0.Add(20 * time.Minute)); err != nil || n != 0 {
		t.Errorf("ExpireProofs again: %d, %v; want 0", n, err)
	}
	if _, err := reg(alice, 3, "王*", "old-code", t0.Add(-time.Hour)); !errors.Is(err, store.ErrBadProof) {
		t.Errorf("a forgotten code: %v, want ErrBadProof", err)
	}
	// A forgotten assertion id is refused by its expiry, not by the store.
	if _, err := assert("assertion-1", 3); err != nil {
		t.Errorf("an assertion id forgotten after its expiry: %v", err)
	}
	if _, err := st.Register(store.Registration{Subject: bob, Key: holderKey(3), MaskedName: "王*", At: t0.Add(30 * time.Minute),
		CodeHash: []byte("good-code")}); err != nil {
		t.Errorf("a code kept by ExpireProofs: %v", err)
	}
	// A code added again under its hash takes the new binding.
	addCode(t, st, "again", alice, t0.Add(time.Minute))
	addCode(t, st, "again", bob, t0.Add(time.Hour))
	if _, err := st.Register(store.Registration{Subject: bob, Key: holderKey(3), MaskedName: "王*", At: t0.Add(30 * time.Minute),
		CodeHash: []byte("again")}); err != nil {
		t.Errorf("a code added again: %v", err)
	}
}

// testRegisterKeepsColour: a subject coloured by a feed before it
// registers keeps its colour, history and revocation when it registers,
// and may declare at once.
func testRegisterKeepsColour(t *testing.T, st Storage) {
	s := subj('k')
	state := store.ColourState{Colour: "red", Since: t0, Reasons: []string{"case"}, QuarantineEnd: t0.Add(14 * 24 * time.Hour),
		Holds: []store.Hold{{Reason: "case", Colour: "red", End: t0.Add(14 * 24 * time.Hour)}}, DeclareNow: true}
	res, err := st.ApplyFeed(store.FeedUpdate{Kind: store.FeedCases, Issuer: "k1", Version: 1, Digest: [32]byte{1}, Applied: t0,
		Listings: []store.Listing{{Subject: s, Since: t0}}}, func(h store.Holder) (*store.HolderUpdate, error) {
		if h.Key != nil || !h.Case.Equal(t0) {
			t.Errorf("an unregistered subject on a case feed: %+v", h)
		}
		rev := revOf(s, t0)
		return &store.HolderUpdate{Colour: state, Change: &store.ColourChange{At: t0, Colour: "red", Reasons: []string{"case"}, Cause: "feed"},
			Revoke: &rev}, nil
	})
	if err != nil || !res.Applied || res.Changed != 1 || res.Version != 1 {
		t.Fatalf("feed: %+v, %v", res, err)
	}
	if _, err := st.Holder(s); !errors.Is(err, store.ErrUnknownHolder) {
		t.Errorf("coloured, not registered: %v, want ErrUnknownHolder", err)
	}
	later := t0.Add(time.Hour)
	if r := registerByAssertion(t, st, s, 1, later); r.Replaced || r.Version != 0 {
		t.Errorf("the first key of a coloured subject: %+v", r)
	}
	h, err := st.Holder(s)
	want := state
	want.DeclareNow = true
	if err != nil || !sameState(h.Colour, want) || !h.Case.Equal(t0) || !h.RevokedBefore.Equal(t0) || !h.Registered.Equal(later) {
		t.Errorf("registered after the feed: %+v, %v", h, err)
	}
	if hist, _ := st.ColourHistory(s, 10); len(hist) != 1 || hist[0].Cause != "feed" {
		t.Errorf("history %+v", hist)
	}
}

// cutoff is the subject's entry on the revocation list (zero: none).
func cutoff(t *testing.T, st Storage, s [store.SubjectSize]byte) store.RevEntry {
	t.Helper()
	items, _, _, _, err := st.RevocationItems(0)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range items {
		if e.Subject == s {
			return e
		}
	}
	return store.RevEntry{}
}

// testSameSecondCutoffs: a credential issued in the second of a colour
// change is dated the second after its cut-off; a new phone registered,
// or an operator's revocation without a time (RevokeNow), in that same
// second revokes it: their cut-off is the later of the one asked for and
// the second after the subject's, decided in the transaction, with the
// drop-after time moved as far. Revoke, an operator's revocation at a
// time given, applies its cut-off as given.
func testSameSecondCutoffs(t *testing.T, st Storage) {
	s := subj('s')
	registerByAssertion(t, st, s, 1, t0)
	// A declaration changes the colour at T: cut-off T, its credential
	// dated T+1.
	at := t0.Add(time.Hour)
	if _, err := st.UpdateHolder(s, func(h store.Holder) (*store.HolderUpdate, error) {
		rev := revOf(s, at)
		return &store.HolderUpdate{Colour: store.ColourState{Colour: "yellow", Since: at}, Revoke: &rev}, nil
	}); err != nil {
		t.Fatal(err)
	}
	// A new phone in the same second, asking for T.
	r := registerByAssertion(t, st, s, 2, at)
	if !r.Replaced || r.Version != 2 {
		t.Fatalf("a new phone: %+v", r)
	}
	want := revOf(s, at.Add(time.Second))
	if e := cutoff(t, st, s); e != want {
		t.Errorf("a new phone in the second of a colour change: %+v, want %+v (the credential dated the second after the change revoked)", e, want)
	}
	if h, _ := st.Holder(s); !h.RevokedBefore.Equal(at.Add(time.Second)) {
		t.Errorf("the holder's cut-off %v", h.RevokedBefore)
	}
	// A cut-off asked for later than that is taken as it is.
	later := at.Add(time.Minute)
	registerByAssertion(t, st, s, 3, later)
	if e := cutoff(t, st, s); e != revOf(s, later) {
		t.Errorf("a new phone a minute later: %+v, want %+v", e, revOf(s, later))
	}

	// The operator's revocations: without a time (RevokeNow), the first
	// of a subject is as asked; in the same second again, the second
	// after.
	u := subj('u')
	if v, err := st.RevokeNow(revOf(u, at)); err != nil || v != 4 {
		t.Fatalf("RevokeNow: version %d, %v", v, err)
	}
	if e := cutoff(t, st, u); e != revOf(u, at) {
		t.Errorf("the first revocation of a subject, now: %+v, want %+v", e, revOf(u, at))
	}
	if _, err := st.RevokeNow(revOf(u, at)); err != nil {
		t.Fatal(err)
	}
	if e := cutoff(t, st, u); e != revOf(u, at.Add(time.Second)) {
		t.Errorf("a revocation, now, in the second of the cut-off: %+v, want %+v", e, revOf(u, at.Add(time.Second)))
	}
	if _, err := st.RevokeNow(revOf(u, later)); err != nil {
		t.Fatal(err)
	}
	if e := cutoff(t, st, u); e != revOf(u, later) {
		t.Errorf("a revocation, now, a minute later: %+v, want %+v", e, revOf(u, later))
	}
	// At a time given: as given (an earlier one is covered already).
	if _, err := st.Revoke([]store.RevEntry{revOf(u, later)}); err != nil {
		t.Fatal(err)
	}
	if e := cutoff(t, st, u); e != revOf(u, later) {
		t.Errorf("a revocation at a time given, the cut-off's: %+v, want %+v", e, revOf(u, later))
	}
	(&box{}).apply(t, st)
}

// testDeclarationBeforeNewPhone: a declaration by the old key recorded
// after the server chose a new phone's cut-off (between its reading the
// clock and the registration's transaction) is dated after that cut-off
// (its second, or the second after on a colour change); the
// registration's revocation moves its cut-off, in the transaction, to the
// second after the subject's last declaration, with the drop-after
// time moved as far, so that its credential is revoked with the rest. A
// cut-off asked for after the last declaration is taken as it is.
func testDeclarationBeforeNewPhone(t *testing.T, st Storage) {
	s := subj('n')
	registerByAssertion(t, st, s, 1, t0)
	// The server reads the clock at T for a new phone's cut-off; before
	// its transaction, the old key declares in the second after: no
	// colour change, so no revocation, and its credential is dated T+1.
	at := t0.Add(time.Hour)
	declared := at.Add(time.Second)
	if _, err := st.UpdateHolder(s, func(h store.Holder) (*store.HolderUpdate, error) {
		c := store.ColourState{Colour: "green", Since: t0, Reasons: []string{"clean_declaration"}, LastDeclaration: declared}
		return &store.HolderUpdate{Colour: c}, nil
	}); err != nil {
		t.Fatal(err)
	}
	r := registerByAssertion(t, st, s, 2, at)
	if !r.Replaced || r.Version != 1 {
		t.Fatalf("a new phone: %+v", r)
	}
	if e, want := cutoff(t, st, s), revOf(s, declared.Add(time.Second)); e != want {
		t.Errorf("a new phone after a declaration it did not see: %+v, want %+v (a credential dated the declaration's second, or the second after, revoked)", e, want)
	}
	// Again, the declaration changing the colour: its own cut-off is its
	// second, its credential dated the second after.
	changed := declared.Add(3 * time.Second)
	if _, err := st.UpdateHolder(s, func(h store.Holder) (*store.HolderUpdate, error) {
		c := store.ColourState{Colour: "yellow", Since: changed, Reasons: []string{"fever"}, LastDeclaration: changed}
		rev := revOf(s, changed)
		return &store.HolderUpdate{Colour: c, Revoke: &rev}, nil
	}); err != nil {
		t.Fatal(err)
	}
	registerByAssertion(t, st, s, 3, declared)
	if e, want := cutoff(t, st, s), revOf(s, changed.Add(time.Second)); e != want {
		t.Errorf("a new phone after a colour change it did not see: %+v, want %+v", e, want)
	}
	// A cut-off asked for after the last declaration is as asked.
	later := changed.Add(time.Minute)
	registerByAssertion(t, st, s, 4, later)
	if e := cutoff(t, st, s); e != revOf(s, later) {
		t.Errorf("a new phone a minute after the last declaration: %+v, want %+v", e, revOf(s, later))
	}
	if h, _ := st.Holder(s); !h.Colour.LastDeclaration.Equal(changed) || !h.Colour.DeclareNow || !h.RevokedBefore.Equal(later) {
		t.Errorf("the holder after the new phones: %+v", h)
	}
	(&box{}).apply(t, st)
}

// testConcurrentSameSecondCutoffs: new phones and operators' revocations
// without a time, all at once and all asking for the same second, each
// move the subject's cut-off one second on: each reads the cut-off it
// replaces in its own transaction.
func testConcurrentSameSecondCutoffs(t *testing.T, st Storage) {
	s := subj('t')
	registerByAssertion(t, st, s, 1, t0)
	const phones, revocations = 4, 6
	var wg sync.WaitGroup
	var mu sync.Mutex
	versions := map[uint64]bool{}
	record := func(v uint64, err error) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err != nil:
			t.Error(err)
		case versions[v]:
			t.Errorf("version %d made twice", v)
		}
		versions[v] = true
	}
	for i := range phones {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := st.Register(store.Registration{Subject: s, Key: holderKey(byte(10 + i)), MaskedName: "李*", IDHash: []byte{3, 4}, At: t0,
				AssertionID: []byte(fmt.Sprintf("assertion-at-once-%d", i)), AssertionExpires: t0.Add(10 * time.Minute), Revoke: revOf(s, t0)})
			if err == nil && !r.Replaced {
				err = fmt.Errorf("phone %d replaced none", i)
			}
			record(r.Version, err)
		}()
	}
	for range revocations {
		wg.Add(1)
		go func() {
			defer wg.Done()
			record(st.RevokeNow(revOf(s, t0)))
		}()
	}
	wg.Wait()
	// The first revocation is t0's; each after it a second later.
	want := revOf(s, t0.Add((phones+revocations-1)*time.Second))
	if e := cutoff(t, st, s); e != want {
		t.Errorf("after %d revocations at once in one second: %+v, want %+v", phones+revocations, e, want)
	}
	if v, _, _ := st.RevocationState(); v != phones+revocations || len(versions) != phones+revocations {
		t.Errorf("version %d, %d versions made; want %d", v, len(versions), phones+revocations)
	}
	(&box{}).apply(t, st)
}

// testUpdateHolder: the callback sees what is held and its update is
// recorded whole, or nothing is.
func testUpdateHolder(t *testing.T, st Storage) {
	s := subj('c')
	failed := errors.New("refused")
	if _, err := st.UpdateHolder(s, func(h store.Holder) (*store.HolderUpdate, error) {
		if h.Subject != s || h.Key != nil || h.Colour.Colour != "" || !h.Case.IsZero() || !h.RevokedBefore.IsZero() {
			t.Errorf("an unknown subject: %+v", h)
		}
		rev := revOf(s, t0)
		return &store.HolderUpdate{Colour: store.ColourState{Colour: "red"}, Change: &store.ColourChange{At: t0, Colour: "red"}, Revoke: &rev}, failed
	}); err != failed {
		t.Errorf("a failing callback: %v, want its error as it is", err)
	}
	if v, _, _ := st.RevocationState(); v != 0 {
		t.Errorf("a failing callback's revocation was added: version %d", v)
	}
	v, err := st.UpdateHolder(s, func(h store.Holder) (*store.HolderUpdate, error) {
		if h.Colour.Colour != "" {
			t.Errorf("a failing callback's colour was recorded: %+v", h.Colour)
		}
		return nil, nil
	})
	if err != nil || v != 0 {
		t.Errorf("nothing to record: %d, %v", v, err)
	}
	if hist, err := st.ColourHistory(s, 10); len(hist) != 0 || err != nil {
		t.Errorf("history after nothing was recorded: %v, %v", hist, err)
	}
	state := store.ColourState{Colour: "yellow", Since: t0, Reasons: []string{"close_contact"}, QuarantineEnd: t0.Add(time.Hour),
		Holds: []store.Hold{{Reason: "close_contact", Colour: "yellow", End: t0.Add(time.Hour)}}}
	for i := range 3 {
		at := t0.Add(time.Duration(i) * time.Minute)
		rev := revOf(s, at)
		v, err = st.UpdateHolder(s, func(store.Holder) (*store.HolderUpdate, error) {
			return &store.HolderUpdate{Colour: state, Change: &store.ColourChange{At: at, From: "green", Colour: "yellow",
				Reasons: []string{"close_contact"}, QuarantineEnd: at.Add(time.Hour), Cause: "feed"}, Revoke: &rev}, nil
		})
		if err != nil || v != uint64(i+1) {
			t.Fatalf("update %d: version %d, %v", i, v, err)
		}
	}
	// A colour state without a change: no history entry, no revocation.
	state.LastDeclaration = t0.Add(5 * time.Minute)
	if v, err := st.UpdateHolder(s, func(store.Holder) (*store.HolderUpdate, error) {
		return &store.HolderUpdate{Colour: state}, nil
	}); err != nil || v != 0 {
		t.Errorf("a state alone: version %d, %v", v, err)
	}
	if _, err := st.Holder(s); !errors.Is(err, store.ErrUnknownHolder) {
		t.Errorf("a subject with a colour and no key: %v, want ErrUnknownHolder", err)
	}
	var seen store.Holder
	if _, err := st.UpdateHolder(s, func(h store.Holder) (*store.HolderUpdate, error) { seen = h; return nil, nil }); err != nil {
		t.Fatal(err)
	}
	if !sameState(seen.Colour, state) || !seen.RevokedBefore.Equal(t0.Add(2*time.Minute)) || seen.Key != nil {
		t.Errorf("held: %+v", seen)
	}
	hist, err := st.ColourHistory(s, 2)
	if err != nil || len(hist) != 2 || !hist[0].At.Equal(t0.Add(time.Minute)) || !hist[1].At.Equal(t0.Add(2*time.Minute)) {
		t.Fatalf("the last two changes, oldest first: %+v, %v", hist, err)
	}
	if c := hist[1]; c.From != "green" || c.Colour != "yellow" || !slices.Equal(c.Reasons, []string{"close_contact"}) ||
		!c.QuarantineEnd.Equal(t0.Add(2*time.Minute+time.Hour)) || c.Cause != "feed" {
		t.Errorf("a change read back: %+v", c)
	}
	if all, _ := st.ColourHistory(s, 100); len(all) != 3 || !all[0].At.Equal(t0) {
		t.Errorf("the whole history: %+v", all)
	}
	if none, _ := st.ColourHistory(s, 0); len(none) != 0 {
		t.Errorf("no entries asked for: %+v", none)
	}
	if other, _ := st.ColourHistory(subj('d'), 10); len(other) != 0 {
		t.Errorf("another subject's history: %v", other)
	}
	// A registered holder's update keeps its key and registration.
	registerByAssertion(t, st, s, 7, t0.Add(time.Hour))
	if _, err := st.UpdateHolder(s, func(h store.Holder) (*store.HolderUpdate, error) {
		return &store.HolderUpdate{Colour: store.ColourState{Colour: "green", Since: t0.Add(2 * time.Hour)}}, nil
	}); err != nil {
		t.Fatal(err)
	}
	if h, err := st.Holder(s); err != nil || !h.Key.Equal(holderKey(7)) || !h.Registered.Equal(t0.Add(time.Hour)) || h.Colour.Colour != "green" ||
		h.Colour.DeclareNow {
		t.Errorf("after an update of a registered holder: %+v, %v", h, err)
	}
}

// testColourStateKept: every field of a colour state and of a change is
// read back as it was recorded: empty and absent reasons and holds, zero
// times, times in other zones. (The server's times are whole seconds; the
// bbolt store keeps sub-second times only to about a microsecond.)
func testColourStateKept(t *testing.T, st Storage) {
	cst := time.FixedZone("CST", 8*3600)
	for i, state := range []store.ColourState{
		{},
		{Colour: "green", Since: t0, Reasons: []string{}, Holds: []store.Hold{}},
		{Colour: "yellow", Since: t0.Add(time.Second).In(cst), Reasons: []string{"declared_fever", "risk_area_travel"},
			QuarantineEnd: t0.Add(72 * time.Hour), LastDeclaration: t0.Add(-time.Hour), DeclareNow: true,
			Holds: []store.Hold{{Reason: "declared_fever", Colour: "yellow", End: t0.Add(72 * time.Hour)},
				{Reason: "risk_area_travel", Colour: "yellow", End: t0.Add(48 * time.Hour).In(cst)}, {Reason: "odd"}}},
	} {
		s := subj(byte('0' + i))
		change := store.ColourChange{At: t0.Add(time.Duration(i) * time.Second).In(cst), From: "", Colour: state.Colour, Reasons: state.Reasons,
			QuarantineEnd: state.QuarantineEnd, Cause: "declaration"}
		if _, err := st.UpdateHolder(s, func(store.Holder) (*store.HolderUpdate, error) {
			return &store.HolderUpdate{Colour: state, Change: &change}, nil
		}); err != nil {
			t.Fatal(err)
		}
		var got store.ColourState
		if _, err := st.UpdateHolder(s, func(h store.Holder) (*store.HolderUpdate, error) { got = h.Colour; return nil, nil }); err != nil {
			t.Fatal(err)
		}
		if !sameState(got, state) || (got.Reasons == nil) != (state.Reasons == nil) || (got.Holds == nil) != (state.Holds == nil) {
			t.Errorf("state %d: read back %+v, recorded %+v", i, got, state)
		}
		hist, err := st.ColourHistory(s, 10)
		if err != nil || len(hist) != 1 {
			t.Fatalf("state %d: history %+v, %v", i, hist, err)
		}
		c := hist[0]
		if !c.At.Equal(change.At) || c.From != change.From || c.Colour != change.Colour || !slices.Equal(c.Reasons, change.Reasons) ||
			!c.QuarantineEnd.Equal(change.QuarantineEnd) || c.Cause != change.Cause {
			t.Errorf("state %d: change read back %+v, recorded %+v", i, c, change)
		}
	}
}

// testApplyFeed: a feed's rows and version are recorded, each subject it
// names reassessed once, in the order of first appearance, with the new
// listing, and its revocations added as one version; the same version
// again is applied once; a version at or below the last with other
// content is refused; a failing reassessment records nothing.
func testApplyFeed(t *testing.T, st Storage) {
	x, y, z := subj('x'), subj('y'), subj('z')
	registerByAssertion(t, st, y, 1, t0.Add(-time.Hour))
	feed := store.FeedUpdate{Kind: store.FeedCloseContacts, Issuer: "k1", Version: 3, Digest: [32]byte{3}, Applied: t0,
		Listings: []store.Listing{{Subject: x, Since: t0.Add(-time.Hour)}, {Subject: y, Since: t0}, {Subject: z, Since: t0},
			{Subject: x, Since: t0.Add(-30 * time.Minute)}}}
	var calls [][store.SubjectSize]byte
	reassess := func(h store.Holder) (*store.HolderUpdate, error) {
		calls = append(calls, h.Subject)
		if h.Subject == x && !h.CloseContact.Equal(t0.Add(-30*time.Minute)) {
			t.Errorf("x reassessed with the listing since %v, want the later row's", h.CloseContact)
		}
		if h.Subject == y && !h.Key.Equal(holderKey(1)) {
			t.Errorf("y reassessed without its key: %+v", h)
		}
		if h.Subject == z {
			return nil, nil // nothing changes for z
		}
		rev := revOf(h.Subject, t0)
		return &store.HolderUpdate{Colour: store.ColourState{Colour: "yellow"}, Change: &store.ColourChange{At: t0, Colour: "yellow", Cause: "feed"},
			Revoke: &rev}, nil
	}
	res, err := st.ApplyFeed(feed, reassess)
	if err != nil || !res.Applied || res.Subjects != 3 || res.Changed != 2 || res.Version != 1 ||
		!slices.Equal(calls, [][store.SubjectSize]byte{x, y, z}) {
		t.Fatalf("apply: %+v, %v, reassessed %v", res, err, calls)
	}
	if v, set, _ := st.RevocationState(); v != 1 || set.Count != 2 {
		t.Errorf("version %d, %d revocations; want 1, 2", v, set.Count)
	}
	for _, s := range [][store.SubjectSize]byte{x, y} {
		if _, err := st.UpdateHolder(s, func(h store.Holder) (*store.HolderUpdate, error) {
			if h.Colour.Colour != "yellow" || !h.RevokedBefore.Equal(t0) || h.CloseContact.IsZero() || !h.Case.IsZero() {
				t.Errorf("%c after the feed: %+v", s[0], h)
			}
			return nil, nil
		}); err != nil {
			t.Fatal(err)
		}
		if hist, _ := st.ColourHistory(s, 10); len(hist) != 1 {
			t.Errorf("%c's history: %+v", s[0], hist)
		}
	}
	if _, err := st.UpdateHolder(z, func(h store.Holder) (*store.HolderUpdate, error) {
		if !h.CloseContact.Equal(t0) || h.Colour.Colour != "" {
			t.Errorf("z after the feed: %+v", h)
		}
		return nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	calls = nil
	if res, err := st.ApplyFeed(feed, reassess); err != nil || res.Applied || res.Subjects != 0 || res.Version != 0 || len(calls) != 0 {
		t.Errorf("the same feed again: %+v, %v, reassessed %v", res, err, calls)
	}
	other := feed
	other.Digest = [32]byte{4}
	if _, err := st.ApplyFeed(other, reassess); !errors.Is(err, store.ErrFeedVersion) {
		t.Errorf("version 3 with other content: %v, want ErrFeedVersion", err)
	}
	other.Version = 2
	if _, err := st.ApplyFeed(other, reassess); !errors.Is(err, store.ErrFeedVersion) {
		t.Errorf("version 2, never applied, after 3: %v, want ErrFeedVersion", err)
	}
	if len(calls) != 0 {
		t.Errorf("refused feeds reassessed %v", calls)
	}
	// Another issuer counts its own versions; a cases feed is another
	// list. A failing reassessment records nothing of the feed.
	cases := store.FeedUpdate{Kind: store.FeedCases, Issuer: "k2", Version: 1, Digest: [32]byte{1}, Applied: t0,
		Listings: []store.Listing{{Subject: y, Since: t0.Add(time.Minute)}, {Subject: subj('w'), Since: t0}}}
	rulesFailed := errors.New("rules failed")
	if _, err := st.ApplyFeed(cases, func(h store.Holder) (*store.HolderUpdate, error) {
		if h.Subject == y {
			rev := revOf(y, t0.Add(time.Minute))
			return &store.HolderUpdate{Colour: store.ColourState{Colour: "red"}, Revoke: &rev}, nil
		}
		return nil, rulesFailed
	}); err != rulesFailed {
		t.Errorf("a failing reassessment: %v, want its error as it is", err)
	}
	if _, err := st.UpdateHolder(y, func(h store.Holder) (*store.HolderUpdate, error) {
		if !h.Case.IsZero() || h.Colour.Colour != "yellow" {
			t.Errorf("y after a failed feed: %+v", h)
		}
		return nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	if v, _, _ := st.RevocationState(); v != 1 {
		t.Errorf("a failed feed added revocation version %d", v)
	}
	if res, err := st.ApplyFeed(cases, func(h store.Holder) (*store.HolderUpdate, error) {
		if h.Subject == y && (!h.Case.Equal(t0.Add(time.Minute)) || !h.CloseContact.Equal(t0)) {
			t.Errorf("y's listings: case %v, contact %v", h.Case, h.CloseContact)
		}
		return nil, nil
	}); err != nil || !res.Applied || res.Subjects != 2 || res.Changed != 0 || res.Version != 0 {
		t.Errorf("the cases feed after a failed attempt: %+v, %v", res, err)
	}
	if v, _, _ := st.RevocationState(); v != 1 {
		t.Errorf("a feed that changed nothing made revocation version %d", v)
	}
	// A later row for the same subject replaces the earlier, on the next
	// version; nothing else is kept of the earlier.
	cases.Version, cases.Digest, cases.Listings = 2, [32]byte{2}, []store.Listing{{Subject: y, Since: t0.Add(2 * time.Minute)}}
	if _, err := st.ApplyFeed(cases, func(h store.Holder) (*store.HolderUpdate, error) {
		if !h.Case.Equal(t0.Add(2 * time.Minute)) {
			t.Errorf("y's case listing since %v, want the later feed's", h.Case)
		}
		return nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.ApplyFeed(store.FeedUpdate{Kind: "vaccinations", Version: 1}, reassess); !errors.Is(err, store.ErrFeedKind) {
		t.Errorf("an unknown kind: %v, want ErrFeedKind", err)
	}
	// An empty feed is a version like another.
	if res, err := st.ApplyFeed(store.FeedUpdate{Kind: store.FeedCases, Issuer: "k3", Version: 1, Digest: [32]byte{7}}, reassess); err != nil ||
		!res.Applied || res.Subjects != 0 {
		t.Errorf("an empty feed: %+v, %v", res, err)
	}
}

// testFeedVersions: versions count per kind and issuer, from 1, over the
// whole unsigned 64-bit range.
func testFeedVersions(t *testing.T, st Storage) {
	none := func(store.Holder) (*store.HolderUpdate, error) { return nil, nil }
	apply := func(kind, issuer string, version uint64, digest byte) (store.FeedResult, error) {
		return st.ApplyFeed(store.FeedUpdate{Kind: kind, Issuer: issuer, Version: version, Digest: [32]byte{digest}, Applied: t0}, none)
	}
	if _, err := apply(store.FeedRiskAreas, "k1", 0, 1); !errors.Is(err, store.ErrFeedVersion) {
		t.Errorf("version 0: %v, want ErrFeedVersion", err)
	}
	for _, tc := range []struct {
		kind, issuer string
		version      uint64
		digest       byte
		applied      bool
		err          error
	}{
		{store.FeedRiskAreas, "k1", 5, 1, true, nil},
		{store.FeedRiskAreas, "k2", 1, 2, true, nil},
		{store.FeedCases, "k1", 1, 3, true, nil},
		{store.FeedCloseContacts, "k1", 2, 4, true, nil},
		{store.FeedRiskAreas, "k1", 4, 1, false, store.ErrFeedVersion},
		{store.FeedRiskAreas, "k1", 5, 1, false, nil},
		{store.FeedRiskAreas, "k1", math.MaxInt64, 5, true, nil},
		{store.FeedRiskAreas, "k1", math.MaxInt64 + 1, 6, true, nil},
		{store.FeedRiskAreas, "k1", math.MaxInt64 + 1, 6, false, nil},
		{store.FeedRiskAreas, "k1", math.MaxInt64, 5, false, nil},
		{store.FeedRiskAreas, "k1", math.MaxInt64 + 1, 7, false, store.ErrFeedVersion},
		{store.FeedRiskAreas, "k1", 6, 8, false, store.ErrFeedVersion},
		{store.FeedRiskAreas, "k1", math.MaxUint64, 9, true, nil},
		{store.FeedRiskAreas, "k1", math.MaxUint64, 9, false, nil},
		{store.FeedRiskAreas, "k2", 2, 10, true, nil},
	} {
		res, err := apply(tc.kind, tc.issuer, tc.version, tc.digest)
		if res.Applied != tc.applied || !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
			t.Errorf("%s by %s, version %d, digest %d: %+v, %v; want applied %v, %v", tc.kind, tc.issuer, tc.version, tc.digest,
				res, err, tc.applied, tc.err)
		}
	}
}

// testRiskAreas: an area is found from a region within it and from one it
// lies within; a later feed's row for the same region and start replaces
// the earlier; each listing comes once.
func testRiskAreas(t *testing.T, st Storage) {
	none := func(store.Holder) (*store.HolderUpdate, error) { return nil, nil }
	day := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	areas := store.FeedUpdate{Kind: store.FeedRiskAreas, Issuer: "k1", Version: 1, Digest: [32]byte{9}, Areas: []store.RiskArea{
		{Region: "440111", From: day}, {Region: "440304", From: day, To: day.AddDate(0, 0, 5)}, {Region: "4501", From: day},
		{Region: "4501", From: day.AddDate(0, 0, 3), To: day.AddDate(0, 0, 4)}, {Region: "44030", From: day.Add(500 * time.Millisecond)},
		{Region: "44030", From: day, To: day.AddDate(0, 0, 1)}}}
	if res, err := st.ApplyFeed(areas, none); err != nil || !res.Applied || res.Subjects != 0 {
		t.Fatalf("risk areas: %+v, %v", res, err)
	}
	areas.Version, areas.Digest, areas.Areas = 2, [32]byte{10}, []store.RiskArea{{Region: "440304", From: day, To: day.AddDate(0, 0, 2)}}
	if _, err := st.ApplyFeed(areas, none); err != nil {
		t.Fatal(err)
	}
	// Risk areas from another issuer are listed alike.
	if _, err := st.ApplyFeed(store.FeedUpdate{Kind: store.FeedRiskAreas, Issuer: "k2", Version: 1, Digest: [32]byte{11},
		Areas: []store.RiskArea{{Region: "6101", From: day.AddDate(0, 0, 1)}}}, none); err != nil {
		t.Fatal(err)
	}
	type found struct {
		region   string
		from, to time.Time
	}
	for _, tc := range []struct {
		regions []string
		want    []found
	}{
		{[]string{"440111004"}, []found{{"440111", day, time.Time{}}}},
		{[]string{"4401"}, []found{{"440111", day, time.Time{}}}},
		{[]string{"440304"}, []found{{"440304", day, day.AddDate(0, 0, 2)}, {"44030", day, day.AddDate(0, 0, 1)}}},
		{[]string{"44"}, []found{{"440111", day, time.Time{}}, {"440304", day, day.AddDate(0, 0, 2)}, {"44030", day, day.AddDate(0, 0, 1)}}},
		{[]string{"440106", "450102"}, []found{{"4501", day, time.Time{}}, {"4501", day.AddDate(0, 0, 3), day.AddDate(0, 0, 4)}}},
		{[]string{"4501", "450102", "45"}, []found{{"4501", day, time.Time{}}, {"4501", day.AddDate(0, 0, 3), day.AddDate(0, 0, 4)}}},
		{[]string{"610113"}, []found{{"6101", day.AddDate(0, 0, 1), time.Time{}}}},
		{[]string{"4402"}, nil},
		{[]string{"5"}, nil},
		{nil, nil},
	} {
		got, err := st.RiskAreas(tc.regions)
		if err != nil {
			t.Fatal(err)
		}
		var fs []found
		for _, g := range got {
			fs = append(fs, found{g.Region, g.From, g.To})
		}
		key := func(f found) string { return fmt.Sprintf("%s %d", f.region, f.from.Unix()) }
		slices.SortFunc(fs, func(a, b found) int { return bytes.Compare([]byte(key(a)), []byte(key(b))) })
		want := slices.Clone(tc.want)
		slices.SortFunc(want, func(a, b found) int { return bytes.Compare([]byte(key(a)), []byte(key(b))) })
		if !slices.EqualFunc(fs, want, func(a, b found) bool { return a.region == b.region && a.from.Equal(b.from) && a.to.Equal(b.to) }) {
			t.Errorf("RiskAreas(%v) = %v, want %v", tc.regions, fs, want)
		}
	}
}

// testConcurrentRegistrations: one code, or one assertion id, used by six
// registrations at once registers one of them.
func testConcurrentRegistrations(t *testing.T, st Storage) {
	s := subj('r')
	addCode(t, st, "once", s, t0.Add(time.Hour))
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok, bad := 0, 0
	count := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err == nil:
			ok++
		case errors.Is(err, store.ErrBadProof):
			bad++
		default:
			t.Error(err)
		}
	}
	for i := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := st.Register(store.Registration{Subject: s, Key: holderKey(byte(i + 1)), MaskedName: "王*", At: t0,
				CodeHash: []byte("once"), Revoke: revOf(s, t0)})
			count(err)
		}()
	}
	wg.Wait()
	if ok != 1 || bad != 5 {
		t.Errorf("one code, six registrations at once: %d registered, %d refused", ok, bad)
	}
	ok, bad = 0, 0
	for i := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			other := subj(byte('s' + i))
			_, err := st.Register(store.Registration{Subject: other, Key: holderKey(byte(i + 1)), MaskedName: "李*", IDHash: []byte{1}, At: t0,
				AssertionID: []byte("one assertion"), AssertionExpires: t0.Add(time.Minute), Revoke: revOf(other, t0)})
			count(err)
		}()
	}
	wg.Wait()
	if ok != 1 || bad != 5 {
		t.Errorf("one assertion, six registrations at once: %d registered, %d refused", ok, bad)
	}
	// Six new phones for one person at once, each with its own code:
	// each replaces the one before, and each replacement revokes.
	for i := range 6 {
		addCode(t, st, fmt.Sprintf("phone-%d", i), s, t0.Add(time.Hour))
	}
	var replaced, versions []uint64
	for i := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := st.Register(store.Registration{Subject: s, Key: holderKey(byte(10 + i)), MaskedName: "王*", At: t0.Add(time.Minute),
				CodeHash: []byte(fmt.Sprintf("phone-%d", i)), Revoke: revOf(s, t0.Add(time.Minute))})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				t.Error(err)
				return
			}
			if r.Replaced {
				replaced = append(replaced, r.Version)
				versions = append(versions, r.Version)
			}
		}()
	}
	wg.Wait()
	slices.Sort(versions)
	if len(replaced) != 6 || len(slices.Compact(versions)) != 6 {
		t.Errorf("six new phones at once: %d replaced, versions %v", len(replaced), versions)
	}
}

// testConcurrentHolderUpdates: updates of one subject at once take turns:
// each sees what the ones before it recorded, none is lost, and their
// history entries and revocation versions are each recorded once.
func testConcurrentHolderUpdates(t *testing.T, st Storage) {
	s := subj('u')
	const workers, each = 6, 5
	var wg sync.WaitGroup
	for g := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				reason := fmt.Sprintf("u%d-%d", g, i)
				_, err := st.UpdateHolder(s, func(h store.Holder) (*store.HolderUpdate, error) {
					c := h.Colour
					c.Reasons = append(slices.Clone(c.Reasons), reason)
					u := &store.HolderUpdate{Colour: c, Change: &store.ColourChange{At: t0, Colour: "yellow", Reasons: []string{reason}, Cause: "declaration"}}
					if i%2 == 0 {
						rev := revOf(s, t0.Add(time.Duration(g*each+i)*time.Second))
						u.Revoke = &rev
					}
					return u, nil
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	var got store.Holder
	if _, err := st.UpdateHolder(s, func(h store.Holder) (*store.HolderUpdate, error) { got = h; return nil, nil }); err != nil {
		t.Fatal(err)
	}
	if len(got.Colour.Reasons) != workers*each {
		t.Fatalf("%d updates at once: %d recorded in the state (lost updates)", workers*each, len(got.Colour.Reasons))
	}
	hist, err := st.ColourHistory(s, 1000)
	if err != nil || len(hist) != workers*each {
		t.Fatalf("history of %d entries, %v; want %d", len(hist), err, workers*each)
	}
	for i, c := range hist {
		if c.Reasons[0] != got.Colour.Reasons[i] {
			t.Fatalf("history entry %d is %v, the state's %d-th reason %s: not in the order recorded", i, c.Reasons, i, got.Colour.Reasons[i])
		}
	}
	if v, set, _ := st.RevocationState(); v != workers*((each+1)/2) || set.Count != 1 {
		t.Errorf("revocation version %d with %d entries; want %d, 1", v, set.Count, workers*((each+1)/2))
	}
}

// testConcurrentFeedAndDeclarations: a close-contact feed naming twenty
// registered subjects and each one's declaration, all at once: whichever
// comes second sees what the first recorded, so each subject ends with
// both the feed's hold and the declaration, yellow, and two history
// entries.
func testConcurrentFeedAndDeclarations(t *testing.T, st Storage) {
	const n = 20
	var subjects [][store.SubjectSize]byte
	for i := range n {
		s := subj(byte(0x40 + i))
		subjects = append(subjects, s)
		registerByAssertion(t, st, s, byte(i+1), t0.Add(-time.Hour))
	}
	// The feed's reassessment and a declaration, as the rules would make
	// them.
	reassess := func(h store.Holder) (*store.HolderUpdate, error) {
		c := h.Colour
		c.Holds = append(slices.Clone(c.Holds), store.Hold{Reason: "close_contact", Colour: "yellow", End: h.CloseContact.Add(14 * 24 * time.Hour)})
		from := c.Colour
		c.Colour, c.DeclareNow = "yellow", true
		u := &store.HolderUpdate{Colour: c, Change: &store.ColourChange{At: t0, From: from, Colour: "yellow", Cause: "feed"}}
		if from != "yellow" {
			rev := revOf(h.Subject, t0)
			u.Revoke = &rev
		}
		return u, nil
	}
	declare := func(h store.Holder) (*store.HolderUpdate, error) {
		if h.Key == nil {
			return nil, errors.New("not registered")
		}
		c := h.Colour
		c.LastDeclaration, c.DeclareNow = t0, false
		if len(c.Holds) > 0 || !h.CloseContact.IsZero() {
			c.Colour = "yellow"
		} else {
			c.Colour = "green"
		}
		return &store.HolderUpdate{Colour: c, Change: &store.ColourChange{At: t0, From: h.Colour.Colour, Colour: c.Colour, Cause: "declaration"}}, nil
	}
	feed := store.FeedUpdate{Kind: store.FeedCloseContacts, Issuer: "k1", Version: 1, Digest: [32]byte{1}, Applied: t0}
	for i := n - 1; i >= 0; i-- {
		feed.Listings = append(feed.Listings, store.Listing{Subject: subjects[i], Since: t0.Add(-time.Hour)})
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		<-start
		if res, err := st.ApplyFeed(feed, reassess); err != nil || !res.Applied || res.Changed != n {
			t.Errorf("the feed: %+v, %v", res, err)
		}
	}()
	for _, s := range subjects {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if _, err := st.UpdateHolder(s, declare); err != nil {
				t.Error(err)
			}
		}()
	}
	close(start)
	wg.Wait()
	for i, s := range subjects {
		h, err := st.Holder(s)
		if err != nil {
			t.Fatal(err)
		}
		if h.Colour.Colour != "yellow" || len(h.Colour.Holds) != 1 || !h.Colour.LastDeclaration.Equal(t0) || !h.Key.Equal(holderKey(byte(i+1))) {
			t.Errorf("subject %d after a feed and a declaration at once: %+v", i, h)
		}
		hist, _ := st.ColourHistory(s, 10)
		var causes []string
		for _, c := range hist {
			causes = append(causes, c.Cause)
		}
		slices.Sort(causes)
		if !slices.Equal(causes, []string{"declaration", "feed"}) {
			t.Errorf("subject %d's history: %+v", i, hist)
		}
	}
}

// testConcurrentFeeds: the same feed sent four times at once is applied
// once; feeds of other kinds and issuers naming the same subjects, in
// other orders, at once, are all applied, each seeing the others'
// updates.
func testConcurrentFeeds(t *testing.T, st Storage) {
	const n = 30
	var subjects [][store.SubjectSize]byte
	for i := range n {
		subjects = append(subjects, subj(byte(0x80+i)))
	}
	// Each reassessment adds one hold: none may be lost.
	reassess := func(reason string) func(store.Holder) (*store.HolderUpdate, error) {
		return func(h store.Holder) (*store.HolderUpdate, error) {
			c := h.Colour
			c.Holds = append(slices.Clone(c.Holds), store.Hold{Reason: reason, Colour: "yellow", End: t0.Add(time.Hour)})
			c.Colour = "yellow"
			rev := revOf(h.Subject, t0)
			return &store.HolderUpdate{Colour: c, Change: &store.ColourChange{At: t0, Colour: "yellow", Reasons: []string{reason}, Cause: "feed"},
				Revoke: &rev}, nil
		}
	}
	feeds := []store.FeedUpdate{
		{Kind: store.FeedCloseContacts, Issuer: "k1", Version: 1, Digest: [32]byte{1}, Applied: t0},
		{Kind: store.FeedCases, Issuer: "k1", Version: 1, Digest: [32]byte{2}, Applied: t0},
		{Kind: store.FeedCloseContacts, Issuer: "k2", Version: 1, Digest: [32]byte{3}, Applied: t0},
	}
	for i, s := range subjects {
		feeds[0].Listings = append(feeds[0].Listings, store.Listing{Subject: s, Since: t0})
		feeds[1].Listings = append(feeds[1].Listings, store.Listing{Subject: subjects[n-1-i], Since: t0})
		feeds[2].Listings = append(feeds[2].Listings, store.Listing{Subject: subjects[(i*7)%n], Since: t0})
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	applied := map[int]int{}
	start := make(chan struct{})
	for f := range feeds {
		copies := 1
		if f == 0 {
			copies = 4
		}
		for range copies {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				res, err := st.ApplyFeed(feeds[f], reassess(fmt.Sprintf("feed-%d", f)))
				if err != nil {
					t.Error(err)
					return
				}
				if res.Applied {
					mu.Lock()
					applied[f]++
					mu.Unlock()
					if res.Subjects != n || res.Changed != n || res.Version == 0 {
						t.Errorf("feed %d: %+v", f, res)
					}
				}
			}()
		}
	}
	close(start)
	wg.Wait()
	if applied[0] != 1 || applied[1] != 1 || applied[2] != 1 {
		t.Errorf("feeds applied: %v; want each once", applied)
	}
	for i, s := range subjects {
		var got store.Holder
		if _, err := st.UpdateHolder(s, func(h store.Holder) (*store.HolderUpdate, error) { got = h; return nil, nil }); err != nil {
			t.Fatal(err)
		}
		var reasons []string
		for _, h := range got.Colour.Holds {
			reasons = append(reasons, h.Reason)
		}
		slices.Sort(reasons)
		if !slices.Equal(reasons, []string{"feed-0", "feed-1", "feed-2"}) || got.Case.IsZero() || got.CloseContact.IsZero() {
			t.Errorf("subject %d after three feeds at once: holds %v, %+v", i, reasons, got)
		}
		if hist, _ := st.ColourHistory(s, 10); len(hist) != 3 {
			t.Errorf("subject %d: %d history entries, want 3", i, len(hist))
		}
	}
	if v, set, _ := st.RevocationState(); v != 3 || set.Count != n {
		t.Errorf("revocation version %d with %d entries; want 3, %d", v, set.Count, n)
	}
}
