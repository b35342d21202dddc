package store

import (
	"time"

	bolt "go.etcd.io/bbolt"
)

// The small records of a checkpoint: its enrolment, its trust list, its
// clock anchors and the outcome of its last sync.

// Device is the checkpoint's enrolment with the authority.
type Device struct {
	ID        string    `cbor:"1,keyasint" json:"id"`
	Authority string    `cbor:"2,keyasint" json:"authority"`
	Enrolled  time.Time `cbor:"3,keyasint" json:"enrolled"`
}

// Anchor ties the checkpoint's clock to the authority's: at box wall-clock
// time Wall, the authority said it was Server; the round trip took RTT.
// BootID and Boot say which boot of the machine that was and where its
// boot clock stood then, so that a restarted process can carry the time
// on without the wall clock. Anchors stored before these fields existed
// load with BootID empty.
type Anchor struct {
	Server time.Time     `cbor:"1,keyasint" json:"server"`
	Wall   time.Time     `cbor:"2,keyasint" json:"wall"`
	RTT    time.Duration `cbor:"3,keyasint" json:"rtt"`
	BootID string        `cbor:"4,keyasint,omitempty" json:"boot_id,omitempty"`
	Boot   time.Duration `cbor:"5,keyasint,omitempty" json:"boot,omitempty"` // time since that boot
}

// SyncOutcome is what the last sync attempt did.
type SyncOutcome struct {
	At     time.Time     `cbor:"1,keyasint" json:"at"`
	OK     bool          `cbor:"2,keyasint" json:"ok"`
	Error  string        `cbor:"3,keyasint,omitempty" json:"error,omitempty"`
	LastOK time.Time     `cbor:"4,keyasint" json:"last_ok"`
	Offset time.Duration `cbor:"5,keyasint" json:"offset"` // server minus box, at the last good sync
	// Failures counts the attempts failed since the last good one.
	Failures int `cbor:"6,keyasint,omitempty" json:"consecutive_failures"`
}

func (b *Box) getMeta(key []byte, v any) (bool, error) {
	found := false
	err := b.db.View(func(tx *bolt.Tx) error {
		raw := tx.Bucket(bucketMeta).Get(key)
		if raw == nil {
			return nil
		}
		found = true
		return decMode.Unmarshal(raw, v)
	})
	return found, err
}

func (b *Box) putMeta(key []byte, v any) error {
	raw, err := encMode.Marshal(v)
	if err != nil {
		return err
	}
	return b.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(key, raw) })
}

func (b *Box) putMetaTx(tx *bolt.Tx, key []byte, v any) error {
	raw, err := encMode.Marshal(v)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketMeta).Put(key, raw)
}

// Device returns the enrolment, if the box is enrolled.
func (b *Box) Device() (Device, bool, error) {
	var d Device
	ok, err := b.getMeta(keyDevice, &d)
	return d, ok, err
}

// SetDevice records the enrolment.
func (b *Box) SetDevice(d Device) error { return b.putMeta(keyDevice, d) }

// TrustList returns the signed trust list in force, as received (nil if
// none has been stored).
func (b *Box) TrustList() ([]byte, error) {
	var raw []byte
	err := b.db.View(func(tx *bolt.Tx) error {
		raw = append([]byte(nil), tx.Bucket(bucketMeta).Get(keyTrust)...)
		return nil
	})
	if len(raw) == 0 {
		return nil, err
	}
	return raw, err
}

// SetTrustList stores a signed trust list the caller has checked.
func (b *Box) SetTrustList(raw []byte) error {
	return b.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keyTrust, raw) })
}

// Anchor returns the last clock anchor.
func (b *Box) Anchor() (Anchor, bool, error) {
	var a Anchor
	ok, err := b.getMeta(keyAnchor, &a)
	return a, ok, err
}

// SetAnchor records a clock anchor.
func (b *Box) SetAnchor(a Anchor) error { return b.putMeta(keyAnchor, a) }

// HighWater returns the latest time the checkpoint has trusted: a clock
// found earlier than it has gone backwards.
func (b *Box) HighWater() (time.Time, error) {
	var t time.Time
	_, err := b.getMeta(keyHigh, &t)
	return t, err
}

// SetHighWater records a trusted time.
func (b *Box) SetHighWater(t time.Time) error { return b.putMeta(keyHigh, t) }

// LastSync returns the outcome of the last sync attempt.
func (b *Box) LastSync() (SyncOutcome, error) {
	var s SyncOutcome
	_, err := b.getMeta(keySyncLog, &s)
	return s, err
}

// SetLastSync records a sync attempt.
func (b *Box) SetLastSync(s SyncOutcome) error { return b.putMeta(keySyncLog, s) }
