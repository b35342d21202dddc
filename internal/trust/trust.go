// Package trust implements the two signed lists a checkpoint gets from the
// authority, as docs/credential.md specifies them: the trust list (which
// issuer keys may sign credentials, when, and for which regions) and the
// revocation list (which subjects' credentials are revoked, and up to when
// they were issued). Both are COSE_Sign1 objects signed by the root key that
// the checkpoint's configuration pins.
//
// cmd/authority signs the lists; verify reads a parsed trust list; the
// command-line tools and, later, the sync and store packages parse them.
package trust

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/fxamacker/cbor/v2"
	cose "github.com/veraison/go-cose"

	"github.com/checkpointd/checkpoint/internal/credential"
)

// Content types of the lists (COSE header 16, "typ"). The type is signed,
// so a revocation list can never be taken for a trust list or the reverse.
const (
	TypeTrustList   = "application/cp-trust+cbor"
	TypeRevocations = "application/cp-revocations+cbor"
)

// Errors of parsing and checking a list.
var (
	ErrMalformed    = errors.New("malformed list")
	ErrBadSignature = errors.New("signature does not verify with a trusted key")
	ErrWrongType    = errors.New("list is of another type")
)

// Issuer is one entry of the trust list: an issuer key and what it may sign.
type Issuer struct {
	KeyID     []byte
	PublicKey ed25519.PublicKey
	Issuer    string // the code credentials carry as iss
	Name      string // for people
	NotBefore time.Time
	NotAfter  time.Time
	Regions   []string // region code prefixes it may issue for; empty means any
}

// ValidAt reports whether the key may have signed a credential issued at t.
func (i *Issuer) ValidAt(t time.Time) bool {
	return !t.Before(i.NotBefore) && !t.After(i.NotAfter)
}

// AllowsRegion reports whether the key may issue for region, an
// administrative code: "4403" allows "440305".
func (i *Issuer) AllowsRegion(region string) bool {
	if len(i.Regions) == 0 {
		return true
	}
	for _, p := range i.Regions {
		if strings.HasPrefix(region, p) {
			return true
		}
	}
	return false
}

// List is a trust list.
type List struct {
	Version  uint64
	IssuedAt time.Time
	Expires  time.Time
	Issuers  []Issuer
	// ListKeys are the authority's online keys, to which the root
	// delegates signing revocation lists and sync responses.
	ListKeys []ListKey
	// EventKey is the authority's X25519 public key that checkpoints seal
	// what only the authority may read to (the ID number of a person who
	// passed without a code); nil if the list names none.
	EventKey []byte
}

// EventKeySize is the size of an X25519 public key.
const EventKeySize = 32

// ListKey is an online key of the authority and when it may be used.
type ListKey struct {
	KeyID     []byte
	PublicKey ed25519.PublicKey
	NotBefore time.Time
	NotAfter  time.Time
}

// ListKeysAt returns the list keys valid at t.
func (l *List) ListKeysAt(t time.Time) []ed25519.PublicKey {
	var out []ed25519.PublicKey
	for _, k := range l.ListKeys {
		if !t.Before(k.NotBefore) && !t.After(k.NotAfter) {
			out = append(out, k.PublicKey)
		}
	}
	return out
}

// Lookup returns the entries whose key id is kid. Key ids are short, so two
// keys may share one; the caller tries each.
func (l *List) Lookup(kid []byte) []*Issuer {
	var out []*Issuer
	for i := range l.Issuers {
		if bytes.Equal(l.Issuers[i].KeyID, kid) {
			out = append(out, &l.Issuers[i])
		}
	}
	return out
}

type listWire struct {
	Version  uint64        `cbor:"1,keyasint"`
	IssuedAt uint64        `cbor:"2,keyasint"`
	Expires  uint64        `cbor:"3,keyasint"`
	Issuers  []issuerWire  `cbor:"4,keyasint"`
	ListKeys []listKeyWire `cbor:"5,keyasint,omitempty"`
	EventKey []byte        `cbor:"6,keyasint,omitempty"`
}

type listKeyWire struct {
	KeyID     []byte `cbor:"1,keyasint"`
	PublicKey []byte `cbor:"2,keyasint"`
	NotBefore uint64 `cbor:"3,keyasint"`
	NotAfter  uint64 `cbor:"4,keyasint"`
}

type issuerWire struct {
	KeyID     []byte   `cbor:"1,keyasint"`
	PublicKey []byte   `cbor:"2,keyasint"`
	Issuer    string   `cbor:"3,keyasint"`
	Name      string   `cbor:"4,keyasint"`
	NotBefore uint64   `cbor:"5,keyasint"`
	NotAfter  uint64   `cbor:"6,keyasint"`
	Regions   []string `cbor:"7,keyasint"`
}

// Sign signs the list with the root key.
func Sign(l *List, root ed25519.PrivateKey) ([]byte, error) {
	w := listWire{Version: l.Version, IssuedAt: unix(l.IssuedAt), Expires: unix(l.Expires), EventKey: l.EventKey}
	if l.EventKey != nil && len(l.EventKey) != EventKeySize {
		return nil, fmt.Errorf("trust list: event key of %d bytes", len(l.EventKey))
	}
	for _, i := range l.Issuers {
		if len(i.PublicKey) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("trust list: issuer %q: bad public key", i.Issuer)
		}
		regions := i.Regions
		if regions == nil {
			regions = []string{}
		}
		w.Issuers = append(w.Issuers, issuerWire{
			KeyID:     credential.KeyIDOf(i.PublicKey),
			PublicKey: i.PublicKey,
			Issuer:    i.Issuer,
			Name:      i.Name,
			NotBefore: unix(i.NotBefore),
			NotAfter:  unix(i.NotAfter),
			Regions:   regions,
		})
	}
	for _, k := range l.ListKeys {
		if len(k.PublicKey) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("trust list: bad list key")
		}
		w.ListKeys = append(w.ListKeys, listKeyWire{KeyID: credential.KeyIDOf(k.PublicKey), PublicKey: k.PublicKey,
			NotBefore: unix(k.NotBefore), NotAfter: unix(k.NotAfter)})
	}
	payload, err := encMode.Marshal(w)
	if err != nil {
		return nil, fmt.Errorf("trust list: %w", err)
	}
	return SignObject(TypeTrustList, payload, root)
}

// Parse checks the list's signature against the pinned root key and decodes
// it. It does not judge expiry: a stale list still names the keys, and the
// verifier reports the staleness.
func Parse(data []byte, root ed25519.PublicKey) (*List, error) {
	payload, err := OpenObject(data, TypeTrustList, root)
	if err != nil {
		return nil, err
	}
	var w listWire
	if err := decMode.Unmarshal(payload, &w); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	l := &List{Version: w.Version, IssuedAt: fromUnix(w.IssuedAt), Expires: fromUnix(w.Expires), EventKey: w.EventKey}
	if w.EventKey != nil && len(w.EventKey) != EventKeySize {
		return nil, fmt.Errorf("%w: event key of %d bytes", ErrMalformed, len(w.EventKey))
	}
	for _, i := range w.Issuers {
		if len(i.PublicKey) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("%w: issuer %q has a bad public key", ErrMalformed, i.Issuer)
		}
		pub := ed25519.PublicKey(i.PublicKey)
		if !bytes.Equal(i.KeyID, credential.KeyIDOf(pub)) {
			return nil, fmt.Errorf("%w: issuer %q key id does not match its key", ErrMalformed, i.Issuer)
		}
		l.Issuers = append(l.Issuers, Issuer{
			KeyID: i.KeyID, PublicKey: pub, Issuer: i.Issuer, Name: i.Name,
			NotBefore: fromUnix(i.NotBefore), NotAfter: fromUnix(i.NotAfter), Regions: i.Regions,
		})
	}
	for _, k := range w.ListKeys {
		if len(k.PublicKey) != ed25519.PublicKeySize || !bytes.Equal(k.KeyID, credential.KeyIDOf(k.PublicKey)) {
			return nil, fmt.Errorf("%w: bad list key", ErrMalformed)
		}
		l.ListKeys = append(l.ListKeys, ListKey{KeyID: k.KeyID, PublicKey: k.PublicKey,
			NotBefore: fromUnix(k.NotBefore), NotAfter: fromUnix(k.NotAfter)})
	}
	return l, nil
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
	decMode, err = cbor.DecOptions{
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
		IndefLength:      cbor.IndefLengthForbidden,
		TagsMd:           cbor.TagsForbidden,
		MaxNestedLevels:  8,
		MaxArrayElements: 1 << 26,
		MaxMapPairs:      64,
		UTF8:             cbor.UTF8RejectInvalid,
	}.DecMode()
	if err != nil {
		panic(err)
	}
}

// PeekVersion reads a trust list's version without checking its
// signature: for the authority, which serves its own list.
func PeekVersion(data []byte) (uint64, error) {
	var msg cose.UntaggedSign1Message
	if err := msg.UnmarshalCBOR(data); err != nil {
		return 0, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	var w listWire
	if err := decMode.Unmarshal(msg.Payload, &w); err != nil {
		return 0, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return w.Version, nil
}

// SignObject signs payload with key as a COSE_Sign1 whose protected header
// names the content type typ and the key. Lists, manifests and the
// authority's sync responses are such objects.
func SignObject(typ string, payload []byte, key ed25519.PrivateKey) ([]byte, error) {
	signer, err := cose.NewSigner(cose.AlgorithmEdDSA, key)
	if err != nil {
		return nil, err
	}
	msg := cose.UntaggedSign1Message{
		Headers: cose.Headers{Protected: cose.ProtectedHeader{
			cose.HeaderLabelAlgorithm: cose.AlgorithmEdDSA,
			cose.HeaderLabelKeyID:     credential.KeyIDOf(key.Public().(ed25519.PublicKey)),
			cose.HeaderLabelType:      typ,
		}},
		Payload: payload,
	}
	if err := msg.Sign(nil, nil, signer); err != nil {
		return nil, fmt.Errorf("sign %s: %w", typ, err)
	}
	return msg.MarshalCBOR()
}

// OpenObject checks that data is an object of content type typ signed by
// one of keys, and returns its payload.
func OpenObject(data []byte, typ string, keys ...ed25519.PublicKey) ([]byte, error) {
	if err := decMode.Wellformed(data); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	var msg cose.UntaggedSign1Message
	if err := msg.UnmarshalCBOR(data); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if got, _ := msg.Headers.Protected[cose.HeaderLabelType].(string); got != typ {
		return nil, fmt.Errorf("%w: %q, want %q", ErrWrongType, got, typ)
	}
	kid, _ := msg.Headers.Protected[cose.HeaderLabelKeyID].([]byte)
	for _, k := range keys {
		if kid != nil && !bytes.Equal(kid, credential.KeyIDOf(k)) {
			continue
		}
		v, err := cose.NewVerifier(cose.AlgorithmEdDSA, k)
		if err != nil {
			return nil, err
		}
		if msg.Verify(nil, v) == nil {
			return msg.Payload, nil
		}
	}
	return nil, ErrBadSignature
}

func unix(t time.Time) uint64 {
	if t.Unix() < 0 {
		return 0
	}
	return uint64(t.Unix())
}

// maxTime is the end of the year 9999; later times are clamped to it.
const maxTime = 253402300799

func fromUnix(s uint64) time.Time {
	if s > maxTime {
		s = maxTime
	}
	return time.Unix(int64(s), 0).UTC()
}
