package verify

import (
	"crypto/ed25519"
	"slices"
	"strings"
	"testing"
	"time"

	cose "github.com/veraison/go-cose"

	"github.com/checkpointd/checkpoint/internal/base45"
	"github.com/checkpointd/checkpoint/internal/credential"
	"github.com/checkpointd/checkpoint/internal/credential/credentialtest"
	"github.com/checkpointd/checkpoint/internal/trust"
)

// revocations is a revocation list current until validUntil that revokes
// subject's credentials issued at or before before (none if subject is
// nil).
func revocations(subject []byte, before, validUntil time.Time) *trust.RevocationSet {
	l := &trust.Revocations{Expires: validUntil}
	if subject != nil {
		l.Entries = []trust.Revocation{{Subject: subject, Before: before, DropAfter: before.Add(30 * 24 * time.Hour)}}
	}
	return trust.NewRevocationSet(l)
}

// spliceSignature puts the signature of one COSE_Sign1 on another's content.
func spliceSignature(t *testing.T, content, signed []byte) []byte {
	t.Helper()
	var a, b cose.UntaggedSign1Message
	if err := a.UnmarshalCBOR(content); err != nil {
		t.Fatal(err)
	}
	if err := b.UnmarshalCBOR(signed); err != nil {
		t.Fatal(err)
	}
	a.Signature = b.Signature
	out, err := a.MarshalCBOR()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestReasons(t *testing.T) {
	f := credentialtest.New()
	now := f.Now
	cred := f.Issue(f.Credential(nil))
	fresh := f.Present(cred, now.Add(-5*time.Second))
	issued := func(edit func(*credential.Credential)) []byte { return f.Issue(f.Credential(edit)) }
	static := func(c *credential.Credential) { c.HolderKey = nil }
	other := credentialtest.Key("another issuer")

	// A credential whose claims say red, carrying the signature of the
	// green one: what an edited code looks like.
	red := issued(func(c *credential.Credential) { c.Status = credential.Red })
	edited := f.Present(spliceSignature(t, red, cred), now)

	// A presentation whose holder signature is broken.
	raw, _ := base45.Decode(strings.TrimPrefix(fresh, credential.Prefix))
	raw = slices.Clone(raw)
	raw[len(raw)-1] ^= 1
	badHolder := credential.EncodeText(raw)

	staleTrust := *f.Trust
	staleTrust.Expires = now.Add(-time.Hour)

	subject := f.Credential(nil).Subject
	revokedNow := revocations(subject, now, now.Add(24*time.Hour))
	current := revocations(nil, time.Time{}, now.Add(24*time.Hour))

	tests := []struct {
		name    string
		text    string
		edit    func(*Input)
		want    Outcome
		reasons []Reason
	}{
		{"green passes", fresh, nil, Pass, nil},
		{"not a code", "https://example.com/", nil, Refuse, []Reason{Malformed}},
		{"empty", "", nil, Refuse, []Reason{Malformed}},
		{"bad base45", credential.Prefix + "GGW", nil, Refuse, []Reason{Malformed}},
		{"truncated", fresh[:len(fresh)-30], nil, Refuse, []Reason{Malformed}},
		{"not COSE", credential.Prefix + base45.Encode([]byte("hello world")), nil, Refuse, []Reason{Malformed}},
		{"too long", credential.Prefix + strings.Repeat("0", credential.MaxTextLen), nil, Refuse, []Reason{Malformed}},
		{"version 1", "CP1:" + fresh[len(credential.Prefix):], nil, Refuse, []Reason{UnsupportedVersion}},
		{"next version", "CP3:" + fresh[len(credential.Prefix):], nil, Refuse, []Reason{UnsupportedVersion}},
		{"unknown issuer", f.Present(f.IssueWith(f.Credential(nil), other), now), nil, Refuse, []Reason{UnknownIssuerKey}},
		{"edited claims", edited, nil, Refuse, []Reason{BadIssuerSignature}},
		{"key not valid at issue time", f.Present(issued(func(c *credential.Credential) {
			c.IssuedAt = time.Date(2025, 12, 31, 0, 0, 0, 0, time.UTC)
			c.Expires = now.Add(time.Hour)
		}), now), nil, Refuse, []Reason{IssuerKeyNotValid}},
		{"key not for this region", f.Present(issued(func(c *credential.Credential) { c.Region = "110105" }), now),
			nil, Refuse, []Reason{IssuerKeyNotValid}},
		{"key not for this issuer", f.Present(issued(func(c *credential.Credential) { c.Issuer = "BJ" }), now),
			nil, Refuse, []Reason{IssuerKeyNotValid}},
		{"broken holder signature", badHolder, nil, Refuse, []Reason{BadHolderSignature}},
		{"phone credential without the phone", credential.EncodeText(cred), nil, Refuse, []Reason{BadHolderSignature}},
		{"not yet valid", f.Present(issued(func(c *credential.Credential) { c.IssuedAt = now.Add(time.Hour) }), now),
			nil, Refuse, []Reason{NotYetValid}},
		{"expired", f.Present(issued(func(c *credential.Credential) {
			c.IssuedAt = now.Add(-25 * time.Hour)
			c.Expires = now.Add(-time.Hour)
		}), now), nil, Refuse, []Reason{Expired}},
		{"expired within skew passes", f.Present(issued(func(c *credential.Credential) {
			c.Expires = now.Add(-10 * time.Second)
		}), now), nil, Pass, nil},
		{"screenshot two minutes old", f.Present(cred, now.Add(-2*time.Minute)), nil, Refuse, []Reason{PresentationStale}},
		{"screenshot just past window and skew", f.Present(cred, now.Add(-46*time.Second)), nil, Refuse, []Reason{PresentationStale}},
		{"just inside window and skew", f.Present(cred, now.Add(-45*time.Second)), nil, Pass, nil},
		{"presentation from the future", f.Present(cred, now.Add(2*time.Minute)), nil, Refuse, []Reason{PresentationFuture}},
		{"future within skew", f.Present(cred, now.Add(10*time.Second)), nil, Pass, nil},
		{"revoked", fresh, func(in *Input) { in.Revocations = revokedNow }, Refuse, []Reason{Revoked}},
		{"issued after the revocation", f.Present(issued(func(c *credential.Credential) {
			c.IssuedAt = now.Add(-time.Minute)
		}), now), func(in *Input) {
			in.Revocations = revocations(subject, now.Add(-time.Hour), now.Add(time.Hour))
		}, Pass, nil},
		{"not revoked", fresh, func(in *Input) { in.Revocations = current }, Pass, nil},
		{"yellow", f.Present(issued(func(c *credential.Credential) { c.Status = credential.Yellow }), now), nil, Refer, []Reason{StatusYellow}},
		{"red", f.Present(red, now), nil, Refuse, []Reason{StatusRed}},
		{"paper code", credential.EncodeText(issued(static)), nil, Refer, []Reason{StaticCode}},
		{"paper code with matching ID", credential.EncodeText(issued(static)),
			func(in *Input) { in.IDNumber = strings.ToLower(credentialtest.IDNumber) }, Pass, []Reason{StaticCode}},
		{"paper code with another ID", credential.EncodeText(issued(static)),
			func(in *Input) { in.IDNumber = "440305199003071236" }, Refuse, []Reason{IDMismatch, StaticCode}},
		{"paper code with a number that is not an ID number", credential.EncodeText(issued(static)),
			func(in *Input) { in.IDNumber = "440305zz1224" }, Refuse, []Reason{IDMismatch, StaticCode}},
		{"phone code with another ID", fresh, func(in *Input) { in.IDNumber = "110105199001010010" }, Refuse, []Reason{IDMismatch}},
		{"phone code with the holder's 15-digit number", fresh, func(in *Input) { in.IDNumber = "110105491231002" },
			Refuse, []Reason{IDMismatch}},
		{"revocation list stale", fresh, func(in *Input) {
			in.Revocations = revocations(nil, time.Time{}, now.Add(-time.Minute))
		}, Refer, []Reason{RevocationListStale}},
		{"trust list stale", fresh, func(in *Input) { in.Trust = &staleTrust }, Refer, []Reason{TrustListStale}},
		{"clock uncertain", fresh, func(in *Input) { in.Now.Uncertainty = 10 * time.Minute }, Refer, []Reason{ClockUntrusted}},
		{"clock unknown", fresh, func(in *Input) { in.Now.Uncertainty = -1 }, Refer, []Reason{ClockUntrusted}},
		{"several at once", f.Present(issued(func(c *credential.Credential) {
			c.Status = credential.Yellow
			c.IssuedAt = now.Add(-25 * time.Hour)
			c.Expires = now.Add(-time.Hour)
		}), now.Add(-2*time.Minute)), func(in *Input) { in.Revocations = revokedNow },
			Refuse, []Reason{Expired, PresentationStale, Revoked, StatusYellow}},
		{"no trust list", fresh, func(in *Input) { in.Trust = nil }, Refuse, []Reason{UnknownIssuerKey}},
	}
	covered := map[Reason]bool{Replayed: true} // TestReplay covers it
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := Input{Text: tc.text, Trust: f.Trust, Policy: DefaultPolicy(), Now: Instant{Time: now}}
			if tc.edit != nil {
				tc.edit(&in)
			}
			d := Verify(in)
			if d.Outcome != tc.want || !slices.Equal(d.Reasons, tc.reasons) {
				t.Errorf("got %v %v (%s), want %v %v", d.Outcome, d.Reasons, d.Detail, tc.want, tc.reasons)
			}
			// The card read after the code decides the same.
			if number := in.IDNumber; number != "" {
				in.IDNumber = ""
				later := Verify(in).WithID(number, in.Policy)
				if later.Outcome != d.Outcome || !slices.Equal(later.Reasons, d.Reasons) || later.IDMatched != d.IDMatched {
					t.Errorf("ID read after the code: %v %v matched=%v, with it: %v %v matched=%v",
						later.Outcome, later.Reasons, later.IDMatched, d.Outcome, d.Reasons, d.IDMatched)
				}
			}
			for _, r := range d.Reasons {
				covered[r] = true
			}
		})
	}
	for _, r := range Reasons {
		if !covered[r] {
			t.Errorf("no test case yields %s", r)
		}
	}
}

func TestReplay(t *testing.T) {
	f := credentialtest.New()
	cred := f.Issue(f.Credential(nil))
	p := DefaultPolicy()
	cache := NewReplayCache(100)
	at := func(text string, d time.Duration) Decision {
		return Verify(Input{Text: text, Trust: f.Trust, Replay: cache, Policy: p, Now: Instant{Time: f.Now.Add(d)}})
	}
	first := f.Present(cred, f.Now)
	steps := []struct {
		name     string
		text     string
		at       time.Duration
		want     Outcome
		repeat   bool
		replayed bool
	}{
		{"first sighting", first, 0, Pass, false, false},
		{"same screen a moment later", first, 3 * time.Second, Pass, true, false},
		{"phone refreshed its code", f.Present(cred, f.Now.Add(5*time.Second)), 6 * time.Second, Pass, true, false},
		{"first code again after the grace: a copy", first, 20 * time.Second, Refuse, false, true},
		{"same holder back later with a new code", f.Present(cred, f.Now.Add(40*time.Second)), 41 * time.Second, Pass, false, false},
	}
	for _, s := range steps {
		d := at(s.text, s.at)
		if d.Outcome != s.want || d.Repeat != s.repeat || slices.Contains(d.Reasons, Replayed) != s.replayed {
			t.Errorf("%s: got %v %v repeat=%v", s.name, d.Outcome, d.Reasons, d.Repeat)
		}
	}
}

func TestReplayCacheBounded(t *testing.T) {
	f := credentialtest.New()
	cache := NewReplayCache(8)
	p := DefaultPolicy()
	for i := 0; i < 100; i++ {
		var fp [32]byte
		fp[0], fp[1] = byte(i), byte(i>>8)
		cache.observe(fp, string(rune(i)), f.Now.Add(time.Duration(i)*time.Millisecond), p, true)
		if n := cache.Len(); n > 8 {
			t.Fatalf("cache holds %d sightings, capacity 8", n)
		}
	}
	if len(cache.seen) > 8 || len(cache.last) > 8 {
		t.Fatalf("maps hold %d and %d entries, capacity 8", len(cache.seen), len(cache.last))
	}
	// Long after, everything has expired.
	cache.observe([32]byte{0xff}, "late", f.Now.Add(time.Hour), p, true)
	if n := cache.Len(); n != 1 {
		t.Fatalf("after an hour the cache holds %d sightings, want 1", n)
	}
}

func TestDecisionShowsCode(t *testing.T) {
	f := credentialtest.New()
	d := Verify(Input{Text: f.Text(), Trust: f.Trust, Policy: DefaultPolicy(), Now: Instant{Time: f.Now}})
	c := d.Code
	if c == nil {
		t.Fatal("no code info on a passing decision")
	}
	if c.MaskedName != "张*丰" || c.Region != "44" || c.Status != "green" || c.Static ||
		c.IssuerName != "Guangdong Health Code Authority" || c.PresentedAt == nil {
		t.Errorf("code info %+v", c)
	}
	forged := Verify(Input{Text: f.Present(f.IssueWith(f.Credential(nil), credentialtest.Key("x")), f.Now),
		Trust: f.Trust, Policy: DefaultPolicy(), Now: Instant{Time: f.Now}})
	if forged.Code != nil {
		t.Error("a code from an unknown issuer shows its claims to the guard")
	}
}

func TestEveryReasonHasWords(t *testing.T) {
	seen := map[Reason]bool{}
	for _, r := range append(slices.Clone(Reasons), PassageReasons...) {
		zh, en := r.Words()
		if zh == string(r) || en == string(r) || zh == "" || en == "" {
			t.Errorf("%s has no words", r)
		}
		if seen[r] {
			t.Errorf("%s listed twice", r)
		}
		seen[r] = true
	}
	if len(seen) != len(reasonWords) {
		t.Errorf("Reasons and PassageReasons list %d codes, reasonWords %d", len(seen), len(reasonWords))
	}
}

func TestPolicyIsData(t *testing.T) {
	p, err := ParsePolicy([]byte(`{"status_yellow": "refuse", "static_code": "pass", "presentation_window": "10s"}`))
	if err != nil {
		t.Fatal(err)
	}
	if p.StatusYellow != Refuse || p.StaticCode != Pass || p.PresentationWindow != Duration(10*time.Second) ||
		p.StatusRed != Refuse || p.ClockSkew != Duration(15*time.Second) {
		t.Errorf("parsed %+v", p)
	}
	for _, bad := range []string{
		`{"status_yelow": "refuse"}`,
		`{"status_red": "maybe"}`,
		`{"presentation_window": "0s"}`,
		`{"repeat_grace": "1m"}`,
		`[]`,
	} {
		if _, err := ParsePolicy([]byte(bad)); err == nil {
			t.Errorf("ParsePolicy(%s) accepted", bad)
		}
	}

	f := credentialtest.New()
	yellow := f.Present(f.Issue(f.Credential(func(c *credential.Credential) { c.Status = credential.Yellow })), f.Now)
	if d := Verify(Input{Text: yellow, Trust: f.Trust, Policy: p, Now: Instant{Time: f.Now}}); d.Outcome != Refuse {
		t.Errorf("yellow under a refuse-yellow policy: %v", d.Outcome)
	}
}

func TestTrustListFromAnotherRootIsRefused(t *testing.T) {
	f := credentialtest.New()
	if _, err := trust.Parse(f.TrustBytes, credentialtest.Key("not the root").Public().(ed25519.PublicKey)); err == nil {
		t.Fatal("trust list accepted under the wrong root key")
	}
}

func FuzzVerify(f *testing.F) {
	fx := credentialtest.New()
	f.Add(fx.Text())
	f.Add(credential.EncodeText(fx.Issue(fx.Credential(nil))))
	f.Add("CP2:")
	f.Add("CP1:ABC")
	f.Add("CP9:ABC")
	f.Fuzz(func(t *testing.T, text string) {
		d := Verify(Input{Text: text, Trust: fx.Trust, Replay: NewReplayCache(16), Policy: DefaultPolicy(), Now: Instant{Time: fx.Now}})
		if len(d.Reasons) == 0 && d.Outcome != Pass {
			t.Fatalf("outcome %v without a reason", d.Outcome)
		}
		if d.Outcome == Pass && d.Code == nil {
			t.Fatal("pass without a verified code")
		}
	})
}
