package identity

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"
	"time"
)

func key(name string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte(name))
	return ed25519.NewKeyFromSeed(seed[:])
}

// TestCodes: a new code reads back whatever its case and grouping, with
// the letters people confuse for digits; every single mistyped character
// and almost every swap of two neighbours is caught.
func TestCodes(t *testing.T) {
	seen := map[string]bool{}
	for range 200 {
		c, err := NewCode()
		if err != nil {
			t.Fatal(err)
		}
		if len(c) != 13 || c[4] != '-' || c[9] != '-' {
			t.Fatalf("code %q is not grouped 4-4-3", c)
		}
		plain, err := ParseCode(c)
		if err != nil || plain != strings.ReplaceAll(c, "-", "") {
			t.Fatalf("ParseCode(%q) = %q, %v", c, plain, err)
		}
		if seen[plain] {
			t.Fatalf("code %q made twice", plain)
		}
		seen[plain] = true
		typed := strings.ToLower(strings.ReplaceAll(strings.ReplaceAll(c, "-", " "), "1", "l"))
		typed = strings.ReplaceAll(typed, "0", "o")
		if got, err := ParseCode(typed); err != nil || got != plain {
			t.Errorf("ParseCode(%q) = %q, %v; want %q", typed, got, err, plain)
		}
	}
	for _, bad := range []string{"", "7K3M-Q9XD", "7K3M-Q9XD-2PFF", "7K3M-Q9XD-2P!", "7K3M-Q9XD-2PU", strings.Repeat("A", 100), "７K3M-Q9XD-2PF"} {
		if _, err := ParseCode(bad); !errors.Is(err, ErrBadCode) {
			t.Errorf("ParseCode(%q): %v", bad, err)
		}
	}
	code, _ := NewCode()
	plain, _ := ParseCode(code)
	for i := range len(plain) {
		for _, c := range alphabet {
			if byte(c) == plain[i] {
				continue
			}
			typo := plain[:i] + string(c) + plain[i+1:]
			if _, err := ParseCode(typo); err == nil {
				t.Errorf("%q mistyped as %q was accepted", plain, typo)
			}
		}
	}
	missed := 0
	for a := range len(alphabet) {
		for b := range len(alphabet) {
			if a == b {
				continue
			}
			s := "ABCDEFGH" + string(alphabet[a]) + string(alphabet[b])
			swapped := "ABCDEFGH" + string(alphabet[b]) + string(alphabet[a])
			if checkChar(s) == checkChar(swapped) {
				missed++
				if (alphabet[a] != '0' || alphabet[b] != 'Z') && (alphabet[a] != 'Z' || alphabet[b] != '0') {
					t.Errorf("swapping %c and %c is not caught", alphabet[a], alphabet[b])
				}
			}
		}
	}
	t.Logf("%d of %d swaps of two neighbours not caught", missed, 32*31)
	if !bytes.Equal(CodeHash([]byte("k"), plain), CodeHash([]byte("k"), plain)) || bytes.Equal(CodeHash([]byte("k"), plain), CodeHash([]byte("l"), plain)) {
		t.Error("CodeHash is not a keyed function of the code")
	}
}

func assertion() Assertion {
	return Assertion{IDNumber: "11010519491231002x", Name: "张三丰", HolderKey: key("holder").Public().(ed25519.PublicKey),
		VerifiedAt: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC), Expires: time.Date(2026, 11, 25, 12, 10, 0, 0, time.UTC),
		Method: "face"}
}

// TestAssertions: an assertion opens with its service's key only, with
// every field as signed and the ID number normalised; one missing a field
// cannot be made.
func TestAssertions(t *testing.T) {
	svc := key("realname")
	raw, err := SignAssertion(assertion(), svc)
	if err != nil {
		t.Fatal(err)
	}
	a, err := OpenAssertion(raw, key("other").Public().(ed25519.PublicKey), svc.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	want := assertion()
	if a.IDNumber != "11010519491231002X" || a.Name != want.Name || !a.HolderKey.Equal(want.HolderKey) ||
		!a.VerifiedAt.Equal(want.VerifiedAt) || !a.Expires.Equal(want.Expires) || len(a.ID) != AssertionIDSize || a.Method != "face" {
		t.Errorf("opened %+v", a)
	}
	if _, err := OpenAssertion(raw, key("other").Public().(ed25519.PublicKey)); !errors.Is(err, ErrBadSignature) {
		t.Errorf("with another service's key: %v", err)
	}
	if _, err := OpenAssertion(raw); !errors.Is(err, ErrBadSignature) {
		t.Errorf("with no key configured: %v", err)
	}
	tampered := bytes.Clone(raw)
	tampered[len(tampered)-70] ^= 1
	if _, err := OpenAssertion(tampered, svc.Public().(ed25519.PublicKey)); err == nil {
		t.Error("a tampered assertion opened")
	}
	for name, change := range map[string]func(*Assertion){
		"bad ID number":   func(a *Assertion) { a.IDNumber = "110105194912310021" },
		"no name":         func(a *Assertion) { a.Name = " " },
		"no holder key":   func(a *Assertion) { a.HolderKey = nil },
		"never verified":  func(a *Assertion) { a.VerifiedAt = time.Time{} },
		"expired at once": func(a *Assertion) { a.Expires = a.VerifiedAt },
		"short id":        func(a *Assertion) { a.ID = []byte{1} },
	} {
		a := assertion()
		change(&a)
		if _, err := SignAssertion(a, svc); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// FuzzParseCode: any text is a code or ErrBadCode, and a code reads back
// as itself.
func FuzzParseCode(f *testing.F) {
	f.Add("7K3M-Q9XD-2PF")
	f.Add("oo00 llii 123")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCode(s)
		if err != nil {
			if !errors.Is(err, ErrBadCode) {
				t.Fatal(err)
			}
			return
		}
		if again, err := ParseCode(c); err != nil || again != c {
			t.Fatalf("%q read as %q, which reads as %q, %v", s, c, again, err)
		}
	})
}

// FuzzOpenAssertion: hostile bytes open as a checked assertion or fail
// with one of the package's errors, without panicking.
func FuzzOpenAssertion(f *testing.F) {
	svc := key("realname")
	raw, _ := SignAssertion(assertion(), svc)
	f.Add(raw)
	f.Add([]byte{0x84, 0x40, 0xa0, 0x40, 0x40})
	pub := svc.Public().(ed25519.PublicKey)
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := OpenAssertion(data, pub)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrBadSignature) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if a.check() != nil {
			t.Fatal("an unchecked assertion opened")
		}
	})
}
