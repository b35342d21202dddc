// Package credentialtest builds codes for tests: fixed keys made from
// seeds, a trust list naming them, and helpers that issue and present
// credentials with any field changed. Tests (of verify, the passage, the
// daemon, the commands, the test vectors) and the benchmarks import it;
// nothing else should.
package credentialtest

import (
	"crypto/ed25519"
	"crypto/sha256"
	"time"

	"github.com/checkpointd/checkpoint/internal/credential"
	"github.com/checkpointd/checkpoint/internal/trust"
)

// Key returns the Ed25519 key made from the SHA-256 of name: the same name
// always gives the same key.
func Key(name string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte(name))
	return ed25519.NewKeyFromSeed(seed[:])
}

// Fixture is an authority, one holder, and the time of the test.
type Fixture struct {
	Now          time.Time
	Root         ed25519.PrivateKey
	Issuer       ed25519.PrivateKey
	Holder       ed25519.PrivateKey
	PseudonymKey []byte
	Trust        *trust.List
	TrustBytes   []byte

	subject, idHash []byte // the holder's, computed once: the hash is slow
}

// IDNumber and Name are the fixture's holder. The number is GB 11643's own
// example, of a person born in Beijing; the credential is issued in
// Guangdong (region 44).
const (
	IDNumber = "11010519491231002X"
	Name     = "张三丰"
)

// New returns the standard fixture: an issuer "GD" allowed for region 44
// (Guangdong) during 2026, on a trust list that expires at the end of 2026,
// and the time 2026-11-25 12:00 UTC.
func New() *Fixture {
	f := &Fixture{
		Now:          time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC),
		Root:         Key("root"),
		Issuer:       Key("issuer"),
		Holder:       Key("holder"),
		PseudonymKey: []byte("0123456789abcdef0123456789abcdef"),
	}
	f.Trust = &trust.List{
		Version:  1,
		IssuedAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		Expires:  time.Date(2026, 12, 31, 0, 0, 0, 0, time.UTC),
		Issuers: []trust.Issuer{{
			PublicKey: f.Issuer.Public().(ed25519.PublicKey),
			Issuer:    "GD",
			Name:      "Guangdong Health Code Authority",
			NotBefore: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
			NotAfter:  time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC),
			Regions:   []string{"44"},
		}},
	}
	f.subject = credential.Pseudonym(f.PseudonymKey, IDNumber)
	f.idHash = credential.IDHash(IDNumber, f.subject)
	var err error
	f.TrustBytes, err = trust.Sign(f.Trust, f.Root)
	if err != nil {
		panic(err)
	}
	f.Trust, err = trust.Parse(f.TrustBytes, f.Root.Public().(ed25519.PublicKey))
	if err != nil {
		panic(err)
	}
	return f
}

// Credential returns the fixture holder's green credential, issued an hour
// before Now and valid for a day, after edit has changed it.
func (f *Fixture) Credential(edit func(*credential.Credential)) *credential.Credential {
	c := &credential.Credential{
		Issuer:     "GD",
		ID:         []byte{1, 2, 3, 4, 5, 6, 7, 8},
		Subject:    f.subject,
		Status:     credential.Green,
		Region:     "44",
		MaskedName: credential.MaskName(Name),
		IDHash:     f.idHash,
		IssuedAt:   f.Now.Add(-time.Hour),
		Expires:    f.Now.Add(23 * time.Hour),
		HolderKey:  f.Holder.Public().(ed25519.PublicKey),
	}
	if edit != nil {
		edit(c)
	}
	return c
}

// Issue signs c with the fixture's issuer key.
func (f *Fixture) Issue(c *credential.Credential) []byte {
	return f.IssueWith(c, f.Issuer)
}

// IssueWith signs c with key.
func (f *Fixture) IssueWith(c *credential.Credential, key ed25519.PrivateKey) []byte {
	b, err := credential.Issue(c, key)
	if err != nil {
		panic(err)
	}
	return b
}

// Present returns the QR text of the holder's presentation of cred, made at
// at.
func (f *Fixture) Present(cred []byte, at time.Time) string {
	p, err := credential.Present(cred, f.Holder, at)
	if err != nil {
		panic(err)
	}
	return credential.EncodeText(p)
}

// Text returns the QR text of the standard green credential presented five
// seconds before Now.
func (f *Fixture) Text() string {
	return f.Present(f.Issue(f.Credential(nil)), f.Now.Add(-5*time.Second))
}
