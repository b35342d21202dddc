package store

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func openAuthority(t *testing.T) *Authority {
	t.Helper()
	a, err := OpenAuthority(filepath.Join(t.TempDir(), "authority.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

func holderKey(b byte) ed25519.PublicKey { return bytes.Repeat([]byte{b}, ed25519.PublicKeySize) }

func revOf(s [SubjectSize]byte, at time.Time) RevEntry {
	return RevEntry{Subject: s, Before: at.Unix(), DropAfter: at.Add(30 * 24 * time.Hour).Unix()}
}

// TestRegister: a code registers the person it was issued for, once,
// before its expiry; an assertion id once; a new key replaces the old and
// revokes its credentials in the same transaction.
func TestRegister(t *testing.T) {
	a := openAuthority(t)
	alice, bob := subj('a'), subj('b')
	code := func(hash string, s [SubjectSize]byte, expires time.Time) {
		t.Helper()
		if err := a.AddRegistrationCode(RegistrationCode{Hash: []byte(hash), Subject: s, MaskedName: "王*", IDHash: []byte{1, 2},
			Operator: "office-1", Expires: expires}); err != nil {
			t.Fatal(err)
		}
	}
	code("alice-code", alice, t0.Add(15*time.Minute))
	code("old-code", alice, t0.Add(-time.Second))
	reg := func(s [SubjectSize]byte, key byte, name, hash string, at time.Time) (Registered, error) {
		return a.Register(Registration{Subject: s, Key: holderKey(key), MaskedName: name, At: at, CodeHash: []byte(hash),
			Revoke: revOf(s, at)})
	}
	for _, tc := range []struct {
		name string
		s    [SubjectSize]byte
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
		if _, err := reg(tc.s, 1, tc.mask, tc.hash, tc.at); !errors.Is(err, ErrBadProof) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	if _, err := a.Holder(alice); !errors.Is(err, ErrUnknownHolder) {
		t.Errorf("before registering: %v", err)
	}
	r, err := reg(alice, 1, "王*", "alice-code", t0)
	if err != nil || r.Replaced {
		t.Fatalf("register: %+v %v", r, err)
	}
	h, err := a.Holder(alice)
	if err != nil || !h.Key.Equal(holderKey(1)) || !h.Registered.Equal(t0) || h.MaskedName != "王*" || !bytes.Equal(h.IDHash, []byte{1, 2}) {
		t.Fatalf("holder %+v %v", h, err)
	}
	if _, err := reg(alice, 2, "王*", "alice-code", t0); !errors.Is(err, ErrBadProof) {
		t.Errorf("a used code: %v", err)
	}

	// A new phone: a new proof, the key replaced, the old one's
	// credentials revoked.
	code("alice-again", alice, t0.Add(time.Hour))
	later := t0.Add(10 * time.Minute)
	r, err = reg(alice, 2, "王*", "alice-again", later)
	if err != nil || !r.Replaced || r.Version != 1 {
		t.Fatalf("register a new phone: %+v %v", r, err)
	}
	h, _ = a.Holder(alice)
	if !h.Key.Equal(holderKey(2)) || !h.RevokedBefore.Equal(later) || !h.Colour.DeclareNow {
		t.Errorf("after the new phone: key %x, revoked before %v", h.Key, h.RevokedBefore)
	}

	// Assertions: each id once; the masked name and ID hash are the
	// registration's.
	assert := func(id string, key byte) (Registered, error) {
		return a.Register(Registration{Subject: bob, Key: holderKey(key), MaskedName: "李*", IDHash: []byte{3, 4}, At: t0,
			AssertionID: []byte(id), AssertionExpires: t0.Add(10 * time.Minute), Revoke: revOf(bob, t0)})
	}
	if r, err := assert("assertion-1", 3); err != nil || r.Replaced {
		t.Fatalf("assertion: %+v %v", r, err)
	}
	if _, err := assert("assertion-1", 4); !errors.Is(err, ErrBadProof) {
		t.Errorf("an assertion used again: %v", err)
	}
	if h, _ := a.Holder(bob); h.MaskedName != "李*" || !bytes.Equal(h.IDHash, []byte{3, 4}) {
		t.Errorf("holder by assertion: %+v", h)
	}
	if _, err := a.Register(Registration{Subject: bob, Key: holderKey(5), At: t0}); !errors.Is(err, ErrBadProof) {
		t.Errorf("no proof: %v", err)
	}
	if _, err := a.Register(Registration{Subject: bob, Key: holderKey(5), At: t0, CodeHash: []byte("x"), AssertionID: []byte("y"),
		IDHash: []byte{1}}); !errors.Is(err, ErrBadProof) {
		t.Errorf("two proofs: %v", err)
	}

	// Expired proofs are forgotten; those still good are kept.
	if n, err := a.ExpireProofs(t0.Add(20 * time.Minute)); err != nil || n != 2 {
		t.Errorf("ExpireProofs: %d %v (want the expired code and the used assertion)", n, err)
	}
	if _, err := reg(alice, 3, "王*", "old-code", t0.Add(-time.Hour)); !errors.Is(err, ErrBadProof) {
		t.Errorf("a forgotten code: %v", err)
	}
}

// TestUpdateHolder: the callback sees what is held and its update is
// recorded whole, or nothing is.
func TestUpdateHolder(t *testing.T) {
	a := openAuthority(t)
	s := subj('c')
	failed := errors.New("refused")
	if _, err := a.UpdateHolder(s, func(h Holder) (*HolderUpdate, error) {
		if h.Key != nil || h.Colour.Colour != "" || !h.Case.IsZero() {
			t.Errorf("an unknown subject: %+v", h)
		}
		return &HolderUpdate{Colour: ColourState{Colour: "red"}}, failed
	}); !errors.Is(err, failed) {
		t.Errorf("a failing callback: %v", err)
	}
	v, err := a.UpdateHolder(s, func(Holder) (*HolderUpdate, error) { return nil, nil })
	if err != nil || v != 0 {
		t.Errorf("nothing to record: %d %v", v, err)
	}
	if hist, _ := a.ColourHistory(s, 10); len(hist) != 0 {
		t.Errorf("history after nothing was recorded: %v", hist)
	}
	state := ColourState{Colour: "yellow", Since: t0, Reasons: []string{"close_contact"}, QuarantineEnd: t0.Add(time.Hour),
		Holds: []Hold{{"close_contact", "yellow", t0.Add(time.Hour)}}}
	for i := range 3 {
		at := t0.Add(time.Duration(i) * time.Minute)
		rev := revOf(s, at)
		v, err = a.UpdateHolder(s, func(Holder) (*HolderUpdate, error) {
			return &HolderUpdate{Colour: state, Change: &ColourChange{At: at, Colour: "yellow", Reasons: []string{"close_contact"}, Cause: "feed"},
				Revoke: &rev}, nil
		})
		if err != nil || v != uint64(i+1) {
			t.Fatalf("update %d: version %d %v", i, v, err)
		}
	}
	if _, err := a.Holder(s); !errors.Is(err, ErrUnknownHolder) {
		t.Errorf("a subject with a colour and no key: %v", err)
	}
	var seen Holder
	a.UpdateHolder(s, func(h Holder) (*HolderUpdate, error) { seen = h; return nil, nil })
	if seen.Colour.Colour != "yellow" || !seen.Colour.Holds[0].End.Equal(t0.Add(time.Hour)) || !seen.RevokedBefore.Equal(t0.Add(2*time.Minute)) {
		t.Errorf("held: %+v", seen)
	}
	hist, err := a.ColourHistory(s, 2)
	if err != nil || len(hist) != 2 || !hist[0].At.Equal(t0.Add(time.Minute)) || !hist[1].At.Equal(t0.Add(2*time.Minute)) {
		t.Errorf("the last two changes, oldest first: %+v %v", hist, err)
	}
	if other, _ := a.ColourHistory(subj('d'), 10); len(other) != 0 {
		t.Errorf("another subject's history: %v", other)
	}
}

// TestApplyFeed: a feed's rows and version are recorded, each subject it
// names reassessed once with the new listing, and its revocations added
// as one version; the same version again is applied once; a version at or
// below the last with other content is refused; a failing reassessment
// records nothing.
func TestApplyFeed(t *testing.T) {
	a := openAuthority(t)
	x, y := subj('x'), subj('y')
	feed := FeedUpdate{Kind: FeedCloseContacts, Issuer: "k1", Version: 3, Digest: [32]byte{3}, Applied: t0,
		Listings: []Listing{{x, t0.Add(-time.Hour)}, {y, t0}, {x, t0.Add(-30 * time.Minute)}}}
	var calls [][SubjectSize]byte
	reassess := func(h Holder) (*HolderUpdate, error) {
		calls = append(calls, h.Subject)
		if h.Subject == x && !h.CloseContact.Equal(t0.Add(-30*time.Minute)) {
			t.Errorf("x reassessed with the listing since %v", h.CloseContact)
		}
		rev := revOf(h.Subject, t0)
		return &HolderUpdate{Colour: ColourState{Colour: "yellow"}, Change: &ColourChange{At: t0, Colour: "yellow", Cause: "feed"}, Revoke: &rev}, nil
	}
	res, err := a.ApplyFeed(feed, reassess)
	if err != nil || !res.Applied || res.Subjects != 2 || res.Changed != 2 || res.Version != 1 || !slices.Equal(calls, [][SubjectSize]byte{x, y}) {
		t.Fatalf("apply: %+v %v, reassessed %v", res, err, calls)
	}
	if _, set, _ := a.RevocationState(); set.Count != 2 {
		t.Errorf("%d revocations", set.Count)
	}
	calls = nil
	if res, err := a.ApplyFeed(feed, reassess); err != nil || res.Applied || len(calls) != 0 {
		t.Errorf("the same feed again: %+v %v, reassessed %v", res, err, calls)
	}
	other := feed
	other.Digest = [32]byte{4}
	if _, err := a.ApplyFeed(other, reassess); !errors.Is(err, ErrFeedVersion) {
		t.Errorf("version 3 with other content: %v", err)
	}
	other.Version = 2
	if _, err := a.ApplyFeed(other, reassess); !errors.Is(err, ErrFeedVersion) {
		t.Errorf("version 2, never applied, after 3: %v", err)
	}
	// Another issuer counts its own versions; a cases feed is another list.
	cases := FeedUpdate{Kind: FeedCases, Issuer: "k2", Version: 1, Digest: [32]byte{1}, Listings: []Listing{{y, t0}}}
	if _, err := a.ApplyFeed(cases, func(Holder) (*HolderUpdate, error) { return nil, errors.New("rules failed") }); err == nil {
		t.Error("a failing reassessment was applied")
	}
	if res, err := a.ApplyFeed(cases, func(h Holder) (*HolderUpdate, error) {
		if !h.Case.Equal(t0) || !h.CloseContact.Equal(t0) {
			t.Errorf("y's listings: case %v, contact %v", h.Case, h.CloseContact)
		}
		return nil, nil
	}); err != nil || !res.Applied || res.Changed != 0 || res.Version != 0 {
		t.Errorf("the cases feed after a failed attempt: %+v %v", res, err)
	}
	if _, err := a.ApplyFeed(FeedUpdate{Kind: "vaccinations", Version: 1}, reassess); !errors.Is(err, ErrFeedKind) {
		t.Errorf("an unknown kind: %v", err)
	}

	// Risk areas: found from a region within them and from one they lie
	// within; a later feed's row for the same region and start replaces
	// the earlier.
	day := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	areas := FeedUpdate{Kind: FeedRiskAreas, Issuer: "k1", Version: 1, Digest: [32]byte{9}, Areas: []RiskArea{
		{Region: "440111", From: day}, {Region: "440304", From: day, To: day.AddDate(0, 0, 5)}, {Region: "4501", From: day}}}
	if res, err := a.ApplyFeed(areas, reassess); err != nil || !res.Applied || res.Subjects != 0 {
		t.Fatalf("risk areas: %+v %v", res, err)
	}
	areas.Version, areas.Digest, areas.Areas = 2, [32]byte{10}, []RiskArea{{Region: "440304", From: day, To: day.AddDate(0, 0, 2)}}
	if _, err := a.ApplyFeed(areas, reassess); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		regions []string
		want    []string
	}{
		{[]string{"440111004"}, []string{"440111"}},
		{[]string{"4401"}, []string{"440111"}},
		{[]string{"44"}, []string{"440111", "440304"}},
		{[]string{"440106", "450102"}, []string{"4501"}},
		{[]string{"4402"}, nil},
	} {
		got, err := a.RiskAreas(tc.regions)
		var regions []string
		for _, g := range got {
			regions = append(regions, g.Region)
			if g.Region == "440304" && !g.To.Equal(day.AddDate(0, 0, 2)) {
				t.Errorf("440304 listed until %v, want the later feed's end", g.To)
			}
			if !g.From.Equal(day) {
				t.Errorf("%s from %v", g.Region, g.From)
			}
		}
		slices.Sort(regions)
		if err != nil || !slices.Equal(regions, tc.want) {
			t.Errorf("RiskAreas(%v) = %v %v, want %v", tc.regions, regions, err, tc.want)
		}
	}
}
