package authority

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/checkpointd/checkpoint/internal/credential"
	"github.com/checkpointd/checkpoint/internal/identity"
	"github.com/checkpointd/checkpoint/internal/protocol"
	"github.com/checkpointd/checkpoint/internal/rules"
	"github.com/checkpointd/checkpoint/store"
)

// The holders' side of the server (docs/authority.md): registration codes
// from operators, registrations on a proof, declarations and status
// signed by the registered holder key.

// Bounds of what a holder sends.
const (
	maxVisits   = 32 // visits in one declaration
	maxOperator = 64 // bytes of an operator's label
	// maxAssertionLife is the longest an assertion may be good for, from
	// its verification: its id is remembered that long.
	maxAssertionLife = time.Hour
	// maxIssueAhead is how far after now a credential may be dated to
	// fall after its subject's revocation cut-off.
	maxIssueAhead = 10 * time.Second
	// historyShown is how many of a holder's last changes their status
	// shows.
	historyShown = 10
)

// Errors a declaration's transaction ends with.
var (
	errKeyReplaced = errors.New("the holder key that signed the declaration is no longer registered")
	errTooSoon     = errors.New("declared too soon")
	errRevokedLong = errors.New("the subject's credentials are revoked until later than a credential can be dated")
)

// adminRegistrationCode issues a one-time registration code for a person
// whose ID card an operator has checked: bound to the person's subject,
// masked name and ID hash, good for CodeValidity, kept only as a keyed
// hash, logged with the operator's label and the subject pseudonym. Codes
// are rate limited (Limits.CodeBurst, CodeEvery), and their ID hashes
// take hashing slots.
func (s *Server) adminRegistrationCode(w http.ResponseWriter, r *http.Request) {
	if !s.admin(w, r) {
		return
	}
	body, ok := readBody(w, r, maxSmallBody)
	if !ok {
		return
	}
	var req protocol.AdminRegistrationCode
	if err := protocol.DecStrict.Unmarshal(body, &req); err != nil {
		http.Error(w, "malformed request: an ID number, a name and an operator's label", http.StatusBadRequest)
		return
	}
	id, err := credential.ParseID(req.IDNumber)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if !validName(req.Name) || !validLabel(req.Operator) {
		http.Error(w, "a name and an operator's label (up to 64 printable characters) are required", http.StatusBadRequest)
		return
	}
	now := s.clock.Now()
	if !s.codes.AllowN(now, 1) {
		s.log.Warn("registration code refused: too many issued", "operator", req.Operator)
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int(s.lim.CodeEvery/time.Second))))
		http.Error(w, "too many registration codes issued: try again later", http.StatusTooManyRequests)
		return
	}
	sub := [store.SubjectSize]byte(credential.Pseudonym(s.keys.Pseudonym, id))
	if !s.hashing.take(r.Context(), s.clock, s.lim.Queue) {
		busy(w)
		return
	}
	idHash := credential.IDHash(id, sub[:])
	s.hashing.give()
	code, err := identity.NewCode()
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	plain, err := identity.ParseCode(code)
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	expires := now.Add(s.opts.CodeValidity).Truncate(time.Second)
	if err := s.st.AddRegistrationCode(store.RegistrationCode{Hash: identity.CodeHash(s.codeKey, plain), Subject: sub,
		MaskedName: credential.MaskName(req.Name), IDHash: idHash, Operator: req.Operator, Expires: expires}); err != nil {
		s.internalError(w, r, err)
		return
	}
	s.log.Info("registration code issued", "subject", hex.EncodeToString(sub[:]), "operator", req.Operator, "expires", expires)
	s.writeCBOR(w, r, protocol.AdminRegistrationCodeResponse{Code: code, Expires: expires})
}

// register registers a holder key for a person, on a proof of who they
// are. The request is signed by the key it registers (proof of
// possession, checked from the headers before the body is read, with the
// time); the proof is a registration code issued for this person, or a
// real-name service's assertion that this person controls this key. A
// failed proof counts against the client like a wrong token. A key
// registered before for the person is replaced, and the credentials
// issued to it revoked.
//
// Its nonce is not remembered: anyone can sign a registration with a key
// made for the purpose, so remembering them would let anyone fill the
// memory of signed requests; and a registration replayed is refused by
// its proof, which is used once.
func (s *Server) register(w http.ResponseWriter, r *http.Request) {
	client := clientKey(r.RemoteAddr)
	var key ed25519.PublicKey
	sr, err := protocol.VerifyHolderRequest(r, func(id string) (ed25519.PublicKey, error) {
		b, err := hex.DecodeString(id)
		if err != nil || len(b) != ed25519.PublicKeySize {
			return nil, errors.New("a registration names the holder key that signs it")
		}
		key = b
		return key, nil
	})
	if err != nil {
		s.failed(w, client, "holder signature on a registration", err.Error(), http.StatusUnauthorized)
		return
	}
	if !s.fresh(w, client, nil, "", sr, "holder") {
		return
	}
	body, ok := readBody(w, r, maxSmallBody)
	if !ok {
		return
	}
	if err := sr.CheckBody(body); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var req protocol.RegisterRequest
	if err := protocol.DecStrict.Unmarshal(body, &req); err != nil {
		http.Error(w, "malformed registration", http.StatusBadRequest)
		return
	}
	if !bytes.Equal(req.HolderKey, key) {
		http.Error(w, "the holder key registered must be the one that signs the request", http.StatusBadRequest)
		return
	}
	if !validName(req.Name) {
		http.Error(w, "a name is required", http.StatusBadRequest)
		return
	}
	id, err := credential.ParseID(req.IDNumber)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	sub := [store.SubjectSize]byte(credential.Pseudonym(s.keys.Pseudonym, id))
	masked := credential.MaskName(req.Name)
	now := s.clock.Now().Truncate(time.Second)
	reg := store.Registration{Subject: sub, Key: key, MaskedName: masked, At: now}
	proof := "code"
	switch {
	case req.Code != "" && req.Assertion == nil:
		code, err := identity.ParseCode(req.Code)
		if err != nil {
			s.failed(w, client, "registration code", err.Error(), http.StatusForbidden)
			return
		}
		reg.CodeHash = identity.CodeHash(s.codeKey, code)
	case req.Assertion != nil && req.Code == "":
		proof = "realname"
		a, err := identity.OpenAssertion(req.Assertion, s.opts.RealnameKeys...)
		if err != nil {
			s.failed(w, client, "real-name assertion", err.Error(), http.StatusForbidden)
			return
		}
		switch {
		case a.IDNumber != id || !a.HolderKey.Equal(key) || credential.MaskName(a.Name) != masked:
			s.failed(w, client, "real-name assertion for another person or key",
				"the real-name assertion is for another person or another holder key", http.StatusForbidden)
			return
		case now.Before(a.VerifiedAt.Add(-s.lim.RequestWindow)) || !now.Before(a.Expires) || a.Expires.Sub(a.VerifiedAt) > maxAssertionLife:
			s.failed(w, client, "real-name assertion out of date",
				"the real-name assertion has expired, is not yet valid, or is good for more than an hour", http.StatusForbidden)
			return
		}
		// An assertion used before (known to this process) is refused
		// before its Argon2id and the database: replaying one costs
		// nothing.
		if s.assertions.used(a.ID, now) {
			s.failed(w, client, "registration proof", store.ErrBadProof.Error(), http.StatusForbidden)
			return
		}
		reg.AssertionID, reg.AssertionExpires = a.ID, a.Expires
		if !s.hashing.take(r.Context(), s.clock, s.lim.Queue) {
			busy(w)
			return
		}
		reg.IDHash = credential.IDHash(id, sub[:])
		s.hashing.give()
	default:
		http.Error(w, "one proof is required: a registration code or a real-name assertion", http.StatusBadRequest)
		return
	}
	if err := s.expire(); err != nil {
		s.internalError(w, r, err)
		return
	}
	// The cut-off for the old key's credentials, if any: the time after
	// the Argon2id and the wait for its slot, not of the request; the
	// storage moves it, in its transaction, to the second after the
	// subject's cut-off, or after its last declaration, if that is later
	// (a credential issued in the second of a colour change is dated
	// then, and the old key may declare between now and the
	// transaction).
	reg.Revoke = s.revocation(sub, s.clock.Now().Truncate(time.Second))
	res, err := s.st.Register(reg)
	if reg.AssertionID != nil && (err == nil || errors.Is(err, store.ErrBadProof)) {
		s.assertions.add(reg.AssertionID, reg.AssertionExpires, now)
	}
	switch {
	case errors.Is(err, store.ErrBadProof):
		s.failed(w, client, "registration proof", err.Error(), http.StatusForbidden)
		return
	case err != nil:
		s.internalError(w, r, err)
		return
	}
	s.fails.ok(client)
	if res.Replaced {
		s.log.Info("holder registered: a new phone; the old key's credentials revoked", "subject", hex.EncodeToString(sub[:]),
			"proof", proof, "revocation_version", res.Version)
	} else {
		s.log.Info("holder registered", "subject", hex.EncodeToString(sub[:]), "proof", proof)
	}
	s.writeCBOR(w, r, protocol.RegisterResponse{Subject: sub[:], Registered: now, Replaced: res.Replaced})
}

// holder authenticates a holder's request from its headers, before its
// body is read: the signature of the key registered for the subject the
// request names (hex), then the time and the nonce. It returns the
// subject and what is held about it.
func (s *Server) holder(w http.ResponseWriter, r *http.Request) (protocol.SignedRequest, store.Holder, bool) {
	client := clientKey(r.RemoteAddr)
	var h store.Holder
	var dbErr error
	var subject string // the subject in lower-case hex: hex reads either case
	sr, err := protocol.VerifyHolderRequest(r, func(id string) (ed25519.PublicKey, error) {
		b, err := hex.DecodeString(id)
		if err != nil || len(b) != store.SubjectSize {
			return nil, errors.New("not a subject pseudonym")
		}
		subject = hex.EncodeToString(b)
		h, err = s.st.Holder([store.SubjectSize]byte(b))
		if err != nil && !errors.Is(err, store.ErrUnknownHolder) {
			dbErr = err
		}
		return h.Key, err
	})
	switch {
	case dbErr != nil:
		s.internalError(w, r, dbErr)
		return sr, h, false
	case err != nil:
		s.failed(w, client, "holder signature", protocol.ErrHolderUnauthenticated.Error(), http.StatusUnauthorized)
		return sr, h, false
	}
	if !s.fresh(w, client, s.holderSeen, subject, sr, "holder") {
		return sr, h, false
	}
	s.fails.ok(client)
	return sr, h, true
}

// declare takes a holder's declaration, signed by the registered holder
// key: the rules decide the colour from it and the risk data, and the
// authority issues the registered key a credential of that colour. One
// declaration per interval (the rules' NextDeclaration): a declaration
// too soon is answered 429 with the time of the next one. The rules'
// decision, the record of the declaration, the colour change (with its
// history entry and the revocation of the credentials issued at or before
// it) and the issue are one transaction, at one time; a credential is
// dated after its subject's revocation cut-off.
func (s *Server) declare(w http.ResponseWriter, r *http.Request) {
	sr, h, ok := s.holder(w, r)
	if !ok {
		return
	}
	body, ok := readBody(w, r, maxSmallBody)
	if !ok {
		return
	}
	if err := sr.CheckBody(body); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var d protocol.Declaration
	if err := protocol.DecStrict.Unmarshal(body, &d); err != nil {
		http.Error(w, "malformed declaration (the form only: fever, symptoms, contact, travel; no colour): "+err.Error(), http.StatusBadRequest)
		return
	}
	if s.opts.Region == "" {
		http.Error(w, "this authority issues no credentials (it has no issuing region)", http.StatusServiceUnavailable)
		return
	}
	now := s.clock.Now().Truncate(time.Second)
	decl := rules.Declaration{At: now, Fever: d.Fever, Symptoms: d.Symptoms, Contact: d.Contact}
	if len(d.Travel) > maxVisits {
		http.Error(w, fmt.Sprintf("at most %d visits in a declaration", maxVisits), http.StatusBadRequest)
		return
	}
	var regions []string
	for i, v := range d.Travel {
		day, err := rules.ParseDay(v.Date)
		region, ok := rules.Region(v.Region)
		if err != nil || !ok {
			http.Error(w, fmt.Sprintf("visit %d: a region code of 2, 4, 6, 9 or 12 digits and a date YYYY-MM-DD", i+1), http.StatusBadRequest)
			return
		}
		if day.After(now) {
			http.Error(w, fmt.Sprintf("visit %d is on a day to come", i+1), http.StatusBadRequest)
			return
		}
		decl.Travel = append(decl.Travel, rules.Visit{Region: region, Day: day})
		if !slices.Contains(regions, region) {
			regions = append(regions, region)
		}
	}
	// A declaration too soon by what the authentication read is refused
	// before the risk areas are: the transaction checks again.
	if next := s.rules.NextDeclaration(stateOf(h.Colour)); now.Before(next) {
		tooSoon(w, now, next)
		return
	}
	var facts rules.Facts
	if len(regions) > 0 {
		areas, err := s.st.RiskAreas(regions)
		if err != nil {
			s.internalError(w, r, err)
			return
		}
		for _, a := range areas {
			facts.Areas = append(facts.Areas, rules.Area{Region: a.Region, From: a.From, To: a.To})
		}
	}
	sub, key := h.Subject, h.Key
	var raw []byte
	var issued *credential.Credential
	var next time.Time
	var held store.Holder
	var change *store.ColourChange
	_, err := s.st.UpdateHolder(sub, func(h store.Holder) (*store.HolderUpdate, error) {
		if !h.Key.Equal(key) {
			return nil, errKeyReplaced
		}
		prev := stateOf(h.Colour)
		if n := s.rules.NextDeclaration(prev); now.Before(n) {
			next = n
			return nil, errTooSoon
		}
		facts.Case, facts.CloseContact = h.Case, h.CloseContact
		st := s.rules.Declare(prev, facts, decl)
		u := &store.HolderUpdate{Colour: recordOf(st)}
		at := now
		if ch := changeOf(prev, st, now, "declaration"); ch != nil {
			u.Change = ch
			if st.Colour != prev.Colour && prev.Colour != 0 {
				rev := s.revocation(sub, now)
				u.Revoke, at = &rev, now.Add(time.Second)
			}
		}
		if cut := h.RevokedBefore; !cut.IsZero() && !at.After(cut) {
			at = cut.Add(time.Second)
		}
		if at.Sub(now) > maxIssueAhead {
			return nil, errRevokedLong
		}
		cid := make([]byte, credential.IDSize)
		if _, err := rand.Read(cid); err != nil {
			return nil, err
		}
		c := &credential.Credential{
			Issuer: s.keys.IssuerCode, ID: cid, Subject: sub[:], Status: st.Colour, Region: s.opts.Region,
			MaskedName: h.MaskedName, IDHash: h.IDHash,
			IssuedAt: at, Expires: at.Add(s.opts.CredentialValidity), HolderKey: key,
		}
		var err error
		if raw, err = credential.Issue(c, s.keys.Issuer); err != nil {
			return nil, err
		}
		issued, change = c, u.Change
		held = h
		held.Colour = u.Colour
		return u, nil
	})
	switch {
	case errors.Is(err, errKeyReplaced):
		s.failed(w, clientKey(r.RemoteAddr), "declaration by a holder key replaced", err.Error(), http.StatusUnauthorized)
		return
	case errors.Is(err, errTooSoon):
		tooSoon(w, now, next)
		return
	case errors.Is(err, errRevokedLong):
		http.Error(w, err.Error(), http.StatusConflict)
		return
	case err != nil:
		s.internalError(w, r, err)
		return
	}
	// For audit: who (by pseudonym) got which credential, of which colour,
	// and why.
	s.log.Info("credential issued on a declaration", "subject", hex.EncodeToString(sub[:]),
		"credential", hex.EncodeToString(issued.ID), "colour", issued.Status.String(), "issued_at", issued.IssuedAt,
		"reasons", strings.Join(held.Colour.Reasons, ","), "changed", change != nil)
	hist, err := s.st.ColourHistory(sub, historyShown)
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	s.writeCBOR(w, r, protocol.DeclarationResponse{Credential: raw, Status: s.statusOf(held, hist)})
}

// tooSoon answers a declaration made before next, the time of the next
// one allowed.
func tooSoon(w http.ResponseWriter, now, next time.Time) {
	w.Header().Set("Retry-After", strconv.Itoa(int(next.Sub(now)/time.Second)+1))
	w.Header().Set(protocol.HeaderNextDeclaration, next.UTC().Format(time.RFC3339))
	http.Error(w, "already declared: the next declaration is allowed at "+next.UTC().Format(time.RFC3339),
		http.StatusTooManyRequests)
}

// holderStatus tells a holder their colour and why: reason codes only.
func (s *Server) holderStatus(w http.ResponseWriter, r *http.Request) {
	sr, h, ok := s.holder(w, r)
	if !ok {
		return
	}
	if err := sr.CheckBody(nil); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	hist, err := s.st.ColourHistory(h.Subject, historyShown)
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	s.writeCBOR(w, r, s.statusOf(h, hist))
}

func (s *Server) statusOf(h store.Holder, hist []store.ColourChange) protocol.HolderStatus {
	st := protocol.HolderStatus{Subject: h.Subject[:], Registered: h.Registered, Colour: h.Colour.Colour,
		Reasons: h.Colour.Reasons, Since: h.Colour.Since, QuarantineEnd: h.Colour.QuarantineEnd,
		NextDeclaration: s.rules.NextDeclaration(stateOf(h.Colour)), History: []protocol.ColourChange{}}
	if st.Reasons == nil {
		st.Reasons = []string{}
	}
	for _, c := range hist {
		st.History = append(st.History, protocol.ColourChange{At: c.At, Colour: c.Colour, Reasons: c.Reasons,
			QuarantineEnd: c.QuarantineEnd, Cause: c.Cause})
	}
	return st
}

// changeOf is the history entry for a new state, if its colour, reasons
// or quarantine differ from the one before.
func changeOf(prev, st rules.State, at time.Time, cause string) *store.ColourChange {
	if st.Colour == prev.Colour && slices.Equal(st.Reasons, prev.Reasons) && st.QuarantineEnd.Equal(prev.QuarantineEnd) {
		return nil
	}
	return &store.ColourChange{At: at, From: colourName(prev.Colour), Colour: colourName(st.Colour), Reasons: st.Reasons,
		QuarantineEnd: st.QuarantineEnd, Cause: cause}
}

func colourName(c credential.Status) string {
	if c == 0 {
		return ""
	}
	return c.String()
}

// stateOf and recordOf convert between the rules' state and the
// storage's record of it.
func stateOf(c store.ColourState) rules.State {
	st := rules.State{Since: c.Since, Reasons: c.Reasons, QuarantineEnd: c.QuarantineEnd, LastDeclaration: c.LastDeclaration,
		DeclareNow: c.DeclareNow}
	st.Colour, _ = credential.ParseStatus(c.Colour)
	for _, h := range c.Holds {
		col, _ := credential.ParseStatus(h.Colour)
		st.Holds = append(st.Holds, rules.Hold{Reason: rules.Trigger(h.Reason), Colour: col, End: h.End})
	}
	return st
}

func recordOf(st rules.State) store.ColourState {
	c := store.ColourState{Colour: colourName(st.Colour), Since: st.Since, Reasons: st.Reasons, QuarantineEnd: st.QuarantineEnd,
		LastDeclaration: st.LastDeclaration, DeclareNow: st.DeclareNow}
	for _, h := range st.Holds {
		c.Holds = append(c.Holds, store.Hold{Reason: string(h.Reason), Colour: colourName(h.Colour), End: h.End})
	}
	return c
}

func validName(n string) bool {
	return strings.TrimSpace(n) != "" && len(n) <= maxName
}

func validLabel(l string) bool {
	if l == "" || len(l) > maxOperator {
		return false
	}
	for _, c := range l {
		if !unicode.IsPrint(c) {
			return false
		}
	}
	return true
}

// usedAssertions are the real-name assertion ids this process saw used
// (registered with, or refused by the database as used), until their
// assertions expire: a replayed assertion is refused before its Argon2id.
// The database stays the judge: an id unknown here is checked there.
type usedAssertions struct {
	mu    sync.Mutex
	ids   map[string]time.Time // id -> the assertion's expiry
	swept time.Time
}

// maxUsedAssertions bounds the ids remembered; beyond it, replays are
// left to the database.
const maxUsedAssertions = 1 << 16

func newUsedAssertions() *usedAssertions {
	return &usedAssertions{ids: map[string]time.Time{}}
}

// used reports whether id is known used and its assertion unexpired.
func (u *usedAssertions) used(id []byte, now time.Time) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	exp, ok := u.ids[string(id)]
	return ok && now.Before(exp)
}

// add remembers id as used until expires, forgetting the expired ones at
// most once a minute.
func (u *usedAssertions) add(id []byte, expires, now time.Time) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if now.Sub(u.swept) >= time.Minute {
		for k, exp := range u.ids {
			if !now.Before(exp) {
				delete(u.ids, k)
			}
		}
		u.swept = now
	}
	if len(u.ids) < maxUsedAssertions {
		u.ids[string(id)] = expires
	}
}
