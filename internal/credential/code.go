package credential

import (
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"strings"
	"time"

	cose "github.com/veraison/go-cose"

	"github.com/checkpointd/checkpoint/internal/base45"
)

// Prefix starts the QR text of every version-2 code.
const Prefix = "CP2:"

// MaxTextLen caps the QR text accepted for parsing. A version-2 code is
// about 400 characters; the cap leaves room for larger future versions and
// keeps hostile input from costing more than a few kilobytes.
const MaxTextLen = 2048

// Code is a parsed QR code: a credential, shown either inside a presentation
// signed on the holder's phone or on its own (a static paper code, or a
// phone credential copied without its holder's signature).
//
// Parsing checks structure only. VerifyIssuer and VerifyHolder check the
// signatures; the verify package decides what the code is worth.
type Code struct {
	Credential Credential

	// Presented is true when the credential came inside a presentation;
	// PresentedAt is then the time the phone signed it.
	Presented   bool
	PresentedAt time.Time

	cred *cose.UntaggedSign1Message
	pres *cose.UntaggedSign1Message
}

// EncodeText returns the QR text for a credential or presentation.
func EncodeText(coseBytes []byte) string {
	return Prefix + base45.Encode(coseBytes)
}

// ParseText parses QR text. Errors wrap ErrMalformed or
// ErrUnsupportedVersion.
func ParseText(text string) (*Code, error) {
	if len(text) > MaxTextLen {
		return nil, malformed("text of %d bytes exceeds %d", len(text), MaxTextLen)
	}
	// Handheld scanners end each code with a line break.
	text = strings.TrimRight(text, "\r\n")
	if !strings.HasPrefix(text, Prefix) {
		if v, ok := versionPrefix(text); ok {
			return nil, fmt.Errorf("%w: %s", ErrUnsupportedVersion, v)
		}
		return nil, malformed("no %s prefix", Prefix)
	}
	raw, err := base45.Decode(text[len(Prefix):])
	if err != nil {
		return nil, malformed("%v", err)
	}
	return Parse(raw)
}

// versionPrefix recognises the prefix of another version of this format,
// "CP" followed by digits and a colon.
func versionPrefix(text string) (string, bool) {
	if !strings.HasPrefix(text, "CP") {
		return "", false
	}
	i := 2
	for i < len(text) && i < 8 && text[i] >= '0' && text[i] <= '9' {
		i++
	}
	if i == 2 || i >= len(text) || text[i] != ':' {
		return "", false
	}
	return text[:i+1], true
}

// Parse parses the binary form of a code: a presentation or a bare
// credential.
func Parse(raw []byte) (*Code, error) {
	outer, err := unmarshalSign1(raw)
	if err != nil {
		return nil, err
	}
	// A credential's payload is its claims, a CBOR map; a presentation's
	// payload is a credential, a CBOR array.
	if len(outer.Payload) > 0 && outer.Payload[0]>>5 == 4 {
		return parsePresentation(outer)
	}
	c, err := credentialFrom(outer)
	if err != nil {
		return nil, err
	}
	return &Code{Credential: *c, cred: outer}, nil
}

func parsePresentation(outer *cose.UntaggedSign1Message) (*Code, error) {
	h, err := protectedOf(outer)
	if err != nil {
		return nil, malformed("presentation header: %v", err)
	}
	if h.Alg != int64(cose.AlgorithmEdDSA) {
		return nil, malformed("presentation algorithm %d is not EdDSA", h.Alg)
	}
	if h.Claims == nil || h.Claims.IssuedAt == 0 || h.Claims.IssuedAt > maxTime {
		return nil, malformed("presentation has no valid time")
	}
	inner, err := unmarshalSign1(outer.Payload)
	if err != nil {
		return nil, err
	}
	c, err := credentialFrom(inner)
	if err != nil {
		return nil, err
	}
	return &Code{
		Credential:  *c,
		Presented:   true,
		PresentedAt: time.Unix(int64(h.Claims.IssuedAt), 0).UTC(),
		cred:        inner,
		pres:        outer,
	}, nil
}

func unmarshalSign1(raw []byte) (*cose.UntaggedSign1Message, error) {
	// Bound the nesting and sizes before go-cose sees the bytes.
	if err := decMode.Wellformed(raw); err != nil {
		return nil, malformed("CBOR: %v", err)
	}
	var m cose.UntaggedSign1Message
	if err := m.UnmarshalCBOR(raw); err != nil {
		return nil, malformed("COSE_Sign1: %v", err)
	}
	if len(m.Signature) != ed25519.SignatureSize {
		return nil, malformed("signature of %d bytes", len(m.Signature))
	}
	return &m, nil
}

func parseCredential(raw []byte) (*Credential, error) {
	m, err := unmarshalSign1(raw)
	if err != nil {
		return nil, err
	}
	return credentialFrom(m)
}

// protectedOf decodes the protected header, which go-cose keeps as the
// byte string wrapping the encoded map.
func protectedOf(m *cose.UntaggedSign1Message) (*protectedWire, error) {
	var b []byte
	if err := decMode.Unmarshal(m.Headers.RawProtected, &b); err != nil {
		return nil, err
	}
	var h protectedWire
	if err := decMode.Unmarshal(b, &h); err != nil {
		return nil, err
	}
	return &h, nil
}

func credentialFrom(m *cose.UntaggedSign1Message) (*Credential, error) {
	h, err := protectedOf(m)
	if err != nil {
		return nil, malformed("credential header: %v", err)
	}
	if h.Alg != int64(cose.AlgorithmEdDSA) {
		return nil, malformed("credential algorithm %d is not EdDSA", h.Alg)
	}
	if len(h.KeyID) != KeyIDSize {
		return nil, malformed("credential key id of %d bytes", len(h.KeyID))
	}
	var w claimsWire
	if err := decMode.Unmarshal(m.Payload, &w); err != nil {
		return nil, malformed("claims: %v", err)
	}
	c, err := fromWire(&w)
	if err != nil {
		return nil, err
	}
	c.KeyID = h.KeyID
	return c, nil
}

// VerifyIssuer checks the issuer's signature on the credential with pub.
func (c *Code) VerifyIssuer(pub ed25519.PublicKey) error {
	return verify1(c.cred, pub)
}

// VerifyHolder checks the holder's signature on the presentation with the
// credential's holder key. It fails with ErrNoHolderKey for a static
// credential and with ErrBadSignature when the code is not a presentation.
func (c *Code) VerifyHolder() error {
	if c.Credential.Static() {
		return ErrNoHolderKey
	}
	if !c.Presented {
		return fmt.Errorf("%w: the credential is not signed by its holder", ErrBadSignature)
	}
	return verify1(c.pres, c.Credential.HolderKey)
}

func verify1(m *cose.UntaggedSign1Message, pub ed25519.PublicKey) error {
	v, err := cose.NewVerifier(cose.AlgorithmEdDSA, pub)
	if err != nil {
		return err
	}
	if err := m.Verify(nil, v); err != nil {
		return fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	return nil
}

// Fingerprint identifies one presentation (or one bare credential): the
// SHA-256 of its outermost signature. Ed25519 signatures in Go are not
// malleable, so only the holder can make another fingerprint for the same
// content, and only by signing a new presentation.
func (c *Code) Fingerprint() [32]byte {
	if c.Presented {
		return sha256.Sum256(c.pres.Signature)
	}
	return sha256.Sum256(c.cred.Signature)
}

// CredentialBytes returns the credential as the issuer signed it.
func (c *Code) CredentialBytes() ([]byte, error) {
	return c.cred.MarshalCBOR()
}
