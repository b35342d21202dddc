package trust_test

import (
	"crypto/ed25519"
	"errors"
	"testing"
	"time"

	"github.com/checkpointd/checkpoint/internal/credential/credentialtest"
	"github.com/checkpointd/checkpoint/internal/trust"
)

func pub(k ed25519.PrivateKey) ed25519.PublicKey { return k.Public().(ed25519.PublicKey) }

func TestTrustListRoundTrip(t *testing.T) {
	f := credentialtest.New()
	l := f.Trust
	if l.Version != 1 || len(l.Issuers) != 1 {
		t.Fatalf("list %+v", l)
	}
	got := l.Lookup(l.Issuers[0].KeyID)
	if len(got) != 1 || !got[0].PublicKey.Equal(pub(f.Issuer)) || got[0].Issuer != "GD" {
		t.Fatalf("lookup %+v", got)
	}
	if len(l.Lookup([]byte{1, 2, 3, 4})) != 0 {
		t.Error("lookup of an unknown key id found something")
	}
	i := got[0]
	for region, want := range map[string]bool{"440305": true, "44": true, "4": false, "110105": false, "4503": false} {
		if i.AllowsRegion(region) != want {
			t.Errorf("AllowsRegion(%s) = %v", region, !want)
		}
	}
	if !i.ValidAt(time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)) || i.ValidAt(time.Date(2025, 12, 31, 23, 59, 59, 0, time.UTC)) ||
		i.ValidAt(time.Date(2027, 1, 1, 0, 0, 1, 0, time.UTC)) {
		t.Error("ValidAt ignores the validity period")
	}
}

func TestListsAreBoundToRootAndType(t *testing.T) {
	f := credentialtest.New()
	rev, err := trust.SignRevocations(&trust.Revocations{Version: 1, Expires: f.Now}, f.Root)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := trust.Parse(f.TrustBytes, pub(credentialtest.Key("impostor"))); !errors.Is(err, trust.ErrBadSignature) {
		t.Errorf("trust list under another root: %v", err)
	}
	if _, err := trust.Parse(rev, pub(f.Root)); !errors.Is(err, trust.ErrWrongType) {
		t.Errorf("revocation list read as a trust list: %v", err)
	}
	if _, err := trust.ParseRevocations(f.TrustBytes, pub(f.Root)); !errors.Is(err, trust.ErrWrongType) {
		t.Errorf("trust list read as a revocation list: %v", err)
	}
	tampered := append([]byte(nil), f.TrustBytes...)
	tampered[len(tampered)-70] ^= 1 // inside the payload
	if _, err := trust.Parse(tampered, pub(f.Root)); err == nil {
		t.Error("tampered trust list accepted")
	}
}

func TestRevocationSet(t *testing.T) {
	f := credentialtest.New()
	a, b := make([]byte, 10), make([]byte, 10)
	a[0], b[0] = 1, 2
	t0 := f.Now
	raw, err := trust.SignRevocations(&trust.Revocations{
		Version: 3, IssuedAt: t0, Expires: t0.Add(time.Hour),
		Entries: []trust.Revocation{
			{Subject: a, Before: t0, DropAfter: t0.Add(48 * time.Hour)},
			{Subject: a, Before: t0.Add(-time.Hour), DropAfter: t0.Add(47 * time.Hour)},
		},
	}, f.Root)
	if err != nil {
		t.Fatal(err)
	}
	l, err := trust.ParseRevocations(raw, pub(f.Root))
	if err != nil {
		t.Fatal(err)
	}
	s := trust.NewRevocationSet(l)
	if s.Len() != 1 || !s.ValidUntil().Equal(t0.Add(time.Hour)) {
		t.Fatalf("set of %d, valid until %v", s.Len(), s.ValidUntil())
	}
	for _, tc := range []struct {
		subject []byte
		issued  time.Time
		want    bool
	}{
		{a, t0.Add(-time.Minute), true},
		{a, t0.Add(-90 * time.Minute), true},
		{a, t0, true}, // issued in the second of the revocation
		{a, t0.Add(time.Second), false},
		{a, t0.Add(time.Minute), false},
		{b, t0.Add(-time.Minute), false},
		{a[:5], t0.Add(-time.Minute), false},
	} {
		if got := s.Revoked(tc.subject, tc.issued); got != tc.want {
			t.Errorf("Revoked(%x, %v) = %v", tc.subject, tc.issued, got)
		}
	}
}

func FuzzParse(f *testing.F) {
	fx := credentialtest.New()
	rev, _ := trust.SignRevocations(&trust.Revocations{Version: 1, Expires: fx.Now,
		Entries: []trust.Revocation{{Subject: make([]byte, 10)}}}, fx.Root)
	f.Add(fx.TrustBytes)
	f.Add(rev)
	f.Add([]byte{0x84, 0x40, 0xa0, 0x40, 0x40})
	root := pub(fx.Root)
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err1 := trust.Parse(data, root)
		_, err2 := trust.ParseRevocations(data, root)
		if err1 == nil && err2 == nil {
			t.Fatal("one object parsed as both list types")
		}
	})
}

// TestEventKey: the authority's event key travels in the signed list; a
// key of the wrong size is refused on both sides.
func TestEventKey(t *testing.T) {
	f := credentialtest.New()
	l := *f.Trust
	l.EventKey = make([]byte, trust.EventKeySize)
	l.EventKey[0] = 7
	raw, err := trust.Sign(&l, f.Root)
	if err != nil {
		t.Fatal(err)
	}
	got, err := trust.Parse(raw, pub(f.Root))
	if err != nil || len(got.EventKey) != trust.EventKeySize || got.EventKey[0] != 7 {
		t.Fatalf("parsed %v, %v", got.EventKey, err)
	}
	if f.Trust.EventKey != nil {
		t.Error("a list without an event key has one")
	}
	l.EventKey = make([]byte, 31)
	if _, err := trust.Sign(&l, f.Root); err == nil {
		t.Error("signed an event key of 31 bytes")
	}
}
