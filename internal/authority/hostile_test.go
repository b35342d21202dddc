package authority_test

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/checkpointd/checkpoint/internal/authority"
	"github.com/checkpointd/checkpoint/internal/credential"
	"github.com/checkpointd/checkpoint/internal/credential/credentialtest"
	"github.com/checkpointd/checkpoint/internal/feed"
	"github.com/checkpointd/checkpoint/internal/identity"
	"github.com/checkpointd/checkpoint/internal/protocol"
	"github.com/checkpointd/checkpoint/store"
)

// hookedStore is the fixture's database with hooks: before a feed is
// applied and before a registration, and counts of the risk-area reads
// and registrations.
type hookedStore struct {
	*store.Authority
	beforeFeed     func()
	beforeRegister func()
	areaReads      atomic.Int64
	registers      atomic.Int64
}

func (h *hookedStore) ApplyFeed(f store.FeedUpdate, reassess func(store.Holder) (*store.HolderUpdate, error)) (store.FeedResult, error) {
	if h.beforeFeed != nil {
		h.beforeFeed()
	}
	return h.Authority.ApplyFeed(f, reassess)
}

func (h *hookedStore) RiskAreas(regions []string) ([]store.RiskArea, error) {
	h.areaReads.Add(1)
	return h.Authority.RiskAreas(regions)
}

func (h *hookedStore) Register(r store.Registration) (store.Registered, error) {
	h.registers.Add(1)
	if h.beforeRegister != nil {
		h.beforeRegister()
	}
	return h.Authority.Register(r)
}

// hooked puts the fixture's server on its database with hooks.
func hooked(f *fixture) *hookedStore {
	h := &hookedStore{Authority: f.db}
	f.srv = authority.New(h, f.keys, f.opts)
	return h
}

// TestSlowFeedRevokesWhatWasIssuedMeanwhile: a close-contact feed whose
// table took seconds to parse (or waited for a slot) revokes the green
// credential a declaration got in the meantime: the cut-off is the time
// the feed is applied, not the time it arrived.
func TestSlowFeedRevokesWhatWasIssuedMeanwhile(t *testing.T) {
	f := holderFixture(t, nil)
	h := hooked(f)
	p := f.registered("phone-1", credentialtest.IDNumber, credentialtest.Name)
	var green *credential.Credential
	h.beforeFeed = func() {
		h.beforeFeed = nil
		f.clock.Advance(3 * time.Second)
		green, _ = f.declared(p, protocol.Declaration{})
	}
	f.applied(feed.CloseContacts, 1, "id_number,since\n"+credentialtest.IDNumber+",2026-11-25\n")
	if cut := f.revokedBefore(credentialtest.IDNumber); green.Status != credential.Green || green.IssuedAt.Unix() > cut {
		t.Errorf("a %s credential issued at %v while the feed was on its way, cut-off %d: still valid",
			green.Status, green.IssuedAt, cut)
	}
	if st := f.status(p); st.Colour != "yellow" {
		t.Errorf("after the feed: %s", st.Colour)
	}
}

// TestFeedInTheSecondOfAColourChange: a declaration that changes the
// colour dates its credential the second after its own cut-off; a
// close-contact feed in that same second revokes it all the same.
func TestFeedInTheSecondOfAColourChange(t *testing.T) {
	f := holderFixture(t, nil)
	p := f.registered("phone-1", credentialtest.IDNumber, credentialtest.Name)
	if c, _ := f.declared(p, protocol.Declaration{Fever: true}); c.Status != credential.Yellow {
		t.Fatalf("a fever: %s", c.Status)
	}
	f.clock.Advance(73 * time.Hour)
	green, _ := f.declared(p, protocol.Declaration{})
	if green.Status != credential.Green || green.IssuedAt.Unix() != f.clock.Now().Unix()+1 {
		t.Fatalf("the clean declaration after the quarantine: %s at %v", green.Status, green.IssuedAt)
	}
	f.applied(feed.CloseContacts, 1, "id_number,since\n"+credentialtest.IDNumber+",2026-11-28\n")
	if cut := f.revokedBefore(credentialtest.IDNumber); green.IssuedAt.Unix() > cut {
		t.Errorf("the green credential issued at %v survives a feed in the second of its issue (cut-off %d)", green.IssuedAt, cut)
	}
	f.clock.Advance(time.Second)
	if c, _ := f.declared(p, protocol.Declaration{}); c.Status != credential.Yellow ||
		c.IssuedAt.Unix() <= f.revokedBefore(credentialtest.IDNumber) {
		t.Errorf("the next declaration: %s at %v", c.Status, c.IssuedAt)
	}
}

// greenInTheSecondOfAChange is a registered phone whose clean declaration
// after a quarantine turned it green: its credential is dated the second
// after the change's cut-off, and the clock is still in that second.
func greenInTheSecondOfAChange(t *testing.T, f *fixture) (*phone, *credential.Credential) {
	t.Helper()
	p := f.registered("phone-1", credentialtest.IDNumber, credentialtest.Name)
	if c, _ := f.declared(p, protocol.Declaration{Fever: true}); c.Status != credential.Yellow {
		t.Fatalf("a fever: %s", c.Status)
	}
	f.clock.Advance(73 * time.Hour)
	green, _ := f.declared(p, protocol.Declaration{})
	if green.Status != credential.Green || green.IssuedAt.Unix() != f.clock.Now().Unix()+1 ||
		f.revokedBefore(credentialtest.IDNumber) != f.clock.Now().Unix() {
		t.Fatalf("the clean declaration after the quarantine: %s at %v, cut-off %d", green.Status, green.IssuedAt,
			f.revokedBefore(credentialtest.IDNumber))
	}
	return p, green
}

// TestNewPhoneInTheSecondOfAColourChange: a new phone registered in the
// second a colour change dated the old phone's credential after revokes
// that credential with the rest, and the new phone declares at once.
func TestNewPhoneInTheSecondOfAColourChange(t *testing.T) {
	f := holderFixture(t, nil)
	_, green := greenInTheSecondOfAChange(t, f)
	q := newPhone("phone-2")
	if w := f.register(q, credentialtest.IDNumber, credentialtest.Name, f.code(credentialtest.IDNumber, credentialtest.Name), nil); w.Code != http.StatusOK {
		t.Fatalf("the new phone: %d %s", w.Code, w.Body)
	}
	if cut := f.revokedBefore(credentialtest.IDNumber); green.IssuedAt.Unix() > cut {
		t.Errorf("the old phone's credential issued at %v survives a new phone registered in the second before (cut-off %d)",
			green.IssuedAt, cut)
	}
	if c, _ := f.declared(q, protocol.Declaration{}); c.IssuedAt.Unix() <= f.revokedBefore(credentialtest.IDNumber) ||
		c.IssuedAt.Sub(f.clock.Now()) > 10*time.Second {
		t.Errorf("the new phone's credential issued at %v, cut-off %d", c.IssuedAt, f.revokedBefore(credentialtest.IDNumber))
	}
}

// TestOldPhoneDeclaresBeforeTheNewPhoneIsRegistered: the old phone
// declares after the server chose the new phone's cut-off and before the
// registration's transaction (while it waited for the database): its
// credential, dated after that cut-off, is revoked with the rest, and the
// new phone declares at once, its credential dated after the cut-off.
func TestOldPhoneDeclaresBeforeTheNewPhoneIsRegistered(t *testing.T) {
	f := holderFixture(t, nil)
	h := hooked(f)
	p := f.registered("phone-1", credentialtest.IDNumber, credentialtest.Name)
	if c, _ := f.declared(p, protocol.Declaration{}); c.Status != credential.Green {
		t.Fatalf("a clean declaration: %s", c.Status)
	}
	f.clock.Advance(25 * time.Hour)
	var old *credential.Credential
	h.beforeRegister = func() {
		h.beforeRegister = nil
		f.clock.Advance(time.Second)
		old, _ = f.declared(p, protocol.Declaration{})
	}
	q := newPhone("phone-2")
	chosen := f.clock.Now().Unix()
	if w := f.register(q, credentialtest.IDNumber, credentialtest.Name, f.code(credentialtest.IDNumber, credentialtest.Name), nil); w.Code != http.StatusOK {
		t.Fatalf("the new phone: %d %s", w.Code, w.Body)
	}
	if old == nil || old.IssuedAt.Unix() <= chosen {
		t.Fatalf("the old phone's declaration before the registration's transaction: %v, the cut-off chosen %d", old, chosen)
	}
	if cut := f.revokedBefore(credentialtest.IDNumber); old.IssuedAt.Unix() > cut {
		t.Errorf("the old phone's credential issued at %v survives the new phone (cut-off %d)", old.IssuedAt, cut)
	}
	if w := f.declare(p, protocol.Declaration{}); w.Code != http.StatusUnauthorized {
		t.Errorf("the old phone declares after the new one is registered: %d", w.Code)
	}
	if c, _ := f.declared(q, protocol.Declaration{}); c.IssuedAt.Unix() <= f.revokedBefore(credentialtest.IDNumber) ||
		c.IssuedAt.Sub(f.clock.Now()) > 10*time.Second {
		t.Errorf("the new phone's credential issued at %v, cut-off %d", c.IssuedAt, f.revokedBefore(credentialtest.IDNumber))
	}
}

// TestOperatorRevocationInTheSecondOfAColourChange: an operator's
// revocation without a time, in the second a colour change dated a
// credential after, revokes that credential; one at a time the operator
// gives is applied as given.
func TestOperatorRevocationInTheSecondOfAColourChange(t *testing.T) {
	f := holderFixture(t, nil)
	_, green := greenInTheSecondOfAChange(t, f)
	now := f.clock.Now().Unix()
	if w := f.admin(protocol.PathAdminRevoke, protocol.AdminRevoke{IDNumber: credentialtest.IDNumber, Before: f.clock.Now()}); w.Code != http.StatusOK {
		t.Fatalf("revoke at a time given: %d %s", w.Code, w.Body)
	}
	if cut := f.revokedBefore(credentialtest.IDNumber); cut != now {
		t.Errorf("a revocation at %d, the time given, made the cut-off %d", now, cut)
	}
	if w := f.admin(protocol.PathAdminRevoke, protocol.AdminRevoke{IDNumber: credentialtest.IDNumber}); w.Code != http.StatusOK {
		t.Fatalf("revoke now: %d %s", w.Code, w.Body)
	}
	if cut := f.revokedBefore(credentialtest.IDNumber); green.IssuedAt.Unix() > cut {
		t.Errorf("the credential issued at %v survives a revocation without a time in the second before (cut-off %d)", green.IssuedAt, cut)
	}
	// Another person, never revoked: now, as it is.
	if w := f.admin(protocol.PathAdminRevoke, protocol.AdminRevoke{IDNumber: otherID}); w.Code != http.StatusOK {
		t.Fatalf("revoke now: %d %s", w.Code, w.Body)
	}
	if cut := f.revokedBefore(otherID); cut != now {
		t.Errorf("a first revocation without a time: cut-off %d, want %d", cut, now)
	}
}

// TestRegionCodesAtAnyLength: GB/T 2260 writes a city as 440300 and a
// township as 440304003000; a visit and a listing match whatever the
// length each is written at.
func TestRegionCodesAtAnyLength(t *testing.T) {
	f := holderFixture(t, nil)
	f.applied(feed.RiskAreas, 1, "region,from,to\n440300,2026-11-20,\n440105003000,2026-11-20,\n")
	for i, region := range []string{"440304", "4403", "440300000000", "440105003001", "440105", "440000"} {
		p := f.registered("phone-"+region, idNumber(i), "李四")
		c, st := f.declared(p, protocol.Declaration{Travel: []protocol.Visit{{Region: region, Date: "2026-11-24"}}})
		if c.Status != credential.Yellow {
			t.Errorf("%d: a visit to %s, with 440300 and 440105003000 listed: %s %v", i, region, c.Status, st.Reasons)
		}
	}
	p := f.registered("phone-clean", credentialtest.IDNumber, credentialtest.Name)
	if c, _ := f.declared(p, protocol.Declaration{Travel: []protocol.Visit{{Region: "440105004000", Date: "2026-11-24"}}}); c.Status != credential.Green {
		t.Errorf("a visit to the next township: %s", c.Status)
	}
	for _, bad := range []string{"440", "44030", "4403040031"} {
		if w := f.declare(p, protocol.Declaration{Travel: []protocol.Visit{{Region: bad, Date: "2026-11-24"}}}); w.Code != http.StatusBadRequest {
			t.Errorf("a region code of %d digits: %d %s", len(bad), w.Code, w.Body)
		}
	}
}

// idNumber is a valid ID number, the i-th of a series.
func idNumber(i int) string {
	id := fmt.Sprintf("44030519880506%03d", i)
	sum := 0
	for j, w := range []int{7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2} {
		sum += int(id[j]-'0') * w
	}
	return id + string("10X98765432"[sum%11])
}

// TestHolderRequestReplayedWithOtherCase: the subject a request names is
// hex, which reads the same in upper case: a request replayed with its
// subject in upper case is a replay all the same.
func TestHolderRequestReplayedWithOtherCase(t *testing.T) {
	f := holderFixture(t, nil)
	p := f.registered("phone-1", credentialtest.IDNumber, credentialtest.Name)
	r := httptest.NewRequest(http.MethodGet, protocol.PathHolderStatus, nil)
	protocol.SignHolderRequest(r, p.subject, p.key, []byte("nonce-replayed"), f.clock.Now(), nil)
	if w := f.serve(r); w.Code != http.StatusOK {
		t.Fatalf("status: %d %s", w.Code, w.Body)
	}
	again := httptest.NewRequest(http.MethodGet, protocol.PathHolderStatus, nil)
	again.Header = r.Header.Clone()
	again.Header.Set(protocol.HeaderHolder, strings.ToUpper(p.subject))
	if w := f.serve(again); w.Code != http.StatusUnauthorized {
		t.Errorf("the request replayed with its subject in upper case: %d %s", w.Code, w.Body)
	}
}

// TestDeclarationTooSoonCostsNoLookup: a declaration too soon is refused
// before the risk areas of its visits are read.
func TestDeclarationTooSoonCostsNoLookup(t *testing.T) {
	f := holderFixture(t, nil)
	h := hooked(f)
	p := f.registered("phone-1", credentialtest.IDNumber, credentialtest.Name)
	visits := protocol.Declaration{Travel: []protocol.Visit{{Region: "44", Date: "2026-11-24"}, {Region: "11", Date: "2026-11-24"}}}
	f.declared(p, visits)
	reads := h.areaReads.Load()
	for range 5 {
		if w := f.declare(p, visits); w.Code != http.StatusTooManyRequests {
			t.Fatalf("a declaration too soon: %d %s", w.Code, w.Body)
		}
	}
	if n := h.areaReads.Load() - reads; n != 0 {
		t.Errorf("declarations too soon read the risk areas %d times", n)
	}
}

// TestAssertionReplayCostsNoHash: a real-name assertion used before is
// refused before its ID hash (Argon2id) is computed and the database is
// asked, however often it comes back.
func TestAssertionReplayCostsNoHash(t *testing.T) {
	f := holderFixture(t, nil)
	h := hooked(f)
	q := newPhone("phone-3")
	now := f.clock.Now()
	good, err := identity.SignAssertion(identity.Assertion{IDNumber: otherID, Name: otherName, HolderKey: pubOf(q.key),
		VerifiedAt: now, Expires: now.Add(10 * time.Minute), Method: "face"}, realnameKey)
	if err != nil {
		t.Fatal(err)
	}
	if w := f.register(q, otherID, otherName, "", good); w.Code != http.StatusOK {
		t.Fatalf("registration: %d %s", w.Code, w.Body)
	}
	for range 3 {
		if w := f.register(q, otherID, otherName, "", good); w.Code != http.StatusForbidden {
			t.Errorf("the assertion again: %d %s", w.Code, w.Body)
		}
	}
	if n := h.registers.Load(); n != 1 {
		t.Errorf("the database was asked %d times for one assertion", n)
	}
}

// TestRegistrationsFromNewKeysLeaveDevicesAlone: anyone can sign a
// registration with a key made for it; a flood of them does not fill the
// memory of signed requests that checkpoints' syncs need.
func TestRegistrationsFromNewKeysLeaveDevicesAlone(t *testing.T) {
	f := holderFixture(t, nil)
	for i := range 300 {
		k := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{byte(i), byte(i >> 8)}, 16))
		w := f.register(&phone{key: k}, credentialtest.IDNumber, credentialtest.Name, "7K3M-Q9XD-2PF", nil)
		if w.Code != http.StatusForbidden && w.Code != http.StatusTooManyRequests {
			t.Fatalf("registration %d: %d %s", i, w.Code, w.Body)
		}
	}
	if n := authority.SeenRequests(f.srv); n != 0 {
		t.Errorf("registrations by made-up keys hold %d places among the signed requests remembered", n)
	}
	if w := f.serve(f.signed(http.MethodGet, protocol.PathStatus, nil, "device-nonce-1", f.clock.Now())); w.Code != http.StatusOK {
		t.Errorf("the checkpoint's status after the flood: %d %s", w.Code, w.Body)
	}
}
