package store

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The authority's holders and risk data (docs/authority.md). Every method
// below is one transaction; its doc comment is its contract, for every
// implementation of the authority's storage.

var (
	aSubjects   = []byte("holders.subjects")   // subject -> holderRecord
	aHistory    = []byte("holders.history")    // subject || u64 n -> ColourChange, n from 1
	aCodes      = []byte("holders.codes")      // code hash -> codeRecord
	aAssertions = []byte("holders.assertions") // assertion id -> u64 expiry (Unix seconds)
	aCases      = []byte("risk.cases")         // subject -> listingRecord
	aContacts   = []byte("risk.contacts")      // subject -> listingRecord
	aAreas      = []byte("risk.areas")         // region || 0x00 || u64 from (Unix seconds) -> areaRecord
	aFeeds      = []byte("feeds")              // kind || 0x00 || issuer || 0x00 || u64 version -> feedRecord
	aFeedLast   = []byte("feeds.last")         // kind || 0x00 || issuer -> u64 last version applied
)

var holderBuckets = [][]byte{aSubjects, aHistory, aCodes, aAssertions, aCases, aContacts, aAreas, aFeeds, aFeedLast}

// Errors of the holders' side.
var (
	// ErrBadProof is a registration whose proof does not hold: a code
	// unknown, used, expired, or issued for another person (another
	// subject or name), or a real-name assertion used before.
	ErrBadProof = errors.New("store: registration code unknown, used, expired or for another person, or real-name assertion already used")
	// ErrUnknownHolder is a subject with no holder key registered.
	ErrUnknownHolder = errors.New("store: no holder key registered for this subject")
	// ErrFeedVersion is a feed whose version is at or below the last one
	// applied for its kind and issuer, with other content than the feed
	// of that version applied (or none of that version applied).
	ErrFeedVersion = errors.New("store: feed version at or below the last applied, with other content")
	// ErrFeedKind is a feed of a kind the store does not know.
	ErrFeedKind = errors.New("store: unknown feed kind")
)

// The kinds of feed (internal/feed).
const (
	FeedRiskAreas     = "risk_areas"
	FeedCases         = "cases"
	FeedCloseContacts = "close_contacts"
)

// RegistrationCode is a one-time registration code as the authority keeps
// it: under its keyed hash, never in the clear, bound to the person it
// was issued for (subject, masked name and ID hash, all derived when the
// operator issued it) until Expires.
type RegistrationCode struct {
	Hash       []byte
	Subject    [SubjectSize]byte
	MaskedName string
	IDHash     []byte
	Operator   string // the label of the office or operator that issued it, for audit
	Expires    time.Time
}

type codeRecord struct {
	Subject    []byte    `cbor:"1,keyasint"`
	MaskedName string    `cbor:"2,keyasint"`
	IDHash     []byte    `cbor:"3,keyasint"`
	Operator   string    `cbor:"4,keyasint"`
	Expires    time.Time `cbor:"5,keyasint"`
}

// AddRegistrationCode stores a registration code under c.Hash, replacing
// any held under the same hash.
func (a *Authority) AddRegistrationCode(c RegistrationCode) error {
	raw, err := encMode.Marshal(codeRecord{c.Subject[:], c.MaskedName, c.IDHash, c.Operator, c.Expires})
	if err != nil {
		return err
	}
	return a.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(aCodes).Put(c.Hash, raw) })
}

// Registration registers a holder key for a subject, with one proof:
// CodeHash (a registration code's hash) or AssertionID (a real-name
// assertion's id, checked by the caller, good until AssertionExpires).
type Registration struct {
	Subject [SubjectSize]byte
	Key     ed25519.PublicKey
	// MaskedName must be the code's; with an assertion it is recorded,
	// with IDHash.
	MaskedName string
	IDHash     []byte
	At         time.Time

	CodeHash         []byte
	AssertionID      []byte
	AssertionExpires time.Time

	// Revoke is added, as a new revocation version, when the subject had
	// another key registered: the old phone's credentials are revoked.
	// Its cut-off is moved, in the transaction, to the second after the
	// subject's cut-off held, or after its last declaration, if that is
	// later (RevEntry.AfterCutoff, AfterDeclaration).
	Revoke RevEntry
}

// Registered is what Register did.
type Registered struct {
	Replaced bool   // another key was registered before, and was replaced
	Version  uint64 // the revocation version that revoked the old key's credentials (Replaced only)
}

type holderRecord struct {
	Key        []byte      `cbor:"1,keyasint"`
	Registered time.Time   `cbor:"2,keyasint"`
	MaskedName string      `cbor:"3,keyasint"`
	IDHash     []byte      `cbor:"4,keyasint"`
	Colour     ColourState `cbor:"5,keyasint"`
	Changes    uint64      `cbor:"6,keyasint"` // colour changes in the history
}

// Register registers r.Key for r.Subject in one transaction, if its proof
// holds:
//
//   - a code (r.CodeHash): held, r.At before its expiry, issued for
//     r.Subject and r.MaskedName. It is deleted (used). The holder's masked
//     name and ID hash become the code's.
//   - an assertion (r.AssertionID): not seen before. Its id is recorded,
//     with r.AssertionExpires, so that it is refused from then on. The
//     holder's masked name and ID hash become r's.
//
// Otherwise (both or neither given, or the proof fails) it records
// nothing and returns ErrBadProof. The key replaces any registered
// before, and Registered becomes r.At; the subject's colour and history
// are kept, and its colour state's DeclareNow is set (the new phone may
// declare at once). If another key was registered, r.Revoke is added in
// the same transaction (Registered.Replaced, and the revocation version),
// with its cut-off no earlier than the second after the subject's cut-off
// as the transaction finds it (RevEntry.AfterCutoff): a credential the
// old key got in the second of a colour change, dated the second after
// that change's cut-off, is revoked with the rest; nor earlier than the
// second after the subject's last declaration as the transaction finds it
// (RevEntry.AfterDeclaration): a credential the old key got on a
// declaration recorded after the caller chose r.Revoke's cut-off is
// revoked too.
func (a *Authority) Register(r Registration) (Registered, error) {
	var out Registered
	err := a.db.Update(func(tx *bolt.Tx) error {
		rec, err := getHolderRecord(tx, r.Subject)
		if err != nil {
			return err
		}
		masked, idHash := r.MaskedName, r.IDHash
		switch {
		case r.CodeHash != nil && r.AssertionID == nil:
			codes := tx.Bucket(aCodes)
			raw := codes.Get(r.CodeHash)
			if raw == nil {
				return ErrBadProof
			}
			var c codeRecord
			if err := decMode.Unmarshal(raw, &c); err != nil {
				return err
			}
			if !bytes.Equal(c.Subject, r.Subject[:]) || c.MaskedName != r.MaskedName || !r.At.Before(c.Expires) {
				return ErrBadProof
			}
			if err := codes.Delete(r.CodeHash); err != nil {
				return err
			}
			masked, idHash = c.MaskedName, c.IDHash
		case r.AssertionID != nil && r.CodeHash == nil && len(r.IDHash) > 0:
			used := tx.Bucket(aAssertions)
			if used.Get(r.AssertionID) != nil {
				return ErrBadProof
			}
			if err := used.Put(r.AssertionID, u64(uint64(max(r.AssertionExpires.Unix(), 0)))); err != nil {
				return err
			}
		default:
			return ErrBadProof
		}
		out.Replaced = len(rec.Key) > 0 && !bytes.Equal(rec.Key, r.Key)
		rec.Key, rec.Registered, rec.MaskedName, rec.IDHash = r.Key, r.At, masked, idHash
		rec.Colour.DeclareNow = true
		if err := putHolderRecord(tx, r.Subject, rec); err != nil {
			return err
		}
		if out.Replaced {
			out.Version, err = a.revokeAfterHeld(tx, r.Revoke.AfterDeclaration(rec.Colour))
		}
		return err
	})
	return out, err
}

// AfterCutoff is e with its cut-off moved to the second after held (the
// cut-off of the subject's entry on the list) if that is later than
// e's, and its drop-after time moved by as much. A credential issued in
// the second of a cut-off is dated the second after it (docs/authority.md,
// "The same-second rule"); a revocation made in that same second takes
// this cut-off to cover it.
func (e RevEntry) AfterCutoff(held int64) RevEntry {
	if c := held + 1; c > e.Before {
		e.DropAfter += c - e.Before
		e.Before = c
	}
	return e
}

// AfterDeclaration is e with its cut-off moved to the second after c's
// last declaration if that is later (AfterCutoff; no declaration: e as it
// is). A credential issued on a declaration is dated its second, or the
// second after on a colour change, or the second after the subject's
// cut-off then (which AfterCutoff covers: a cut-off held never moves back
// while its entry is kept). A registration's revocation of the old key's
// credentials takes this cut-off, in its transaction, to cover one the
// old key got on a declaration recorded after the caller read the clock.
func (e RevEntry) AfterDeclaration(c ColourState) RevEntry {
	if c.LastDeclaration.IsZero() {
		return e
	}
	return e.AfterCutoff(c.LastDeclaration.Unix())
}

// RevokeNow adds e as one new version, as Revoke does, with its cut-off
// decided in the transaction: the later of e.Before and the second after
// the cut-off of the subject's entry held then (RevEntry.AfterCutoff; no
// entry held: e as it is). It is for a revocation dated now (an
// operator's without a time): a credential issued in the second of a
// colour change is dated the second after that change's cut-off, and is
// revoked all the same. It returns the new version.
func (a *Authority) RevokeNow(e RevEntry) (uint64, error) {
	var version uint64
	err := a.db.Update(func(tx *bolt.Tx) error {
		var err error
		version, err = a.revokeAfterHeld(tx, e)
		return err
	})
	return version, err
}

// revokeAfterHeld adds e within tx as one new version, its cut-off moved
// past the subject's held (RevEntry.AfterCutoff).
func (a *Authority) revokeAfterHeld(tx *bolt.Tx, e RevEntry) (uint64, error) {
	if raw := tx.Bucket(aRevs).Get(e.Subject[:]); raw != nil {
		held, _ := decodeARev(e.Subject[:], raw)
		e = e.AfterCutoff(held.Before)
	}
	return a.revoke(tx, []RevEntry{e})
}

// ExpireProofs forgets the registration codes and the used assertion ids
// whose expiry is at or before now (an expired assertion is refused by
// its expiry), and returns how many.
func (a *Authority) ExpireProofs(now time.Time) (int, error) {
	n := 0
	err := a.db.Update(func(tx *bolt.Tx) error {
		var gone [][]byte
		codes := tx.Bucket(aCodes)
		if err := codes.ForEach(func(k, v []byte) error {
			var r codeRecord
			if err := decMode.Unmarshal(v, &r); err != nil {
				return err
			}
			if !r.Expires.After(now) {
				gone = append(gone, bytes.Clone(k))
			}
			return nil
		}); err != nil {
			return err
		}
		for _, k := range gone {
			if err := codes.Delete(k); err != nil {
				return err
			}
		}
		n += len(gone)
		gone = gone[:0]
		used := tx.Bucket(aAssertions)
		if err := used.ForEach(func(k, v []byte) error {
			if len(v) == 8 && int64(binary.BigEndian.Uint64(v)) <= now.Unix() {
				gone = append(gone, bytes.Clone(k))
			}
			return nil
		}); err != nil {
			return err
		}
		for _, k := range gone {
			if err := used.Delete(k); err != nil {
				return err
			}
		}
		n += len(gone)
		return nil
	})
	return n, err
}

// Hold is a trigger of the rules that applied to a subject: its reason
// code, the colour it gives, and the end of its quarantine.
type Hold struct {
	Reason string    `cbor:"1,keyasint"`
	Colour string    `cbor:"2,keyasint"`
	End    time.Time `cbor:"3,keyasint"`
}

// ColourState is the colour the authority holds for a subject, as the
// rules (internal/rules) left it. Colour is "" until the subject is first
// assessed.
type ColourState struct {
	Colour          string    `cbor:"1,keyasint"`
	Since           time.Time `cbor:"2,keyasint"`
	Reasons         []string  `cbor:"3,keyasint"`
	QuarantineEnd   time.Time `cbor:"4,keyasint"`
	Holds           []Hold    `cbor:"5,keyasint"`
	LastDeclaration time.Time `cbor:"6,keyasint"`
	// DeclareNow allows the next declaration at once: risk data changed
	// the colour, or a new holder key was registered, since the last
	// declaration.
	DeclareNow bool `cbor:"7,keyasint,omitempty"`
}

// ColourChange is one entry of a subject's history: a change of its
// colour, reasons or quarantine, why (the reason codes, never the data
// behind them) and what caused it ("declaration" or "feed").
type ColourChange struct {
	At            time.Time `cbor:"1,keyasint"`
	From          string    `cbor:"2,keyasint"`
	Colour        string    `cbor:"3,keyasint"`
	Reasons       []string  `cbor:"4,keyasint"`
	QuarantineEnd time.Time `cbor:"5,keyasint"`
	Cause         string    `cbor:"6,keyasint"`
}

// Holder is what the authority holds about a subject, read in one
// transaction: the holder key registered (nil: none), when, the masked
// name and ID hash its credentials carry, the colour, the risk data that
// names the subject (since when it is on the case list and on the
// close-contact list; zero: not on it), and the cut-off of the subject's
// entry on the revocation list (zero: none): credentials must be issued
// after it.
type Holder struct {
	Subject       [SubjectSize]byte
	Key           ed25519.PublicKey
	Registered    time.Time
	MaskedName    string
	IDHash        []byte
	Colour        ColourState
	Case          time.Time
	CloseContact  time.Time
	RevokedBefore time.Time
}

// HolderUpdate is what an UpdateHolder or ApplyFeed callback has
// recorded for a subject: its new colour state; Change, if not nil,
// appended to its history; Revoke, if not nil, added to the revocations.
type HolderUpdate struct {
	Colour ColourState
	Change *ColourChange
	Revoke *RevEntry
}

func getHolderRecord(tx *bolt.Tx, s [SubjectSize]byte) (holderRecord, error) {
	var rec holderRecord
	if raw := tx.Bucket(aSubjects).Get(s[:]); raw != nil {
		if err := decMode.Unmarshal(raw, &rec); err != nil {
			return rec, fmt.Errorf("holder record: %w", err)
		}
	}
	return rec, nil
}

func putHolderRecord(tx *bolt.Tx, s [SubjectSize]byte, rec holderRecord) error {
	raw, err := encMode.Marshal(rec)
	if err != nil {
		return err
	}
	return tx.Bucket(aSubjects).Put(s[:], raw)
}

type listingRecord struct {
	Since   time.Time `cbor:"1,keyasint"`
	Issuer  string    `cbor:"2,keyasint"`
	Version uint64    `cbor:"3,keyasint"`
}

func getListing(b *bolt.Bucket, s [SubjectSize]byte) (time.Time, error) {
	raw := b.Get(s[:])
	if raw == nil {
		return time.Time{}, nil
	}
	var l listingRecord
	if err := decMode.Unmarshal(raw, &l); err != nil {
		return time.Time{}, err
	}
	return l.Since, nil
}

// readHolder reads everything Holder returns, within tx.
func readHolder(tx *bolt.Tx, s [SubjectSize]byte) (Holder, holderRecord, error) {
	h := Holder{Subject: s}
	rec, err := getHolderRecord(tx, s)
	if err != nil {
		return h, rec, err
	}
	if len(rec.Key) > 0 {
		h.Key = ed25519.PublicKey(rec.Key)
	}
	h.Registered, h.MaskedName, h.IDHash, h.Colour = rec.Registered, rec.MaskedName, rec.IDHash, rec.Colour
	if h.Case, err = getListing(tx.Bucket(aCases), s); err != nil {
		return h, rec, err
	}
	if h.CloseContact, err = getListing(tx.Bucket(aContacts), s); err != nil {
		return h, rec, err
	}
	if raw := tx.Bucket(aRevs).Get(s[:]); raw != nil {
		e, _ := decodeARev(s[:], raw)
		h.RevokedBefore = time.Unix(e.Before, 0).UTC()
	}
	return h, rec, nil
}

// Holder returns what the authority holds about a subject with a holder
// key registered; ErrUnknownHolder if it has none.
func (a *Authority) Holder(subject [SubjectSize]byte) (Holder, error) {
	var h Holder
	err := a.db.View(func(tx *bolt.Tx) error {
		var err error
		if h, _, err = readHolder(tx, subject); err != nil {
			return err
		}
		if h.Key == nil {
			return ErrUnknownHolder
		}
		return nil
	})
	return h, err
}

// applyUpdate records u's colour state and change for the subject whose
// record is rec, within tx; the caller adds its revocation.
func applyUpdate(tx *bolt.Tx, s [SubjectSize]byte, rec holderRecord, u *HolderUpdate) error {
	rec.Colour = u.Colour
	if u.Change != nil {
		rec.Changes++
		raw, err := encMode.Marshal(u.Change)
		if err != nil {
			return err
		}
		if err := tx.Bucket(aHistory).Put(append(bytes.Clone(s[:]), u64(rec.Changes)...), raw); err != nil {
			return err
		}
	}
	return putHolderRecord(tx, s, rec)
}

// UpdateHolder reads the subject as Holder does (a subject with no key
// registered, or not known at all, is passed with a nil Key and what is
// held, if anything) and calls fn with it, in one transaction. If fn
// fails nothing is recorded and its error is returned as it is; if it
// returns nil nothing is recorded; otherwise its update is: the colour
// state replaced, the change appended to the history, the revocation
// added as one new version (whose number it returns; 0 for none). fn must
// not use the storage; it may be called again if the transaction is
// retried.
func (a *Authority) UpdateHolder(subject [SubjectSize]byte, fn func(Holder) (*HolderUpdate, error)) (uint64, error) {
	var version uint64
	err := a.db.Update(func(tx *bolt.Tx) error {
		h, rec, err := readHolder(tx, subject)
		if err != nil {
			return err
		}
		u, err := fn(h)
		if err != nil || u == nil {
			return err
		}
		if err := applyUpdate(tx, subject, rec, u); err != nil {
			return err
		}
		if u.Revoke != nil {
			version, err = a.revoke(tx, []RevEntry{*u.Revoke})
		}
		return err
	})
	return version, err
}

// ColourHistory returns the last limit entries of a subject's history,
// oldest first.
func (a *Authority) ColourHistory(subject [SubjectSize]byte, limit int) ([]ColourChange, error) {
	var out []ColourChange
	err := a.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(aHistory).Cursor()
		prefix := subject[:]
		k, v := c.Seek(append(bytes.Clone(prefix), u64(^uint64(0))...))
		if k == nil {
			k, v = c.Last()
		} else {
			k, v = c.Prev()
		}
		for ; k != nil && bytes.HasPrefix(k, prefix) && len(out) < limit; k, v = c.Prev() {
			var ch ColourChange
			if err := decMode.Unmarshal(v, &ch); err != nil {
				return err
			}
			out = append(out, ch)
		}
		return nil
	})
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, err
}

// RiskArea is a listed risk area: a region code, risky from From until
// To (excluded; zero: no end yet).
type RiskArea struct {
	Region   string
	From, To time.Time
}

type areaRecord struct {
	To      time.Time `cbor:"1,keyasint"`
	Issuer  string    `cbor:"2,keyasint"`
	Version uint64    `cbor:"3,keyasint"`
}

func areaKey(region string, from time.Time) []byte {
	return append(append([]byte(region), 0), u64(uint64(max(from.Unix(), 0)))...)
}

// RiskAreas returns the listed areas that concern a visit to any of
// regions: those whose code is a prefix of a region's (the region lies
// within them) and those whose code starts with a region's (they lie
// within it). Each listing comes once.
func (a *Authority) RiskAreas(regions []string) ([]RiskArea, error) {
	var out []RiskArea
	seen := map[string]bool{}
	err := a.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(aAreas).Cursor()
		scan := func(prefix []byte) error {
			for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
				if seen[string(k)] {
					continue
				}
				seen[string(k)] = true
				i := bytes.IndexByte(k, 0)
				if i < 0 || len(k) != i+9 {
					return fmt.Errorf("risk area key %x", k)
				}
				var r areaRecord
				if err := decMode.Unmarshal(v, &r); err != nil {
					return err
				}
				out = append(out, RiskArea{Region: string(k[:i]), From: time.Unix(int64(binary.BigEndian.Uint64(k[i+1:])), 0).UTC(), To: r.To})
			}
			return nil
		}
		for _, region := range regions {
			for n := 1; n < len(region); n++ {
				if err := scan(append([]byte(region[:n]), 0)); err != nil {
					return err
				}
			}
			if err := scan([]byte(region)); err != nil {
				return err
			}
		}
		return nil
	})
	return out, err
}

// Listing is a row of a case or close-contact feed: a subject, since
// when.
type Listing struct {
	Subject [SubjectSize]byte
	Since   time.Time
}

// FeedUpdate is a feed to apply: its kind, issuer (the feed key's id),
// version and digest, and its rows: Areas for FeedRiskAreas, Listings for
// FeedCases and FeedCloseContacts.
type FeedUpdate struct {
	Kind     string
	Issuer   string
	Version  uint64
	Digest   [32]byte
	Applied  time.Time
	Areas    []RiskArea
	Listings []Listing
}

// FeedResult is what ApplyFeed did.
type FeedResult struct {
	Applied  bool   // false: this version was applied before, with this digest; nothing was done
	Subjects int    // subjects reassessed
	Changed  int    // subjects reassess recorded an update for
	Version  uint64 // the revocation version the updates added (0: none)
}

type feedRecord struct {
	Digest  []byte    `cbor:"1,keyasint"`
	Applied time.Time `cbor:"2,keyasint"`
	Rows    int       `cbor:"3,keyasint"`
}

func feedPrefix(kind, issuer string) []byte { return []byte(kind + "\x00" + issuer) }

// ApplyFeed applies a feed in one transaction. If f.Version is at or
// below the last version applied for f.Kind and f.Issuer, it does nothing
// and returns Applied false when that version was applied with the same
// digest, ErrFeedVersion otherwise. Else it records the rows (an area
// under its region and from, replacing what was held for them; a
// listing's since for its subject on the kind's list, replacing what was
// held; a later row of the feed replaces an earlier one) and the version
// with its digest; then it reads each subject the feed lists, once, in
// the order of first appearance, as UpdateHolder does (the listing just
// recorded included), and calls reassess with it, recording what it
// returns as UpdateHolder does, with the revocations of all of them added
// as one new version. If reassess fails, nothing of the feed is recorded
// and its error is returned. reassess must not use the storage.
func (a *Authority) ApplyFeed(f FeedUpdate, reassess func(Holder) (*HolderUpdate, error)) (FeedResult, error) {
	var res FeedResult
	var list []byte
	switch f.Kind {
	case FeedRiskAreas:
	case FeedCases:
		list = aCases
	case FeedCloseContacts:
		list = aContacts
	default:
		return res, fmt.Errorf("%w: %q", ErrFeedKind, f.Kind)
	}
	err := a.db.Update(func(tx *bolt.Tx) error {
		prefix := feedPrefix(f.Kind, f.Issuer)
		last := getU64(tx.Bucket(aFeedLast), prefix)
		key := append(append(bytes.Clone(prefix), 0), u64(f.Version)...)
		if f.Version <= last {
			raw := tx.Bucket(aFeeds).Get(key)
			if raw == nil {
				return fmt.Errorf("%w: version %d, last applied %d", ErrFeedVersion, f.Version, last)
			}
			var r feedRecord
			if err := decMode.Unmarshal(raw, &r); err != nil {
				return err
			}
			if !bytes.Equal(r.Digest, f.Digest[:]) {
				return fmt.Errorf("%w: version %d", ErrFeedVersion, f.Version)
			}
			return nil
		}
		res.Applied = true
		raw, err := encMode.Marshal(feedRecord{Digest: f.Digest[:], Applied: f.Applied, Rows: len(f.Areas) + len(f.Listings)})
		if err != nil {
			return err
		}
		if err := tx.Bucket(aFeeds).Put(key, raw); err != nil {
			return err
		}
		if err := tx.Bucket(aFeedLast).Put(prefix, u64(f.Version)); err != nil {
			return err
		}
		areas := tx.Bucket(aAreas)
		for _, ar := range f.Areas {
			raw, err := encMode.Marshal(areaRecord{To: ar.To, Issuer: f.Issuer, Version: f.Version})
			if err != nil {
				return err
			}
			if err := areas.Put(areaKey(ar.Region, ar.From), raw); err != nil {
				return err
			}
		}
		if list == nil {
			return nil
		}
		b := tx.Bucket(list)
		var order [][SubjectSize]byte
		named := map[[SubjectSize]byte]bool{}
		for _, l := range f.Listings {
			raw, err := encMode.Marshal(listingRecord{Since: l.Since, Issuer: f.Issuer, Version: f.Version})
			if err != nil {
				return err
			}
			if err := b.Put(l.Subject[:], raw); err != nil {
				return err
			}
			if !named[l.Subject] {
				named[l.Subject] = true
				order = append(order, l.Subject)
			}
		}
		var revs []RevEntry
		for _, s := range order {
			h, rec, err := readHolder(tx, s)
			if err != nil {
				return err
			}
			res.Subjects++
			u, err := reassess(h)
			if err != nil {
				return err
			}
			if u == nil {
				continue
			}
			res.Changed++
			if err := applyUpdate(tx, s, rec, u); err != nil {
				return err
			}
			if u.Revoke != nil {
				revs = append(revs, *u.Revoke)
			}
		}
		if len(revs) > 0 {
			res.Version, err = a.revoke(tx, revs)
		}
		return err
	})
	if err != nil {
		return FeedResult{}, err
	}
	return res, nil
}
