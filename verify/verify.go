// Package verify decides, offline, what a checkpoint does with a scanned
// code: pass, refuse, or refer to a second check, with every reason that
// applied.
//
// It is pure: no I/O, no clock, no logging. The caller brings the QR text,
// the trust list, the revocations, a replay cache, the policy and the
// current time with its uncertainty; Verify returns a Decision. The daemon
// and checkpointctl call it; docs/credential.md describes the checks.
package verify

import (
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"time"

	"github.com/checkpointd/checkpoint/internal/credential"
	"github.com/checkpointd/checkpoint/internal/trust"
)

// Instant is the checkpoint's idea of the current time: its best estimate,
// and how far off it may be. A negative Uncertainty means unknown.
type Instant struct {
	Time        time.Time
	Uncertainty time.Duration
}

// Revocations answers whether a credential is revoked, from the latest
// revocation list the checkpoint holds.
type Revocations interface {
	// Revoked reports whether credentials of subject issued at issuedAt
	// are revoked: whether a revocation of subject has a cut-off at or
	// after issuedAt.
	Revoked(subject []byte, issuedAt time.Time) bool
	// ValidUntil is when the list goes stale.
	ValidUntil() time.Time
}

// Input is everything a decision depends on.
type Input struct {
	Text        string
	Trust       *trust.List // nil: no trust list, no issuer is known
	Revocations Revocations // nil: revocations are not checked
	Replay      *ReplayCache
	Policy      Policy
	Now         Instant
	// IDNumber is the number an ID-card reader read (or the guard typed),
	// or "" without one. A number that is not a valid GB 11643 number
	// does not match any code.
	IDNumber string
}

// Decision is the result of a verification.
type Decision struct {
	Outcome Outcome
	Reasons []Reason
	// Detail explains a malformed code or a failed check for technicians.
	// It never holds personal data.
	Detail string
	// Repeat marks a code seen moments ago at this checkpoint: the same
	// person, not a new passage.
	Repeat bool
	// Code is what the guard may see; nil when the code could not be read
	// or its issuer could not be trusted.
	Code *CodeInfo
	// IDChecked is set when an ID-card number was compared with the code,
	// IDMatched when it matched.
	IDChecked bool
	IDMatched bool

	outcomes []Outcome // the outcome of each reason, in step with Reasons
	static   bool      // a paper code whose signature held
	subject  []byte    // the code's subject and ID hash, for WithID
	idHash   []byte
}

// CodeInfo is what a verified code says, for the guard and the event log.
type CodeInfo struct {
	Issuer       string     `json:"issuer"`
	IssuerName   string     `json:"issuer_name"`
	KeyID        string     `json:"key_id"`
	CredentialID string     `json:"credential_id"`
	Subject      string     `json:"subject"`
	Status       string     `json:"status"`
	Region       string     `json:"region"`
	MaskedName   string     `json:"masked_name"`
	IssuedAt     time.Time  `json:"issued_at"`
	Expires      time.Time  `json:"expires"`
	Static       bool       `json:"static"`
	PresentedAt  *time.Time `json:"presented_at,omitempty"`
}

// Verify decides what to do with one scanned code.
func Verify(in Input) Decision {
	var d Decision
	code, err := credential.ParseText(in.Text)
	if err != nil {
		d.Detail = err.Error()
		if errors.Is(err, credential.ErrUnsupportedVersion) {
			return d.add(UnsupportedVersion, Refuse)
		}
		return d.add(Malformed, Refuse)
	}
	c := &code.Credential
	p := in.Policy

	// The issuer: a key on the trust list whose signature verifies. Until
	// then nothing in the code can be believed, so stop at the first failure.
	var entries []*trust.Issuer
	if in.Trust != nil {
		entries = in.Trust.Lookup(c.KeyID)
	}
	if len(entries) == 0 {
		d.Detail = "key id " + hex.EncodeToString(c.KeyID) + " is not on the trust list"
		return d.add(UnknownIssuerKey, Refuse)
	}
	var issuer *trust.Issuer
	for _, e := range entries {
		if code.VerifyIssuer(e.PublicKey) == nil {
			issuer = e
			break
		}
	}
	if issuer == nil {
		return d.add(BadIssuerSignature, Refuse)
	}
	d.Code = info(code, issuer)

	if !issuer.ValidAt(c.IssuedAt) || !issuer.AllowsRegion(c.Region) || issuer.Issuer != c.Issuer {
		d.Detail = "issuer key " + hex.EncodeToString(c.KeyID) + " may not sign this credential"
		d.add(IssuerKeyNotValid, Refuse)
	}

	now := in.Now.Time
	unc := in.Now.Uncertainty
	clockTrusted := unc >= 0 && unc <= time.Duration(p.MaxClockUncertainty)
	slack := time.Duration(p.ClockSkew) + max(unc, 0)

	if !c.Static() {
		if err := code.VerifyHolder(); err != nil {
			d.add(BadHolderSignature, Refuse)
		}
	} else if code.Presented {
		// A paper code wrapped in a signature no key can check.
		d.add(BadHolderSignature, Refuse)
	}
	if c.IssuedAt.After(now.Add(slack)) {
		d.add(NotYetValid, Refuse)
	}
	if now.After(c.Expires.Add(slack)) {
		d.add(Expired, Refuse)
	}
	if code.Presented && !c.Static() {
		age := now.Sub(code.PresentedAt)
		if age > time.Duration(p.PresentationWindow)+slack {
			d.add(PresentationStale, Refuse)
		}
		if -age > slack {
			d.add(PresentationFuture, Refuse)
		}
	}
	// Only codes whose signatures hold go into the replay cache: garbage
	// must not be able to crowd out real sightings.
	if in.Replay != nil && !d.has(BadHolderSignature) {
		repeat, replayed := in.Replay.observe(code.Fingerprint(), string(c.KeyID)+string(c.ID), now, p, !c.Static())
		d.Repeat = repeat
		if replayed {
			d.add(Replayed, Refuse)
		}
	}
	if in.Revocations != nil && in.Revocations.Revoked(c.Subject, c.IssuedAt) {
		d.add(Revoked, Refuse)
	}
	switch c.Status {
	case credential.Yellow:
		d.add(StatusYellow, p.StatusYellow)
	case credential.Red:
		d.add(StatusRed, p.StatusRed)
	}
	d.static, d.subject, d.idHash = c.Static(), c.Subject, c.IDHash
	d.checkID(in.IDNumber, p)
	if in.Revocations != nil && now.After(in.Revocations.ValidUntil()) {
		d.add(RevocationListStale, p.RevocationListStale)
	}
	if now.After(in.Trust.Expires) {
		d.add(TrustListStale, p.TrustListStale)
	}
	if !clockTrusted {
		d.add(ClockUntrusted, p.ClockUntrusted)
	}
	return d
}

// checkID compares an ID number, if there is one, with the code's ID
// hash, and adds what follows: id_mismatch, and the paper code's outcome
// with or without a matching card.
func (d *Decision) checkID(number string, p Policy) {
	if number != "" {
		d.IDChecked = true
		if id, err := credential.ParseID(number); err == nil {
			d.IDMatched = subtle.ConstantTimeCompare(credential.IDHash(id, d.subject), d.idHash) == 1
		}
		if !d.IDMatched {
			d.add(IDMismatch, Refuse)
		}
	}
	if d.static {
		if d.IDMatched {
			d.add(StaticCode, p.StaticCodeIDMatched)
		} else {
			d.add(StaticCode, p.StaticCode)
		}
	}
}

// WithID returns the decision as it would have been had the ID number
// been read with the code: the card is compared with the code's ID hash
// (a mismatch refuses; a paper code takes the policy's outcome for a
// matching card). A code whose issuer could not be trusted is returned as
// it is. The ID hash is an Argon2id of 19 MiB: this costs tens of
// milliseconds.
func (d Decision) WithID(number string, p Policy) Decision {
	if d.Code == nil || number == "" {
		return d
	}
	kept := d
	kept.Reasons, kept.outcomes, kept.Outcome = nil, nil, Pass
	kept.IDChecked, kept.IDMatched = false, false
	for _, r := range d.Reasons {
		if r != IDMismatch && r != StaticCode {
			o, _ := d.OutcomeOf(r)
			kept.add(r, o)
		}
	}
	kept.checkID(number, p)
	// In the order Verify lists reasons in.
	out := kept
	out.Reasons, out.outcomes, out.Outcome = nil, nil, Pass
	for _, r := range Reasons {
		if o, ok := kept.OutcomeOf(r); ok {
			out.add(r, o)
		}
	}
	return out
}

// OutcomeOf returns the outcome reason r contributed to the decision, and
// whether the decision has it. For a decision not made by Verify, it is
// the decision's outcome.
func (d Decision) OutcomeOf(r Reason) (Outcome, bool) {
	for i, x := range d.Reasons {
		if x == r {
			if i < len(d.outcomes) {
				return d.outcomes[i], true
			}
			return d.Outcome, true
		}
	}
	return Pass, false
}

// add records a reason and raises the outcome to at least o.
func (d *Decision) add(r Reason, o Outcome) Decision {
	d.Reasons = append(d.Reasons, r)
	d.outcomes = append(d.outcomes, o)
	if o > d.Outcome {
		d.Outcome = o
	}
	return *d
}

func (d *Decision) has(r Reason) bool {
	for _, x := range d.Reasons {
		if x == r {
			return true
		}
	}
	return false
}

func info(code *credential.Code, issuer *trust.Issuer) *CodeInfo {
	c := &code.Credential
	ci := &CodeInfo{
		Issuer:       c.Issuer,
		IssuerName:   issuer.Name,
		KeyID:        hex.EncodeToString(c.KeyID),
		CredentialID: hex.EncodeToString(c.ID),
		Subject:      hex.EncodeToString(c.Subject),
		Status:       c.Status.String(),
		Region:       c.Region,
		MaskedName:   c.MaskedName,
		IssuedAt:     c.IssuedAt,
		Expires:      c.Expires,
		Static:       c.Static(),
	}
	if code.Presented {
		t := code.PresentedAt
		ci.PresentedAt = &t
	}
	return ci
}
