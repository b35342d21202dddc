// Package protocol is the language between a checkpoint and its
// authority (docs/sync.md), and between a holder's phone and the
// authority (docs/authority.md): the messages, how a checkpoint signs its
// requests with its device key and a phone its requests with its holder
// key, and how the authority's answers are signed with a list key that
// the root-signed trust list names. The authority's server
// (internal/authority), the checkpoint's sync (sync) and the tools
// (cmd/authority, cmd/holder) import it.
package protocol

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/checkpointd/checkpoint/store"
)

// Paths of the API, version 1.
const (
	PathEnroll      = "/v1/enroll"
	PathStatus      = "/v1/status"
	PathEvents      = "/v1/events"
	PathTrust       = "/v1/trust"
	PathManifest    = "/v1/revocations/manifest"
	PathChunk       = "/v1/revocations/chunk"
	PathAdminRevoke = "/v1/admin/revoke"
	PathAdminToken  = "/v1/admin/enroll-token"
	PathAdminStatus = "/v1/admin/status"

	// A holder's phone (docs/authority.md).
	PathRegister     = "/v1/register"
	PathDeclare      = "/v1/declare"
	PathHolderStatus = "/v1/holder/status"
	// The operator's and the health departments'.
	PathAdminRegistrationCode = "/v1/admin/registration-code"
	PathAdminFeed             = "/v1/admin/feed"
)

// ContentType of every body.
const ContentType = "application/cbor"

// Content types of the authority's signed answers (COSE header "typ").
const (
	TypeStatus   = "application/cp-status+cbor"
	TypeAck      = "application/cp-ack+cbor"
	TypeManifest = "application/cp-revocation-manifest+cbor"
)

// Request headers of a device's signed request (docs/sync.md).
const (
	HeaderDevice        = "Checkpoint-Device"
	HeaderNonce         = "Checkpoint-Nonce"
	HeaderTime          = "Checkpoint-Time"
	HeaderContentSHA256 = "Checkpoint-Content-SHA256"
	HeaderSignature     = "Checkpoint-Signature"
	HeaderAdmin         = "Authorization"
	// HeaderServerTime comes with a 401 for a request whose time was
	// outside the authority's window: the authority's time, unsigned, for
	// dating the next request and nothing else.
	HeaderServerTime = "Checkpoint-Server-Time"
	// HeaderHolder names the signer of a holder's request instead of
	// HeaderDevice: the holder key (hex) on a registration, the subject
	// pseudonym the registration returned (hex) after it.
	HeaderHolder = "Checkpoint-Holder"
	// HeaderNextDeclaration comes with a 429 for a declaration made too
	// soon: when the next one is allowed (RFC 3339).
	HeaderNextDeclaration = "Checkpoint-Next-Declaration"
)

// EnrollRequest enrols a checkpoint with a one-time token from the
// authority's operator.
type EnrollRequest struct {
	Name      string `cbor:"1,keyasint"`
	DeviceKey []byte `cbor:"2,keyasint"`
	Token     string `cbor:"3,keyasint"`
}

// EnrollResponse names the enrolled device.
type EnrollResponse struct {
	DeviceID string `cbor:"1,keyasint"`
}

// Status answers the status call, the checkpoint's connectivity probe and
// clock anchor. It echoes the request's nonce, so an old answer cannot be
// replayed to set the checkpoint's clock back.
type Status struct {
	ServerTime        time.Time `cbor:"1,keyasint"`
	Nonce             []byte    `cbor:"2,keyasint"`
	DeviceID          string    `cbor:"3,keyasint"`
	Mark              uint64    `cbor:"4,keyasint"`
	TrustVersion      uint64    `cbor:"5,keyasint"`
	RevocationVersion uint64    `cbor:"6,keyasint"`
}

// EventBatch uploads events From..To (inclusive) in their stored encoding.
type EventBatch struct {
	DeviceID string   `cbor:"1,keyasint"`
	From     uint64   `cbor:"2,keyasint"`
	To       uint64   `cbor:"3,keyasint"`
	Events   [][]byte `cbor:"4,keyasint"`
	// Purged declares the events before From that a supervisor purged
	// at the checkpoint before the authority held them.
	Purged *Purged `cbor:"5,keyasint,omitempty"`
}

// Purged is a range of events purged at the checkpoint before upload:
// events From to To; Last is event To's hash, which the batch's first
// event links to.
type Purged struct {
	From uint64 `cbor:"1,keyasint"`
	To   uint64 `cbor:"2,keyasint"`
	Last []byte `cbor:"3,keyasint"`
}

// Ack answers an upload with the highest sequence number the authority
// holds for the device with no gap before it.
type Ack struct {
	DeviceID string `cbor:"1,keyasint"`
	Nonce    []byte `cbor:"2,keyasint"`
	Mark     uint64 `cbor:"3,keyasint"`
}

// Manifest describes revocation version Version for a checkpoint at
// Since: the changes since then (or the whole set, Snapshot) in chunks,
// each with its hash, and the count and digest of the set the checkpoint
// must end with. The authority signs it afresh on each request, so an
// unchanged version gets a new expiry.
type Manifest struct {
	Version  uint64          `cbor:"1,keyasint"`
	Since    uint64          `cbor:"2,keyasint"`
	Snapshot bool            `cbor:"3,keyasint"`
	IssuedAt time.Time       `cbor:"4,keyasint"`
	Expires  time.Time       `cbor:"5,keyasint"`
	Set      store.SetDigest `cbor:"6,keyasint"`
	Chunks   []ChunkInfo     `cbor:"7,keyasint"`
}

// ChunkInfo is one chunk's hash and size.
type ChunkInfo struct {
	Hash    [32]byte `cbor:"1,keyasint"`
	Entries int      `cbor:"2,keyasint"`
}

// AdminRegistrationCode asks for a one-time registration code for the
// person with this ID number and name, whose ID card the operator (an
// office, named by Operator for the audit) has checked.
type AdminRegistrationCode struct {
	IDNumber string `cbor:"1,keyasint"`
	Name     string `cbor:"2,keyasint"`
	Operator string `cbor:"3,keyasint"`
}

// AdminRegistrationCodeResponse is the code to give the person, and when
// it expires.
type AdminRegistrationCodeResponse struct {
	Code    string    `cbor:"1,keyasint"`
	Expires time.Time `cbor:"2,keyasint"`
}

// RegisterRequest registers the holder key that signs the request for
// the person with this ID number and name, with one proof of who they
// are: a registration code, or a real-name service's signed assertion.
type RegisterRequest struct {
	IDNumber  string `cbor:"1,keyasint"`
	Name      string `cbor:"2,keyasint"`
	HolderKey []byte `cbor:"3,keyasint"`
	Code      string `cbor:"4,keyasint,omitempty"`
	Assertion []byte `cbor:"5,keyasint,omitempty"`
}

// RegisterResponse names the holder's subject pseudonym, which signs its
// later requests; Replaced says another phone's key was replaced (and its
// credentials revoked).
type RegisterResponse struct {
	Subject    []byte    `cbor:"1,keyasint"`
	Registered time.Time `cbor:"2,keyasint"`
	Replaced   bool      `cbor:"3,keyasint"`
}

// Declaration is a holder's declaration, signed by the registered holder
// key. It carries the form and nothing else: no colour, no name, no ID
// number (DecStrict refuses any other field).
type Declaration struct {
	Fever    bool    `cbor:"1,keyasint"`
	Symptoms bool    `cbor:"2,keyasint"`
	Contact  bool    `cbor:"3,keyasint"` // contact with a case
	Travel   []Visit `cbor:"4,keyasint"`
}

// Visit is a place a holder declares being at: a region code (GB/T 2260,
// 2, 4, 6, 9 or 12 digits) on a day (YYYY-MM-DD, China Standard Time).
type Visit struct {
	Region string `cbor:"1,keyasint"`
	Date   string `cbor:"2,keyasint"`
}

// DeclarationResponse is the credential the declaration got, with the
// holder's status.
type DeclarationResponse struct {
	Credential []byte       `cbor:"1,keyasint"`
	Status     HolderStatus `cbor:"2,keyasint"`
}

// HolderStatus is what the authority tells a holder about their colour:
// the reason codes (never the data behind them), since when, the end of
// the quarantine, when they may next declare (zero: now), and the last
// changes.
type HolderStatus struct {
	Subject         []byte         `cbor:"1,keyasint" json:"-"`
	Registered      time.Time      `cbor:"2,keyasint" json:"registered"`
	Colour          string         `cbor:"3,keyasint" json:"colour"`
	Reasons         []string       `cbor:"4,keyasint" json:"reasons"`
	Since           time.Time      `cbor:"5,keyasint" json:"since"`
	QuarantineEnd   time.Time      `cbor:"6,keyasint" json:"quarantine_end,omitzero"`
	NextDeclaration time.Time      `cbor:"7,keyasint" json:"next_declaration,omitzero"`
	History         []ColourChange `cbor:"8,keyasint" json:"history"`
}

// ColourChange is a change of a holder's colour and why.
type ColourChange struct {
	At            time.Time `cbor:"1,keyasint" json:"at"`
	Colour        string    `cbor:"2,keyasint" json:"colour"`
	Reasons       []string  `cbor:"3,keyasint" json:"reasons"`
	QuarantineEnd time.Time `cbor:"4,keyasint" json:"quarantine_end,omitzero"`
	Cause         string    `cbor:"5,keyasint" json:"cause"`
}

// FeedResponse answers a feed: applied now, or applied before (the same
// version with the same content: nothing done); its rows, the subjects it
// named and how many of their colours it changed; the revocation version
// its changes made (0: none).
type FeedResponse struct {
	Applied           bool   `cbor:"1,keyasint" json:"applied"`
	Rows              int    `cbor:"2,keyasint" json:"rows"`
	Subjects          int    `cbor:"3,keyasint" json:"subjects"`
	Changed           int    `cbor:"4,keyasint" json:"changed"`
	RevocationVersion uint64 `cbor:"5,keyasint" json:"revocation_version"`
}

// AdminRevoke revokes a subject's credentials issued at or before Before,
// as given. A zero Before is now, decided by the authority as it adds the
// revocation: the later of now and the second after the subject's cut-off
// held (docs/authority.md, the same-second rule).
type AdminRevoke struct {
	IDNumber string    `cbor:"1,keyasint"`
	Before   time.Time `cbor:"2,keyasint"`
}

// AdminToken asks for a one-time enrolment token.
type AdminToken struct {
	Name string `cbor:"1,keyasint"`
}

// AdminStatus is the authority's view of its checkpoints and revocations.
type AdminStatus struct {
	RevocationVersion uint64       `cbor:"1,keyasint" json:"revocation_version"`
	Revocations       uint64       `cbor:"2,keyasint" json:"revocations"`
	Devices           []DeviceInfo `cbor:"3,keyasint" json:"devices"`
}

// DeviceInfo is one enrolled checkpoint.
type DeviceInfo struct {
	ID       string    `cbor:"1,keyasint" json:"id"`
	Name     string    `cbor:"2,keyasint" json:"name"`
	Enrolled time.Time `cbor:"3,keyasint" json:"enrolled"`
	Mark     uint64    `cbor:"4,keyasint" json:"events_held"`
}

// AdminTokenResponse carries the token.
type AdminTokenResponse struct {
	Token string `cbor:"1,keyasint"`
}

// EncodeChunk encodes revocation entries for the wire: a CBOR array of
// entries, each [subject, before, drop-after] or, for a removal,
// [subject].
func EncodeChunk(es []store.RevEntry) ([]byte, error) {
	out := make([][]any, len(es))
	for i, e := range es {
		if e.Tombstone {
			out[i] = []any{e.Subject[:]}
		} else {
			out[i] = []any{e.Subject[:], e.Before, e.DropAfter}
		}
	}
	return Enc.Marshal(out)
}

// DecodeChunk decodes a chunk.
func DecodeChunk(b []byte) ([]store.RevEntry, error) {
	var raw [][]cbor.RawMessage
	if err := Dec.Unmarshal(b, &raw); err != nil {
		return nil, err
	}
	out := make([]store.RevEntry, len(raw))
	for i, r := range raw {
		var s []byte
		if len(r) != 1 && len(r) != 3 {
			return nil, fmt.Errorf("chunk entry %d has %d fields", i, len(r))
		}
		if err := Dec.Unmarshal(r[0], &s); err != nil || len(s) != store.SubjectSize {
			return nil, fmt.Errorf("chunk entry %d: bad subject", i)
		}
		out[i].Subject = [store.SubjectSize]byte(s)
		if len(r) == 1 {
			out[i].Tombstone = true
			continue
		}
		if err := Dec.Unmarshal(r[1], &out[i].Before); err != nil {
			return nil, err
		}
		if err := Dec.Unmarshal(r[2], &out[i].DropAfter); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Enc and Dec are the CBOR modes of the protocol; DecStrict also refuses
// fields the message does not define.
var (
	Enc       cbor.EncMode
	Dec       cbor.DecMode
	DecStrict cbor.DecMode
)

func init() {
	var err error
	opts := cbor.CoreDetEncOptions()
	opts.Time = cbor.TimeRFC3339Nano
	if Enc, err = opts.EncMode(); err != nil {
		panic(err)
	}
	dec := cbor.DecOptions{DupMapKey: cbor.DupMapKeyEnforcedAPF, MaxArrayElements: 1 << 22,
		IndefLength: cbor.IndefLengthForbidden}
	if Dec, err = dec.DecMode(); err != nil {
		panic(err)
	}
	dec.ExtraReturnErrors = cbor.ExtraDecErrorUnknownField
	if DecStrict, err = dec.DecMode(); err != nil {
		panic(err)
	}
}

// The request-signing schemes' names, the first line of what is signed:
// a device's signature cannot pass for a holder's.
const (
	requestScheme = "checkpoint-request-v2"
	holderScheme  = "checkpoint-holder-request-v1"
)

// signedBytes is what a device or holder signs for a request: everything
// the authority needs to check before it reads the body, which the
// Content-SHA256 header then binds.
func signedBytes(scheme, method, uri, at, nonce, contentHash string) []byte {
	return []byte(scheme + "\n" + method + "\n" + uri + "\n" + at + "\n" + nonce + "\n" + contentHash)
}

// SignRequest adds the device's headers to r, whose body is body: the
// device, a fresh nonce, the time at (the device's best idea of the
// authority's time), the body's SHA-256, and the signature over them.
func SignRequest(r *http.Request, deviceID string, key ed25519.PrivateKey, nonce []byte, at time.Time, body []byte) {
	sign(r, HeaderDevice, requestScheme, deviceID, key, nonce, at, body)
}

// SignHolderRequest adds a holder's headers to r, as SignRequest does a
// device's: holder is the hex holder key on a registration, the hex
// subject pseudonym after it.
func SignHolderRequest(r *http.Request, holder string, key ed25519.PrivateKey, nonce []byte, at time.Time, body []byte) {
	sign(r, HeaderHolder, holderScheme, holder, key, nonce, at, body)
}

func sign(r *http.Request, idHeader, scheme, id string, key ed25519.PrivateKey, nonce []byte, at time.Time, body []byte) {
	n := hex.EncodeToString(nonce)
	t := strconv.FormatInt(at.Unix(), 10)
	sum := sha256.Sum256(body)
	h := hex.EncodeToString(sum[:])
	r.Header.Set(idHeader, id)
	r.Header.Set(HeaderNonce, n)
	r.Header.Set(HeaderTime, t)
	r.Header.Set(HeaderContentSHA256, h)
	r.Header.Set(HeaderSignature, base64.StdEncoding.EncodeToString(ed25519.Sign(key, signedBytes(scheme, r.Method, r.URL.RequestURI(), t, n, h))))
}

// ErrUnauthenticated is a request without a valid device signature.
var ErrUnauthenticated = errors.New("request not signed by an enrolled device")

// ErrHolderUnauthenticated is a holder's request without a valid
// signature of the holder key registered (or, on a registration, of the
// key it names).
var ErrHolderUnauthenticated = errors.New("request not signed by the registered holder key")

// ErrBodyMismatch is a body that is not the one the device signed.
var ErrBodyMismatch = errors.New("request body does not match its signed hash")

// SignedRequest is what a device's (or a holder's) signed headers say.
type SignedRequest struct {
	Device string    // the signer: a device id, or a holder's HeaderHolder
	Nonce  []byte    // the request's nonce
	Time   time.Time // the signer's time at signing
	body   [32]byte  // the SHA-256 the signer signed for the body
}

// VerifyRequest checks a device's signature on r's headers, looking up
// the device's key, without reading the body: the authority authenticates
// a request before it reads or stores anything the request carries.
// CheckBody then checks the body against the signed hash. The caller
// checks the time and the nonce (replays).
func VerifyRequest(r *http.Request, keyOf func(id string) (ed25519.PublicKey, error)) (SignedRequest, error) {
	return verify(r, HeaderDevice, requestScheme, ErrUnauthenticated, keyOf)
}

// VerifyHolderRequest checks a holder's signature on r's headers as
// VerifyRequest does a device's; keyOf gets the HeaderHolder value.
func VerifyHolderRequest(r *http.Request, keyOf func(id string) (ed25519.PublicKey, error)) (SignedRequest, error) {
	return verify(r, HeaderHolder, holderScheme, ErrHolderUnauthenticated, keyOf)
}

func verify(r *http.Request, idHeader, scheme string, fail error, keyOf func(id string) (ed25519.PublicKey, error)) (SignedRequest, error) {
	var sr SignedRequest
	sr.Device = r.Header.Get(idHeader)
	n, t, h := r.Header.Get(HeaderNonce), r.Header.Get(HeaderTime), r.Header.Get(HeaderContentSHA256)
	sig, err := base64.StdEncoding.DecodeString(r.Header.Get(HeaderSignature))
	if sr.Device == "" || len(sr.Device) > 64 || err != nil || len(sig) != ed25519.SignatureSize {
		return sr, fail
	}
	if sr.Nonce, err = hex.DecodeString(n); err != nil || len(sr.Nonce) < 8 || len(sr.Nonce) > 64 {
		return sr, fail
	}
	// Any time parses, before 1970 too: a device whose clock is that far
	// off is told the authority's time, not that its signature failed.
	unix, err := strconv.ParseInt(t, 10, 64)
	if err != nil {
		return sr, fail
	}
	sr.Time = time.Unix(unix, 0).UTC()
	sum, err := hex.DecodeString(h)
	if err != nil || len(sum) != sha256.Size {
		return sr, fail
	}
	sr.body = [32]byte(sum)
	key, err := keyOf(sr.Device)
	if err != nil {
		return sr, fmt.Errorf("%w: %v", fail, err)
	}
	if len(key) != ed25519.PublicKeySize || !ed25519.Verify(key, signedBytes(scheme, r.Method, r.URL.RequestURI(), t, n, h), sig) {
		return sr, fail
	}
	return sr, nil
}

// CheckBody reports whether body is the one the device signed.
func (sr SignedRequest) CheckBody(body []byte) error {
	if sha256.Sum256(body) != sr.body {
		return ErrBodyMismatch
	}
	return nil
}
