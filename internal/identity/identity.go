// Package identity is how a holder proves to the authority who they are
// when they register a phone (docs/authority.md): a one-time registration
// code an operator issues after checking the person's ID card, typed on the
// phone, or an assertion signed by a real-name service saying that an ID
// number controls a holder key. It makes and checks both; it keeps
// nothing. The authority's server (internal/authority) imports it, and
// cmd/authority (the demo's stand-in real-name service).
package identity

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/checkpointd/checkpoint/internal/credential"
	"github.com/checkpointd/checkpoint/internal/trust"
)

// Errors.
var (
	// ErrBadCode is text that is not a registration code: a wrong length,
	// a character outside the alphabet, or a check character that does
	// not match (a typing mistake).
	ErrBadCode = errors.New("identity: not a registration code (check what was typed)")
	// ErrMalformed is an assertion that does not decode or lacks a field.
	ErrMalformed = errors.New("identity: malformed real-name assertion")
	// ErrBadSignature is an assertion not signed by any configured
	// real-name service key.
	ErrBadSignature = errors.New("identity: real-name assertion not signed by a known real-name service")
)

// Registration codes: CodeChars characters of Crockford's base32 (50 bits)
// and a check character, shown in groups of four: "7K3M-Q9XD-2PF".
const (
	CodeChars = 10
	alphabet  = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
)

// NewCode returns a new random registration code, grouped for reading
// out.
func NewCode() (string, error) {
	var b [CodeChars]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	var s strings.Builder
	for _, v := range b {
		s.WriteByte(alphabet[v&31])
	}
	code := s.String()
	code += string(alphabet[checkChar(code)])
	return code[:4] + "-" + code[4:8] + "-" + code[8:], nil
}

// ParseCode reads a typed registration code: case, spaces and hyphens do
// not matter, and the letters people confuse with digits (I, L, O) are
// read as those digits. It returns the code without its grouping, or
// ErrBadCode.
func ParseCode(s string) (string, error) {
	if len(s) > 64 {
		return "", ErrBadCode
	}
	var b strings.Builder
	for _, c := range strings.ToUpper(s) {
		switch {
		case c == ' ' || c == '-':
			continue
		case c == 'I' || c == 'L':
			c = '1'
		case c == 'O':
			c = '0'
		}
		if c > 127 || !strings.ContainsRune(alphabet, c) {
			return "", ErrBadCode
		}
		b.WriteRune(c)
	}
	code := b.String()
	if len(code) != CodeChars+1 || alphabet[checkChar(code[:CodeChars])] != code[CodeChars] {
		return "", ErrBadCode
	}
	return code, nil
}

// checkChar is the Luhn mod 32 check value of s (characters of
// alphabet): it catches any one character mistyped, and two adjacent ones
// swapped unless they are 0 and Z.
func checkChar(s string) int {
	const n = len(alphabet)
	factor, sum := 2, 0
	for i := len(s) - 1; i >= 0; i-- {
		a := factor * strings.IndexByte(alphabet, s[i])
		sum += a/n + a%n
		factor = 3 - factor
	}
	return (n - sum%n) % n
}

// CodeHash is how a registration code is kept: HMAC-SHA256 under the
// authority's code key, so that a copy of the database gives no live
// code, not even by trying all 2^50.
func CodeHash(key []byte, code string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("checkpoint registration code v1\x00"))
	m.Write([]byte(code))
	return m.Sum(nil)
}

// TypeAssertion is the COSE content type of a real-name assertion.
const TypeAssertion = "application/cp-realname+cbor"

// Assertion is a real-name service's statement: the person with this ID
// number and name, checked by Method at VerifiedAt, controls HolderKey.
// It is good until Expires and once only (ID).
type Assertion struct {
	IDNumber   string            `cbor:"1,keyasint"`
	Name       string            `cbor:"2,keyasint"`
	HolderKey  ed25519.PublicKey `cbor:"3,keyasint"`
	VerifiedAt time.Time         `cbor:"4,keyasint"`
	Expires    time.Time         `cbor:"5,keyasint"`
	ID         []byte            `cbor:"6,keyasint"`
	Method     string            `cbor:"7,keyasint"`
}

// AssertionIDSize is the size of an assertion's unique id.
const AssertionIDSize = 16

// maxName bounds names in assertions (bytes).
const maxName = 256

var (
	encMode cbor.EncMode
	decMode cbor.DecMode
)

func init() {
	var err error
	opts := cbor.CoreDetEncOptions()
	opts.Time = cbor.TimeUnix
	if encMode, err = opts.EncMode(); err != nil {
		panic(err)
	}
	decMode, err = cbor.DecOptions{
		DupMapKey: cbor.DupMapKeyEnforcedAPF, IndefLength: cbor.IndefLengthForbidden, TagsMd: cbor.TagsForbidden,
		MaxNestedLevels: 4, MaxMapPairs: 16, MaxArrayElements: 16, UTF8: cbor.UTF8RejectInvalid,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
	}.DecMode()
	if err != nil {
		panic(err)
	}
}

func (a *Assertion) check() error {
	if _, err := credential.ParseID(a.IDNumber); err != nil {
		return fmt.Errorf("%w: ID number: %v", ErrMalformed, err)
	}
	switch {
	case strings.TrimSpace(a.Name) == "" || len(a.Name) > maxName:
		return fmt.Errorf("%w: a name is required", ErrMalformed)
	case len(a.HolderKey) != ed25519.PublicKeySize:
		return fmt.Errorf("%w: holder key", ErrMalformed)
	case len(a.ID) != AssertionIDSize:
		return fmt.Errorf("%w: id of %d bytes", ErrMalformed, len(a.ID))
	case a.VerifiedAt.IsZero() || !a.Expires.After(a.VerifiedAt):
		return fmt.Errorf("%w: it must expire after it was verified", ErrMalformed)
	case len(a.Method) > 32:
		return fmt.Errorf("%w: method", ErrMalformed)
	}
	return nil
}

// SignAssertion signs a as a COSE_Sign1 of TypeAssertion with the
// real-name service's key; a zero ID is filled with a random one.
func SignAssertion(a Assertion, key ed25519.PrivateKey) ([]byte, error) {
	if a.ID == nil {
		a.ID = make([]byte, AssertionIDSize)
		if _, err := rand.Read(a.ID); err != nil {
			return nil, err
		}
	}
	a.VerifiedAt, a.Expires = a.VerifiedAt.Truncate(time.Second), a.Expires.Truncate(time.Second)
	if err := a.check(); err != nil {
		return nil, err
	}
	payload, err := encMode.Marshal(a)
	if err != nil {
		return nil, err
	}
	return trust.SignObject(TypeAssertion, payload, key)
}

// OpenAssertion checks that data is an assertion signed by one of keys
// and returns it. Its times are the caller's to check.
func OpenAssertion(data []byte, keys ...ed25519.PublicKey) (*Assertion, error) {
	payload, err := trust.OpenObject(data, TypeAssertion, keys...)
	switch {
	case errors.Is(err, trust.ErrBadSignature):
		return nil, ErrBadSignature
	case err != nil:
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	var a Assertion
	if err := decMode.Unmarshal(payload, &a); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if err := a.check(); err != nil {
		return nil, err
	}
	a.IDNumber = credential.NormalizeID(a.IDNumber)
	return &a, nil
}
