// Package credential implements the wire format of checkpoint health codes,
// version 2, as docs/credential.md specifies it: the credential an authority
// signs, the presentation a phone signs every few seconds, the static paper
// code, and the "CP2:" QR text that carries them.
//
// It encodes and decodes and checks signatures; it decides nothing. The
// verify package turns a parsed code into a decision; cmd/authority issues
// credentials and cmd/holder presents them with this package.
//
// It lives under internal/ because the format is the project's contract with
// phone apps and authorities, written down in docs/credential.md: other
// implementations follow the document, not this Go API.
package credential

import (
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/fxamacker/cbor/v2"
	cose "github.com/veraison/go-cose"
)

// Sizes of the fixed-length fields, in bytes.
const (
	KeyIDSize   = 4  // issuer key id: SHA-256 of the raw public key, truncated
	IDSize      = 8  // credential id (CWT cti), random
	SubjectSize = 10 // subject pseudonym, keyed hash of the ID number
	IDHashSize  = 2  // salted slow hash of the ID number, for ID-card readers
)

// Limits on the text fields, so that a code stays within its QR size budget.
const (
	MaxIssuerLen      = 8 // bytes
	MaxRegionLen      = 12
	MaxMaskedRunes    = 3
	ClaimHealthCode   = -65537 // private-use CWT claim key of the health-code array
	claimConfirmation = 8
)

// Status is the colour of a health code.
type Status uint8

// The colours, with the numbers they have on the wire.
const (
	Green  Status = 1
	Yellow Status = 2
	Red    Status = 3
)

func (s Status) String() string {
	switch s {
	case Green:
		return "green"
	case Yellow:
		return "yellow"
	case Red:
		return "red"
	}
	return fmt.Sprintf("status(%d)", uint8(s))
}

// ParseStatus reads "green", "yellow" or "red".
func ParseStatus(s string) (Status, error) {
	switch s {
	case "green":
		return Green, nil
	case "yellow":
		return Yellow, nil
	case "red":
		return Red, nil
	}
	return 0, fmt.Errorf("unknown colour %q (want green, yellow or red)", s)
}

// Credential is what an issuer attests about one holder. A credential with a
// HolderKey lives on a phone and is only accepted inside a fresh presentation
// signed by that key; one without is a static paper code.
type Credential struct {
	KeyID      []byte // issuer key id, from the protected header
	Issuer     string // CWT iss: short code of the issuing authority
	ID         []byte // CWT cti: credential id
	Subject    []byte // subject pseudonym
	Status     Status
	Region     string // issuing region, a GB/T 2260 code prefix such as "44"; never taken from the ID number
	MaskedName string // e.g. 张*三, for the guard
	IDHash     []byte // see IDHash
	IssuedAt   time.Time
	Expires    time.Time
	HolderKey  ed25519.PublicKey // CWT cnf; nil for a static code
}

// Static reports whether c is a paper code: one without a holder key, which
// no phone signs and which therefore proves nothing about who shows it.
func (c *Credential) Static() bool { return c.HolderKey == nil }

// KeyIDOf returns the key id of an issuer or root public key.
func KeyIDOf(pub ed25519.PublicKey) []byte {
	sum := sha256.Sum256(pub)
	return sum[:KeyIDSize]
}

// Wire structures. Field order and keys are the specification's; the
// encoder sorts map keys the deterministic way (RFC 8949 section 4.2.1).

type claimsWire struct {
	Issuer     string      `cbor:"1,keyasint"`
	Expires    uint64      `cbor:"4,keyasint"`
	IssuedAt   uint64      `cbor:"6,keyasint"`
	ID         []byte      `cbor:"7,keyasint"`
	Cnf        *cnfWire    `cbor:"8,keyasint,omitempty"`
	HealthCode *healthWire `cbor:"-65537,keyasint"`
}

type cnfWire struct {
	Key *coseKeyWire `cbor:"1,keyasint"`
}

type coseKeyWire struct {
	Kty int64  `cbor:"1,keyasint"`
	Crv int64  `cbor:"-1,keyasint"`
	X   []byte `cbor:"-2,keyasint"`
}

// COSE key type OKP and curve Ed25519 (RFC 9053).
const (
	ktyOKP     = 1
	crvEd25519 = 6
)

type healthWire struct {
	_          struct{} `cbor:",toarray"`
	Subject    []byte
	Status     uint8
	Region     uint64
	MaskedName string
	IDHash     []byte
}

type protectedWire struct {
	Alg    int64           `cbor:"1,keyasint"`
	KeyID  []byte          `cbor:"4,keyasint,omitempty"`
	Claims *presClaimsWire `cbor:"15,keyasint,omitempty"`
}

type presClaimsWire struct {
	IssuedAt uint64 `cbor:"6,keyasint"`
}

var (
	encMode cbor.EncMode
	decMode cbor.DecMode
)

func init() {
	var err error
	encMode, err = cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		panic(err)
	}
	// Codes come from strangers: refuse anything a well-behaved encoder
	// would not produce, and bound what the decoder may build.
	decMode, err = cbor.DecOptions{
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
		IndefLength:      cbor.IndefLengthForbidden,
		TagsMd:           cbor.TagsForbidden,
		MaxNestedLevels:  8,
		MaxArrayElements: 64,
		MaxMapPairs:      64,
		UTF8:             cbor.UTF8RejectInvalid,
	}.DecMode()
	if err != nil {
		panic(err)
	}
}

// Errors. Parse failures wrap ErrMalformed or ErrUnsupportedVersion; the
// signature checks return ErrBadSignature.
var (
	ErrMalformed          = errors.New("malformed code")
	ErrUnsupportedVersion = errors.New("unsupported code version")
	ErrBadSignature       = errors.New("signature does not verify")
	ErrNoHolderKey        = errors.New("credential has no holder key")
)

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// check validates the fields an issuer may sign and a verifier may accept.
func (c *Credential) check() error {
	switch {
	case len(c.Issuer) == 0 || len(c.Issuer) > MaxIssuerLen:
		return malformed("issuer must be 1 to %d bytes", MaxIssuerLen)
	case len(c.ID) != IDSize:
		return malformed("credential id must be %d bytes", IDSize)
	case len(c.Subject) != SubjectSize:
		return malformed("subject must be %d bytes", SubjectSize)
	case c.Status < Green || c.Status > Red:
		return malformed("unknown status %d", c.Status)
	case !validRegion(c.Region):
		return malformed("region must be a code of 1 to %d digits", MaxRegionLen)
	case utf8.RuneCountInString(c.MaskedName) > MaxMaskedRunes:
		return malformed("masked name longer than %d characters", MaxMaskedRunes)
	case len(c.IDHash) != IDHashSize:
		return malformed("ID hash must be %d bytes", IDHashSize)
	case c.HolderKey != nil && len(c.HolderKey) != ed25519.PublicKeySize:
		return malformed("holder key must be %d bytes", ed25519.PublicKeySize)
	case c.IssuedAt.Unix() <= 0 || !c.Expires.After(c.IssuedAt):
		return malformed("validity must start after 1970 and end after it starts")
	}
	return nil
}

// validRegion accepts what round-trips through a CBOR unsigned integer:
// 1 to MaxRegionLen digits without a leading zero.
func validRegion(r string) bool {
	if len(r) == 0 || len(r) > MaxRegionLen || (r[0] == '0' && len(r) > 1) {
		return false
	}
	for i := 0; i < len(r); i++ {
		if r[i] < '0' || r[i] > '9' {
			return false
		}
	}
	return true
}

func (c *Credential) toWire() claimsWire {
	region, _ := strconv.ParseUint(c.Region, 10, 64) // checked by check
	w := claimsWire{
		Issuer:   c.Issuer,
		Expires:  uint64(c.Expires.Unix()),
		IssuedAt: uint64(c.IssuedAt.Unix()),
		ID:       c.ID,
		HealthCode: &healthWire{
			Subject:    c.Subject,
			Status:     uint8(c.Status),
			Region:     region,
			MaskedName: c.MaskedName,
			IDHash:     c.IDHash,
		},
	}
	if c.HolderKey != nil {
		w.Cnf = &cnfWire{Key: &coseKeyWire{Kty: ktyOKP, Crv: crvEd25519, X: c.HolderKey}}
	}
	return w
}

// maxTime bounds the times a code may carry (the year 9999), so that
// converting them can never overflow.
const maxTime = 253402300799

func fromWire(w *claimsWire) (*Credential, error) {
	if w.HealthCode == nil {
		return nil, malformed("no health-code claim")
	}
	if w.IssuedAt > maxTime || w.Expires > maxTime {
		return nil, malformed("time out of range")
	}
	c := &Credential{
		Issuer:     w.Issuer,
		ID:         w.ID,
		Subject:    w.HealthCode.Subject,
		Status:     Status(w.HealthCode.Status),
		Region:     strconv.FormatUint(w.HealthCode.Region, 10),
		MaskedName: w.HealthCode.MaskedName,
		IDHash:     w.HealthCode.IDHash,
		IssuedAt:   time.Unix(int64(w.IssuedAt), 0).UTC(),
		Expires:    time.Unix(int64(w.Expires), 0).UTC(),
	}
	if w.Cnf != nil {
		k := w.Cnf.Key
		if k == nil || k.Kty != ktyOKP || k.Crv != crvEd25519 || len(k.X) != ed25519.PublicKeySize {
			return nil, malformed("holder key is not an Ed25519 COSE_Key")
		}
		c.HolderKey = ed25519.PublicKey(k.X)
	}
	if err := c.check(); err != nil {
		return nil, err
	}
	return c, nil
}

// Issue signs c with the issuer's key and returns the credential: an
// untagged COSE_Sign1. It sets c.KeyID from the key.
func Issue(c *Credential, issuer ed25519.PrivateKey) ([]byte, error) {
	c.KeyID = KeyIDOf(issuer.Public().(ed25519.PublicKey))
	if err := c.check(); err != nil {
		return nil, fmt.Errorf("issue: %w", err)
	}
	payload, err := encMode.Marshal(c.toWire())
	if err != nil {
		return nil, fmt.Errorf("issue: encode claims: %w", err)
	}
	prot, err := encMode.Marshal(protectedWire{Alg: int64(cose.AlgorithmEdDSA), KeyID: c.KeyID})
	if err != nil {
		return nil, fmt.Errorf("issue: encode header: %w", err)
	}
	return sign1(prot, payload, issuer)
}

// Present makes a presentation: the holder's COSE_Sign1 over the credential,
// with the time it was made in its protected header.
func Present(credential []byte, holder ed25519.PrivateKey, at time.Time) ([]byte, error) {
	cred, err := parseCredential(credential)
	if err != nil {
		return nil, fmt.Errorf("present: %w", err)
	}
	if cred.Static() {
		return nil, fmt.Errorf("present: %w: a static code is shown as it is", ErrNoHolderKey)
	}
	if !cred.HolderKey.Equal(holder.Public()) {
		return nil, errors.New("present: the key is not the credential's holder key")
	}
	if at.Unix() <= 0 || at.Unix() > maxTime {
		return nil, fmt.Errorf("present: time %v out of range", at)
	}
	prot, err := encMode.Marshal(protectedWire{
		Alg:    int64(cose.AlgorithmEdDSA),
		Claims: &presClaimsWire{IssuedAt: uint64(at.Unix())},
	})
	if err != nil {
		return nil, fmt.Errorf("present: encode header: %w", err)
	}
	return sign1(prot, credential, holder)
}

func sign1(protected, payload []byte, key ed25519.PrivateKey) ([]byte, error) {
	signer, err := cose.NewSigner(cose.AlgorithmEdDSA, key)
	if err != nil {
		return nil, err
	}
	// go-cose keeps the protected header as the byte string that wraps it.
	wrapped, err := encMode.Marshal(protected)
	if err != nil {
		return nil, err
	}
	msg := cose.UntaggedSign1Message{
		Headers: cose.Headers{RawProtected: wrapped, RawUnprotected: []byte{0xa0}},
		Payload: payload,
	}
	// go-cose checks the algorithm against the parsed header map.
	if err := msg.Headers.UnmarshalFromRaw(); err != nil {
		return nil, err
	}
	if err := msg.Sign(nil, nil, signer); err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	return msg.MarshalCBOR()
}
