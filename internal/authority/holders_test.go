package authority_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/checkpointd/checkpoint/internal/authority"
	"github.com/checkpointd/checkpoint/internal/credential"
	"github.com/checkpointd/checkpoint/internal/credential/credentialtest"
	"github.com/checkpointd/checkpoint/internal/feed"
	"github.com/checkpointd/checkpoint/internal/identity"
	"github.com/checkpointd/checkpoint/internal/protocol"
	"github.com/checkpointd/checkpoint/internal/rules"
	"github.com/checkpointd/checkpoint/store"
)

// Two people: the fixture's holder and another.
const (
	otherID   = "44030519880506122X"
	otherName = "王芳"
)

var (
	realnameKey = credentialtest.Key("realname")
	feedKey     = credentialtest.Key("health")
)

func pubOf(k ed25519.PrivateKey) ed25519.PublicKey { return k.Public().(ed25519.PublicKey) }

// holderFixture is an authority that takes assertions of the real-name
// key and feeds of the health department's key.
func holderFixture(t *testing.T, r *rules.Rules) *fixture {
	return newFixture(t, authority.Options{Rules: r, RealnameKeys: []ed25519.PublicKey{pubOf(realnameKey)},
		FeedKeys: []ed25519.PublicKey{pubOf(feedKey)}})
}

// phone is a holder's phone: its key, and its subject once registered.
type phone struct {
	key     ed25519.PrivateKey
	subject string
	nonce   int
}

func newPhone(name string) *phone { return &phone{key: credentialtest.Key(name)} }

// holderRequest is a request signed by p: as a registration (by key), or
// by subject.
func (f *fixture) holderRequest(p *phone, method, path string, v any, byKey bool) *httptest.ResponseRecorder {
	f.t.Helper()
	var body []byte
	if v != nil {
		var err error
		if body, err = protocol.Enc.Marshal(v); err != nil {
			f.t.Fatal(err)
		}
	}
	r := httptest.NewRequest(method, path, bytes.NewReader(body))
	id := p.subject
	if byKey {
		id = hex.EncodeToString(pubOf(p.key))
	}
	p.nonce++
	protocol.SignHolderRequest(r, id, p.key, []byte(fmt.Sprintf("nonce-%08d", p.nonce)), f.clock.Now(), body)
	return f.serve(r)
}

// code asks for a registration code as an operator.
func (f *fixture) code(id, name string) string {
	f.t.Helper()
	w := f.admin(protocol.PathAdminRegistrationCode, protocol.AdminRegistrationCode{IDNumber: id, Name: name, Operator: "office-1"})
	var res protocol.AdminRegistrationCodeResponse
	if err := protocol.Dec.Unmarshal(w.Body.Bytes(), &res); w.Code != http.StatusOK || err != nil {
		f.t.Fatalf("registration code: %d %s", w.Code, w.Body)
	}
	if !res.Expires.Equal(f.clock.Now().Add(15 * time.Minute)) {
		f.t.Errorf("the code expires at %v", res.Expires)
	}
	return res.Code
}

func (f *fixture) register(p *phone, id, name, code string, assertion []byte) *httptest.ResponseRecorder {
	f.t.Helper()
	w := f.holderRequest(p, http.MethodPost, protocol.PathRegister, protocol.RegisterRequest{IDNumber: id, Name: name,
		HolderKey: pubOf(p.key), Code: code, Assertion: assertion}, true)
	if w.Code == http.StatusOK {
		var res protocol.RegisterResponse
		if err := protocol.Dec.Unmarshal(w.Body.Bytes(), &res); err != nil {
			f.t.Fatal(err)
		}
		p.subject = hex.EncodeToString(res.Subject)
	}
	return w
}

// registered is a phone registered for id with a registration code.
func (f *fixture) registered(name, id, person string) *phone {
	f.t.Helper()
	p := newPhone(name)
	if w := f.register(p, id, person, f.code(id, person), nil); w.Code != http.StatusOK {
		f.t.Fatalf("register: %d %s", w.Code, w.Body)
	}
	return p
}

func (f *fixture) declare(p *phone, d protocol.Declaration) *httptest.ResponseRecorder {
	return f.holderRequest(p, http.MethodPost, protocol.PathDeclare, d, false)
}

// declared declares and returns the credential and status.
func (f *fixture) declared(p *phone, d protocol.Declaration) (*credential.Credential, protocol.HolderStatus) {
	f.t.Helper()
	w := f.declare(p, d)
	var res protocol.DeclarationResponse
	if err := protocol.Dec.Unmarshal(w.Body.Bytes(), &res); w.Code != http.StatusOK || err != nil {
		f.t.Fatalf("declaration: %d %s", w.Code, w.Body)
	}
	c, err := credential.Parse(res.Credential)
	if err != nil {
		f.t.Fatal(err)
	}
	if !c.Credential.HolderKey.Equal(pubOf(p.key)) || hex.EncodeToString(c.Credential.Subject) != p.subject {
		f.t.Errorf("a credential for key %x, subject %x", c.Credential.HolderKey, c.Credential.Subject)
	}
	return &c.Credential, res.Status
}

func (f *fixture) status(p *phone) protocol.HolderStatus {
	f.t.Helper()
	w := f.holderRequest(p, http.MethodGet, protocol.PathHolderStatus, nil, false)
	var st protocol.HolderStatus
	if err := protocol.Dec.Unmarshal(w.Body.Bytes(), &st); w.Code != http.StatusOK || err != nil {
		f.t.Fatalf("status: %d %s", w.Code, w.Body)
	}
	return st
}

func (f *fixture) feed(kind string, version uint64, content string, key ed25519.PrivateKey) *httptest.ResponseRecorder {
	f.t.Helper()
	raw, err := feed.Sign(feed.Feed{Kind: kind, Version: version, Issued: f.clock.Now(), Format: feed.CSV, Content: []byte(content)}, key)
	if err != nil {
		f.t.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodPost, protocol.PathAdminFeed, bytes.NewReader(raw))
	r.Header.Set(protocol.HeaderAdmin, "Bearer admin-secret")
	return f.serve(r)
}

func (f *fixture) applied(kind string, version uint64, content string) protocol.FeedResponse {
	f.t.Helper()
	w := f.feed(kind, version, content, feedKey)
	var res protocol.FeedResponse
	if err := protocol.Dec.Unmarshal(w.Body.Bytes(), &res); w.Code != http.StatusOK || err != nil {
		f.t.Fatalf("feed %s %d: %d %s", kind, version, w.Code, w.Body)
	}
	return res
}

// revokedBefore is the subject's cut-off on the revocation list.
func (f *fixture) revokedBefore(id string) int64 {
	f.t.Helper()
	items, _, _, _, err := f.db.RevocationItems(0)
	if err != nil {
		f.t.Fatal(err)
	}
	sub := credential.Pseudonym(f.keys.Pseudonym, id)
	for _, e := range items {
		if bytes.Equal(e.Subject[:], sub) {
			return e.Before
		}
	}
	return 0
}

// noPersonalData fails if the log holds an ID number, a name or a code.
func (f *fixture) noPersonalData(secrets ...string) {
	f.t.Helper()
	logged := f.log.buf.String()
	for _, s := range append(secrets, credentialtest.IDNumber, credentialtest.Name, otherID, otherName) {
		if s != "" && strings.Contains(logged, s) {
			f.t.Errorf("the log holds %q:\n%s", s, logged)
		}
	}
}

// TestRegistrationProofs: a registration needs a valid proof of who the
// person is, and the signature of the key it registers: without one, with
// another person's code, a used or expired code, or an assertion that is
// not the service's, not for this key, expired or used, it is refused.
func TestRegistrationProofs(t *testing.T) {
	f := holderFixture(t, nil)
	p := newPhone("phone-1")
	wang := f.code(otherID, otherName)
	mine := f.code(credentialtest.IDNumber, credentialtest.Name)
	typo := []byte(mine)
	typo[0] ^= 1 // 'A' <-> '@' and the like: no longer a code
	for _, tc := range []struct {
		name      string
		id, who   string
		code      string
		assertion []byte
		want      int
	}{
		{"no proof", credentialtest.IDNumber, credentialtest.Name, "", nil, http.StatusBadRequest},
		{"another person's code", credentialtest.IDNumber, credentialtest.Name, wang, nil, http.StatusForbidden},
		{"a code under another name", credentialtest.IDNumber, "张三", mine, nil, http.StatusForbidden},
		{"a mistyped code", credentialtest.IDNumber, credentialtest.Name, string(typo), nil, http.StatusForbidden},
		{"a made-up code", credentialtest.IDNumber, credentialtest.Name, "7K3M-Q9XD-2PF", nil, http.StatusForbidden},
		{"a bad ID number", "110105194912310021", credentialtest.Name, mine, nil, http.StatusBadRequest},
	} {
		if w := f.register(p, tc.id, tc.who, tc.code, tc.assertion); w.Code != tc.want {
			t.Errorf("%s: %d %s", tc.name, w.Code, w.Body)
		}
	}
	// Signed by another key than the one it registers.
	other := newPhone("phone-2")
	w := f.holderRequest(other, http.MethodPost, protocol.PathRegister, protocol.RegisterRequest{IDNumber: credentialtest.IDNumber,
		Name: credentialtest.Name, HolderKey: pubOf(p.key), Code: mine}, true)
	if w.Code != http.StatusBadRequest {
		t.Errorf("a registration of a key it is not signed by: %d %s", w.Code, w.Body)
	}
	body, _ := protocol.Enc.Marshal(protocol.RegisterRequest{IDNumber: credentialtest.IDNumber, Name: credentialtest.Name,
		HolderKey: pubOf(p.key), Code: mine})
	if w := f.serve(httptest.NewRequest(http.MethodPost, protocol.PathRegister, bytes.NewReader(body))); w.Code != http.StatusUnauthorized {
		t.Errorf("an unsigned registration: %d %s", w.Code, w.Body)
	}
	if w := f.register(p, credentialtest.IDNumber, credentialtest.Name, mine, nil); w.Code != http.StatusOK {
		t.Fatalf("registration with the person's code: %d %s", w.Code, w.Body)
	}
	if w := f.register(other, credentialtest.IDNumber, credentialtest.Name, mine, nil); w.Code != http.StatusForbidden {
		t.Errorf("a used code: %d %s", w.Code, w.Body)
	}
	late := f.code(credentialtest.IDNumber, credentialtest.Name)
	f.clock.Advance(15*time.Minute + time.Second)
	if w := f.register(other, credentialtest.IDNumber, credentialtest.Name, late, nil); w.Code != http.StatusForbidden {
		t.Errorf("an expired code: %d %s", w.Code, w.Body)
	}

	// A real-name service's assertion.
	now := f.clock.Now()
	assertion := func(key ed25519.PrivateKey, id string, holder ed25519.PublicKey, verified time.Time) []byte {
		raw, err := identity.SignAssertion(identity.Assertion{IDNumber: id, Name: otherName, HolderKey: holder,
			VerifiedAt: verified, Expires: verified.Add(10 * time.Minute), Method: "face"}, key)
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	q := newPhone("phone-3")
	good := assertion(realnameKey, otherID, pubOf(q.key), now)
	for _, tc := range []struct {
		name      string
		id        string
		assertion []byte
	}{
		{"an assertion by an unknown service", otherID, assertion(credentialtest.Key("forger"), otherID, pubOf(q.key), now)},
		{"an assertion for another key", otherID, assertion(realnameKey, otherID, pubOf(p.key), now)},
		{"an assertion for another person", otherID, assertion(realnameKey, credentialtest.IDNumber, pubOf(q.key), now)},
		{"an expired assertion", otherID, assertion(realnameKey, otherID, pubOf(q.key), now.Add(-11*time.Minute))},
		{"an assertion not yet made", otherID, assertion(realnameKey, otherID, pubOf(q.key), now.Add(time.Hour))},
		{"garbage", otherID, []byte{0x84, 0x40, 0xa0, 0x40, 0x40}},
	} {
		if w := f.register(q, tc.id, otherName, "", tc.assertion); w.Code != http.StatusForbidden {
			t.Errorf("%s: %d %s", tc.name, w.Code, w.Body)
		}
	}
	if w := f.register(q, otherID, otherName, mine, good); w.Code != http.StatusBadRequest {
		t.Errorf("two proofs: %d %s", w.Code, w.Body)
	}
	if w := f.register(q, otherID, otherName, "", good); w.Code != http.StatusOK {
		t.Fatalf("registration with the service's assertion: %d %s", w.Code, w.Body)
	}
	if w := f.register(q, otherID, otherName, "", good); w.Code != http.StatusForbidden {
		t.Errorf("the assertion used again: %d %s", w.Code, w.Body)
	}
	if !strings.Contains(f.log.buf.String(), "refused: registration") || !strings.Contains(f.log.buf.String(), "proof=realname") {
		t.Errorf("refusals and registrations not logged:\n%s", f.log.buf.String())
	}
	f.noPersonalData(mine, wang, late, strings.ReplaceAll(mine, "-", ""))
}

// TestDeclarationsAreTheHolders: a declaration must be signed by the
// holder key registered for its subject; a new phone's registration
// replaces the key, revokes the old key's credentials, and lets the new
// phone declare at once, with a credential dated after the cut-off.
func TestDeclarationsAreTheHolders(t *testing.T) {
	f := holderFixture(t, nil)
	p := f.registered("phone-1", credentialtest.IDNumber, credentialtest.Name)
	thief := newPhone("phone-x")
	thief.subject = p.subject
	if w := f.declare(thief, protocol.Declaration{}); w.Code != http.StatusUnauthorized {
		t.Errorf("a declaration signed by another key: %d %s", w.Code, w.Body)
	}
	stranger := newPhone("phone-y")
	stranger.subject = hex.EncodeToString(credential.Pseudonym(f.keys.Pseudonym, otherID))
	if w := f.declare(stranger, protocol.Declaration{}); w.Code != http.StatusUnauthorized {
		t.Errorf("a declaration for a subject nobody registered: %d %s", w.Code, w.Body)
	}
	old, st := f.declared(p, protocol.Declaration{})
	if old.Status != credential.Green || old.MaskedName != "张*丰" || old.Region != "44" || st.Colour != "green" {
		t.Errorf("first declaration: %s %q %s; status %+v", old.Status, old.MaskedName, old.Region, st)
	}
	// The same request sent again: refused as a replay, not as a second
	// declaration.
	body, _ := protocol.Enc.Marshal(protocol.Declaration{})
	r := httptest.NewRequest(http.MethodPost, protocol.PathDeclare, bytes.NewReader(body))
	protocol.SignHolderRequest(r, p.subject, p.key, []byte("the-same-nonce"), f.clock.Now(), body)
	r2 := r.Clone(r.Context())
	r2.Body = httptestBody(body)
	f.serve(r)
	if w := f.serve(r2); w.Code != http.StatusUnauthorized || !strings.Contains(w.Body.String(), "seen before") {
		t.Errorf("a declaration replayed: %d %s", w.Code, w.Body)
	}

	f.clock.Advance(time.Hour)
	q := newPhone("phone-2")
	w := f.register(q, credentialtest.IDNumber, credentialtest.Name, f.code(credentialtest.IDNumber, credentialtest.Name), nil)
	var res protocol.RegisterResponse
	if err := protocol.Dec.Unmarshal(w.Body.Bytes(), &res); w.Code != http.StatusOK || err != nil || !res.Replaced {
		t.Fatalf("a new phone: %d %s", w.Code, w.Body)
	}
	cut := f.revokedBefore(credentialtest.IDNumber)
	if cut != f.clock.Now().Unix() || old.IssuedAt.Unix() > cut {
		t.Errorf("the old key's credentials (issued %v) are not revoked by the cut-off %d", old.IssuedAt, cut)
	}
	if w := f.declare(p, protocol.Declaration{}); w.Code != http.StatusUnauthorized {
		t.Errorf("a declaration by the replaced key: %d %s", w.Code, w.Body)
	}
	fresh, _ := f.declared(q, protocol.Declaration{}) // at once: a new phone
	if fresh.IssuedAt.Unix() <= cut {
		t.Errorf("the new phone's credential, issued %v, is covered by the cut-off %d", fresh.IssuedAt, cut)
	}
	f.noPersonalData()
}

func httptestBody(b []byte) *readCloser { return &readCloser{bytes.NewReader(b)} }

type readCloser struct{ *bytes.Reader }

func (readCloser) Close() error { return nil }

// TestOneDeclarationADay: the second declaration within the day is
// refused with the time of the next one, in the body, a header and
// Retry-After; the day after, it is taken.
func TestOneDeclarationADay(t *testing.T) {
	f := holderFixture(t, nil)
	p := f.registered("phone-1", credentialtest.IDNumber, credentialtest.Name)
	first := f.clock.Now()
	f.declared(p, protocol.Declaration{})
	f.clock.Advance(3 * time.Hour)
	w := f.declare(p, protocol.Declaration{Fever: true})
	next := first.Add(24 * time.Hour).UTC().Format(time.RFC3339)
	if w.Code != http.StatusTooManyRequests || !strings.Contains(w.Body.String(), "next declaration is allowed at "+next) ||
		w.Header().Get(protocol.HeaderNextDeclaration) != next || w.Header().Get("Retry-After") != fmt.Sprint(21*3600+1) {
		t.Errorf("a corrected declaration 3 hours later: %d %q %v", w.Code, w.Body, w.Header())
	}
	if st := f.status(p); st.Colour != "green" || !st.NextDeclaration.Equal(first.Add(24*time.Hour)) {
		t.Errorf("status after the refused correction: %+v", st)
	}
	f.clock.Advance(21 * time.Hour)
	if c, _ := f.declared(p, protocol.Declaration{Fever: true}); c.Status != credential.Yellow {
		t.Errorf("the next day, with a fever: %s", c.Status)
	}
}

// TestDeclarationForm: the form and the risk data decide; a declaration
// naming a colour is refused; the status tells the reason codes and not
// the data behind them.
func TestDeclarationForm(t *testing.T) {
	f := holderFixture(t, nil)
	f.applied(feed.RiskAreas, 1, "region,from,to\n440111,2026-11-20,\n")
	withColour := map[int]any{1: false, 9: "green"}
	p := f.registered("phone-1", credentialtest.IDNumber, credentialtest.Name)
	if w := f.holderRequest(p, http.MethodPost, protocol.PathDeclare, withColour, false); w.Code != http.StatusBadRequest {
		t.Errorf("a declaration naming a colour: %d %s", w.Code, w.Body)
	}
	for _, bad := range []protocol.Declaration{
		{Travel: []protocol.Visit{{Region: "44x", Date: "2026-11-24"}}},
		{Travel: []protocol.Visit{{Region: "440111", Date: "24/11/2026"}}},
		{Travel: []protocol.Visit{{Region: "440111", Date: "2026-11-27"}}},
		{Travel: slices.Repeat([]protocol.Visit{{Region: "440111", Date: "2026-11-24"}}, 33)},
	} {
		if w := f.declare(p, bad); w.Code != http.StatusBadRequest {
			t.Errorf("declaration %+v: %d %s", bad, w.Code, w.Body)
		}
	}
	c, st := f.declared(p, protocol.Declaration{Fever: true, Travel: []protocol.Visit{{Region: "440111004", Date: "2026-11-24"}}})
	if c.Status != credential.Yellow || !slices.Equal(st.Reasons, []string{"risk_area_travel", "declared_fever"}) {
		t.Errorf("a fever and a visit to a listed area: %s %v", c.Status, st.Reasons)
	}
	w := f.holderRequest(p, http.MethodGet, protocol.PathHolderStatus, nil, false)
	if w.Code != http.StatusOK || bytes.Contains(w.Body.Bytes(), []byte("440111")) {
		t.Errorf("the status tells the area: %d %x", w.Code, w.Body.Bytes())
	}
	q := f.registered("phone-2", otherID, otherName)
	if c, st := f.declared(q, protocol.Declaration{Travel: []protocol.Visit{{Region: "440106", Date: "2026-11-24"}}}); c.Status != credential.Green ||
		!slices.Equal(st.Reasons, []string{"clean_declaration"}) {
		t.Errorf("a visit to an unlisted district: %s %v", c.Status, st.Reasons)
	}
}

// TestFeeds: a feed is taken only signed by a configured feed key and
// with the admin token; the same version twice is applied once; the same
// version with other content, an older version or an old feed are
// refused; a case feed turns a registered holder red at once and revokes
// their credentials.
func TestFeeds(t *testing.T) {
	f := holderFixture(t, nil)
	p := f.registered("phone-1", credentialtest.IDNumber, credentialtest.Name)
	green, _ := f.declared(p, protocol.Declaration{})
	f.clock.Advance(time.Minute)
	cases := "id_number,since\n" + strings.ToLower(credentialtest.IDNumber) + ",2026-11-25\n"
	if w := f.feed(feed.Cases, 1, cases, credentialtest.Key("forger")); w.Code != http.StatusForbidden {
		t.Errorf("a feed signed by an unknown key: %d %s", w.Code, w.Body)
	}
	raw, _ := feed.Sign(feed.Feed{Kind: feed.Cases, Version: 1, Issued: f.clock.Now(), Format: feed.CSV, Content: []byte(cases)}, feedKey)
	if w := f.serve(httptest.NewRequest(http.MethodPost, protocol.PathAdminFeed, bytes.NewReader(raw))); w.Code != http.StatusUnauthorized {
		t.Errorf("a feed without the admin token: %d %s", w.Code, w.Body)
	}
	v0, _, _ := f.db.RevocationState()
	res := f.applied(feed.Cases, 1, cases)
	if !res.Applied || res.Rows != 1 || res.Subjects != 1 || res.Changed != 1 || res.RevocationVersion != v0+1 {
		t.Errorf("a case feed: %+v", res)
	}
	if cut := f.revokedBefore(credentialtest.IDNumber); cut != f.clock.Now().Unix() || green.IssuedAt.Unix() > cut {
		t.Errorf("the green credential (issued %v) is not revoked (cut-off %d)", green.IssuedAt, cut)
	}
	st := f.status(p)
	if st.Colour != "red" || !slices.Equal(st.Reasons, []string{"case"}) || !st.NextDeclaration.IsZero() ||
		len(st.History) != 2 || st.History[1].Cause != "feed" || st.History[1].Colour != "red" {
		t.Errorf("status after the case feed: %+v", st)
	}
	if res := f.applied(feed.Cases, 1, cases); res.Applied || res.Changed != 0 {
		t.Errorf("the same feed again: %+v", res)
	}
	if v, _, _ := f.db.RevocationState(); v != v0+1 {
		t.Errorf("the same feed again made revocation version %d", v)
	}
	if w := f.feed(feed.Cases, 1, cases+otherID+",2026-11-25\n", feedKey); w.Code != http.StatusConflict {
		t.Errorf("version 1 again with other content: %d %s", w.Code, w.Body)
	}
	f.applied(feed.Cases, 5, "id_number,since\n")
	if w := f.feed(feed.Cases, 4, cases, feedKey); w.Code != http.StatusConflict {
		t.Errorf("version 4 after 5: %d %s", w.Code, w.Body)
	}
	if res := f.applied(feed.CloseContacts, 1, "id_number,since\n"); !res.Applied {
		t.Errorf("another kind counts its own versions: %+v", res)
	}
	// A feed signed long ago, never applied: refused.
	old, _ := feed.Sign(feed.Feed{Kind: feed.Cases, Version: 9, Issued: f.clock.Now().Add(-8 * 24 * time.Hour), Format: feed.CSV,
		Content: []byte(cases)}, feedKey)
	r := httptest.NewRequest(http.MethodPost, protocol.PathAdminFeed, bytes.NewReader(old))
	r.Header.Set(protocol.HeaderAdmin, "Bearer admin-secret")
	if w := f.serve(r); w.Code != http.StatusConflict {
		t.Errorf("a feed issued 8 days ago: %d %s", w.Code, w.Body)
	}
	if w := f.feed(feed.Cases, 10, "id_number,since\n110105194912310021,2026-11-25\n", feedKey); w.Code != http.StatusBadRequest ||
		strings.Contains(w.Body.String(), "1101051949") {
		t.Errorf("a feed with a bad ID number: %d %s", w.Code, w.Body)
	}
	// Someone not registered is named: their colour is held, and applies
	// when they register.
	f.applied(feed.CloseContacts, 2, "id_number,since\n"+otherID+",2026-11-25\n")
	q := f.registered("phone-2", otherID, otherName)
	if c, _ := f.declared(q, protocol.Declaration{}); c.Status != credential.Yellow {
		t.Errorf("a close contact named before registering declared %s", c.Status)
	}
	f.noPersonalData()
}

// TestQuarantineEnds: a close contact named by a feed goes yellow at
// once, their green credential revoked; declaring within the quarantine
// keeps them yellow, and a second declaration before its end is refused
// until the end; after it, a clean declaration gives a green credential
// dated after the cut-off of the change, which revokes the yellow one.
func TestQuarantineEnds(t *testing.T) {
	r := rules.Default()
	r.CloseContact.Quarantine = rules.Duration(20 * time.Second)
	f := holderFixture(t, &r)
	p := f.registered("phone-1", credentialtest.IDNumber, credentialtest.Name)
	green, _ := f.declared(p, protocol.Declaration{})
	f.clock.Advance(time.Minute)
	named := f.clock.Now()
	f.applied(feed.CloseContacts, 1, "id_number,since\n"+credentialtest.IDNumber+","+named.Format(time.RFC3339)+"\n")
	if cut := f.revokedBefore(credentialtest.IDNumber); cut < green.IssuedAt.Unix() {
		t.Fatalf("green credential not revoked")
	}
	yellow, st := f.declared(p, protocol.Declaration{}) // at once: the colour changed since the last declaration
	if yellow.Status != credential.Yellow || yellow.IssuedAt.Unix() <= f.revokedBefore(credentialtest.IDNumber) ||
		!st.QuarantineEnd.Equal(named.Add(20*time.Second)) {
		t.Fatalf("declared in the quarantine: %s issued %v; status %+v", yellow.Status, yellow.IssuedAt, st)
	}
	f.clock.Advance(10 * time.Second)
	if w := f.declare(p, protocol.Declaration{}); w.Code != http.StatusTooManyRequests ||
		w.Header().Get(protocol.HeaderNextDeclaration) != named.Add(20*time.Second).UTC().Format(time.RFC3339) {
		t.Errorf("declared again within the quarantine: %d %s %v", w.Code, w.Body, w.Header())
	}
	f.clock.Advance(15 * time.Second)
	if st := f.status(p); st.Colour != "yellow" {
		t.Errorf("after the quarantine, before declaring: %s", st.Colour)
	}
	c, st := f.declared(p, protocol.Declaration{})
	cut := f.revokedBefore(credentialtest.IDNumber)
	if c.Status != credential.Green || c.IssuedAt.Unix() <= cut || yellow.IssuedAt.Unix() > cut ||
		!slices.Equal(st.Reasons, []string{"clean_declaration"}) {
		t.Errorf("clean declaration after the quarantine: %s issued %v, cut-off %d, yellow issued %v; %v",
			c.Status, c.IssuedAt, cut, yellow.IssuedAt, st.Reasons)
	}
}

// TestFeedInTheSecondOfADeclaration: a close-contact feed applied in the
// very second of a declaration either revokes the declaration's green
// credential (the feed after) or is the credential's colour (the feed
// before), whatever the order.
func TestFeedInTheSecondOfADeclaration(t *testing.T) {
	for _, feedFirst := range []bool{false, true} {
		f := holderFixture(t, nil)
		p := f.registered("phone-1", credentialtest.IDNumber, credentialtest.Name)
		contacts := "id_number,since\n" + credentialtest.IDNumber + ",2026-11-25\n"
		if feedFirst {
			f.applied(feed.CloseContacts, 1, contacts)
		}
		c, _ := f.declared(p, protocol.Declaration{})
		if !feedFirst {
			f.applied(feed.CloseContacts, 1, contacts)
		}
		cut := f.revokedBefore(credentialtest.IDNumber)
		if c.Status == credential.Green && c.IssuedAt.Unix() > cut {
			t.Errorf("feed first %v: a green credential issued %v, after the cut-off %d", feedFirst, c.IssuedAt, cut)
		}
		if feedFirst && c.Status != credential.Yellow {
			t.Errorf("declared after the feed: %s", c.Status)
		}
	}
}

// TestFeedKinds: a feed key limited to some kinds of feed cannot send
// another: a department that traces close contacts cannot name cases.
func TestFeedKinds(t *testing.T) {
	contacts := credentialtest.Key("contact-tracing")
	f := newFixture(t, authority.Options{FeedKeys: []ed25519.PublicKey{pubOf(feedKey), pubOf(contacts)},
		FeedKinds: map[string][]string{hex.EncodeToString(credential.KeyIDOf(pubOf(contacts))): {feed.CloseContacts}}})
	p := f.registered("phone-1", credentialtest.IDNumber, credentialtest.Name)
	f.declared(p, protocol.Declaration{})
	f.clock.Advance(time.Minute)
	table := "id_number,since\n" + credentialtest.IDNumber + ",2026-11-25\n"
	v0, _, _ := f.db.RevocationState()
	if w := f.feed(feed.Cases, 1, table, contacts); w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "close_contacts") {
		t.Errorf("a cases feed from the close contacts' key: %d %s", w.Code, w.Body)
	}
	if v, _, _ := f.db.RevocationState(); v != v0 {
		t.Errorf("the refused feed changed the revocations: version %d, was %d", v, v0)
	}
	if st := f.status(p); st.Colour != "green" {
		t.Errorf("after the refused feed: %s", st.Colour)
	}
	if w := f.feed(feed.CloseContacts, 1, table, contacts); w.Code != http.StatusOK {
		t.Errorf("a close contacts feed from its key: %d %s", w.Code, w.Body)
	}
	if st := f.status(p); st.Colour != "yellow" {
		t.Errorf("after the close contacts feed: %s", st.Colour)
	}
	if w := f.feed(feed.Cases, 1, table, feedKey); w.Code != http.StatusOK {
		t.Errorf("a cases feed from a key with no limit: %d %s", w.Code, w.Body)
	}
}

// retriedFeedStore runs each feed's reassessment once more before the
// real transaction, on the holders as they were held when it was made:
// as a transaction that failed after reassessing (a deadlock, a
// serialisation failure) and was retried.
type retriedFeedStore struct {
	*store.Authority
	before []store.Holder
}

func (s *retriedFeedStore) ApplyFeed(f store.FeedUpdate, reassess func(store.Holder) (*store.HolderUpdate, error)) (store.FeedResult, error) {
	for _, h := range s.before {
		if _, err := reassess(h); err != nil {
			return store.FeedResult{}, err
		}
	}
	return s.Authority.ApplyFeed(f, reassess)
}

// TestRetriedFeedLogsWhatItChanged: a feed's audit lines name the colour
// changes its transaction recorded, not those of an attempt retried: a
// feed found applied on the retry logs no change.
func TestRetriedFeedLogsWhatItChanged(t *testing.T) {
	f := holderFixture(t, nil)
	p := f.registered("phone-1", credentialtest.IDNumber, credentialtest.Name)
	f.declared(p, protocol.Declaration{})
	sub := [store.SubjectSize]byte(credential.Pseudonym(f.keys.Pseudonym, credentialtest.IDNumber))
	h, err := f.db.Holder(sub)
	if err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(time.Minute)
	cases := "id_number,since\n" + credentialtest.IDNumber + ",2026-11-25\n"
	f.applied(feed.Cases, 1, cases)
	if n := f.log.count("colour changed by a feed"); n != 1 {
		t.Fatalf("the feed logged %d colour changes", n)
	}
	// The same feed again, whose first attempt saw the holder green (a
	// concurrent copy of it applied meanwhile).
	h.Case = f.clock.Now().Add(-time.Hour)
	f.srv = authority.New(&retriedFeedStore{Authority: f.db, before: []store.Holder{h}}, f.keys, f.opts)
	if res := f.applied(feed.Cases, 1, cases); res.Applied {
		t.Fatalf("the same feed again: %+v", res)
	}
	if n := f.log.count("colour changed by a feed"); n != 1 {
		t.Errorf("a feed found applied logged %d colour changes in all, want the first feed's 1", n)
	}
	// A feed whose first attempt changed a colour that, on the retry, is
	// already what the feed makes it: no change logged.
	f.applied(feed.Cases, 2, cases)
	if n := f.log.count("colour changed by a feed"); n != 1 {
		t.Errorf("a feed that changed nothing logged %d colour changes in all, want 1", n)
	}
}
