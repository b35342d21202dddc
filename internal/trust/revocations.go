package trust

import (
	"crypto/ed25519"
	"fmt"
	"time"

	"github.com/checkpointd/checkpoint/internal/credential"
)

// Revocation revokes every credential of Subject issued at or before Before
// (timestamps have whole seconds, so a credential from the very second of
// the revocation is revoked too). A credential issued after Before (the
// person was cleared and got a new one) is not affected. Once no credential issued before Before can still
// be valid, at DropAfter, the entry can be forgotten.
type Revocation struct {
	Subject   []byte
	Before    time.Time
	DropAfter time.Time
}

// Revocations is a signed revocation list: the complete set of entries that
// are in force, at a version.
type Revocations struct {
	Version  uint64
	IssuedAt time.Time
	Expires  time.Time
	Entries  []Revocation
}

type revocationsWire struct {
	Version  uint64           `cbor:"1,keyasint"`
	IssuedAt uint64           `cbor:"2,keyasint"`
	Expires  uint64           `cbor:"3,keyasint"`
	Entries  []revocationWire `cbor:"4,keyasint"`
}

type revocationWire struct {
	_         struct{} `cbor:",toarray"`
	Subject   []byte
	Before    uint64
	DropAfter uint64
}

// SignRevocations signs a revocation list with the root key.
func SignRevocations(r *Revocations, root ed25519.PrivateKey) ([]byte, error) {
	w := revocationsWire{Version: r.Version, IssuedAt: unix(r.IssuedAt), Expires: unix(r.Expires),
		Entries: make([]revocationWire, 0, len(r.Entries))}
	for _, e := range r.Entries {
		if len(e.Subject) != credential.SubjectSize {
			return nil, fmt.Errorf("revocations: subject of %d bytes", len(e.Subject))
		}
		w.Entries = append(w.Entries, revocationWire{Subject: e.Subject, Before: unix(e.Before), DropAfter: unix(e.DropAfter)})
	}
	payload, err := encMode.Marshal(w)
	if err != nil {
		return nil, fmt.Errorf("revocations: %w", err)
	}
	return SignObject(TypeRevocations, payload, root)
}

// ParseRevocations checks a revocation list's signature against the pinned
// root key and decodes it.
func ParseRevocations(data []byte, root ed25519.PublicKey) (*Revocations, error) {
	payload, err := OpenObject(data, TypeRevocations, root)
	if err != nil {
		return nil, err
	}
	var w revocationsWire
	if err := decMode.Unmarshal(payload, &w); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	r := &Revocations{Version: w.Version, IssuedAt: fromUnix(w.IssuedAt), Expires: fromUnix(w.Expires),
		Entries: make([]Revocation, 0, len(w.Entries))}
	for _, e := range w.Entries {
		if len(e.Subject) != credential.SubjectSize {
			return nil, fmt.Errorf("%w: subject of %d bytes", ErrMalformed, len(e.Subject))
		}
		r.Entries = append(r.Entries, Revocation{Subject: e.Subject, Before: fromUnix(e.Before), DropAfter: fromUnix(e.DropAfter)})
	}
	return r, nil
}

// RevocationSet answers revocation questions from a list held in memory.
// It is what the command-line verifier uses; the daemon keeps its list in
// the store.
type RevocationSet struct {
	before  map[[credential.SubjectSize]byte]time.Time
	expires time.Time
}

// NewRevocationSet indexes a parsed list. Where a subject appears twice the
// later cut-off wins: it revokes more.
func NewRevocationSet(r *Revocations) *RevocationSet {
	s := &RevocationSet{before: make(map[[credential.SubjectSize]byte]time.Time, len(r.Entries)), expires: r.Expires}
	for _, e := range r.Entries {
		k := [credential.SubjectSize]byte(e.Subject)
		if e.Before.After(s.before[k]) {
			s.before[k] = e.Before
		}
	}
	return s
}

// Revoked reports whether a credential of subject issued at issuedAt is
// revoked.
func (s *RevocationSet) Revoked(subject []byte, issuedAt time.Time) bool {
	if len(subject) != credential.SubjectSize {
		return false
	}
	before, ok := s.before[[credential.SubjectSize]byte(subject)]
	return ok && !issuedAt.After(before)
}

// ValidUntil is the list's expiry: after it the list is stale.
func (s *RevocationSet) ValidUntil() time.Time { return s.expires }

// Len returns the number of subjects with a revocation.
func (s *RevocationSet) Len() int { return len(s.before) }
