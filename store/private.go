package store

import (
	"crypto/rand"
	"errors"
	"fmt"

	"golang.org/x/crypto/chacha20poly1305"
)

// The fields a supervisor needs to answer "was 张* refused at 09:05?" (the
// masked name a code or a card showed, and a card's last characters) are
// kept encrypted at rest: XChaCha20-Poly1305 under the box's key
// (Options.Key), the event's sequence number as additional data so that a
// sealed blob cannot be moved to another event. Without a key they are not
// kept at all.

// private is what an event's Private field seals.
type private struct {
	MaskedName string `cbor:"1,keyasint,omitempty"`
	IDMasked   string `cbor:"2,keyasint,omitempty"`
}

// ErrPrivate is a sealed field that does not open with the box's key.
var ErrPrivate = errors.New("store: the encrypted fields of an event do not open with this key")

// sealPrivate seals e's private fields into e.Private for its sequence
// number. The fields themselves are never encoded (cbor:"-"), so the
// caller's copy keeps them in the clear and the disk never sees them.
func sealPrivate(e *Event, key *[32]byte) error {
	p := private{MaskedName: e.MaskedName}
	if e.ID != nil {
		p.IDMasked = e.ID.Masked
	}
	if key == nil || (p == private{}) {
		return nil
	}
	plain, err := encMode.Marshal(p)
	if err != nil {
		return err
	}
	aead, err := chacha20poly1305.NewX(key[:])
	if err != nil {
		return err
	}
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plain)+aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return err
	}
	e.Private = aead.Seal(nonce, nonce, plain, u64(e.Seq))
	return nil
}

// openPrivate fills e's private fields from e.Private with key.
func openPrivate(e *Event, key *[32]byte) error {
	if e.LegacyName != "" {
		e.MaskedName = e.LegacyName
	}
	if e.ID != nil && e.ID.LegacyMasked != "" {
		e.ID.Masked = e.ID.LegacyMasked
	}
	if key == nil || len(e.Private) == 0 {
		return nil
	}
	aead, err := chacha20poly1305.NewX(key[:])
	if err != nil {
		return err
	}
	if len(e.Private) < aead.NonceSize()+aead.Overhead() {
		return fmt.Errorf("%w: event %d", ErrPrivate, e.Seq)
	}
	nonce, ct := e.Private[:aead.NonceSize()], e.Private[aead.NonceSize():]
	plain, err := aead.Open(nil, nonce, ct, u64(e.Seq))
	if err != nil {
		return fmt.Errorf("%w: event %d", ErrPrivate, e.Seq)
	}
	var p private
	if err := decMode.Unmarshal(plain, &p); err != nil {
		return fmt.Errorf("%w: event %d: %v", ErrPrivate, e.Seq, err)
	}
	e.MaskedName = p.MaskedName
	if e.ID != nil {
		e.ID.Masked = p.IDMasked
	}
	return nil
}
