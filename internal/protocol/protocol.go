// Package protocol is the language between a checkpoint and its
// authority (docs/sync.md): the messages, how a checkpoint signs its
// requests with its device key, and how the authority's answers are signed
// with a list key that the root-signed trust list names. The authority's
// server (internal/authority) and the checkpoint's sync (sync) import it.
package protocol

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
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
	PathDeclare     = "/v1/declare"
	PathAdminRevoke = "/v1/admin/revoke"
	PathAdminToken  = "/v1/admin/enroll-token"
	PathAdminStatus = "/v1/admin/status"
)

// ContentType of every body.
const ContentType = "application/cbor"

// Content types of the authority's signed answers (COSE header "typ").
const (
	TypeStatus   = "application/cp-status+cbor"
	TypeAck      = "application/cp-ack+cbor"
	TypeManifest = "application/cp-revocation-manifest+cbor"
)

// Request headers of a device's signed request.
const (
	HeaderDevice    = "Checkpoint-Device"
	HeaderNonce     = "Checkpoint-Nonce"
	HeaderSignature = "Checkpoint-Signature"
	HeaderAdmin     = "Authorization"
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

// Declaration is a holder's daily declaration, answered with a credential.
type Declaration struct {
	IDNumber  string `cbor:"1,keyasint"`
	Name      string `cbor:"2,keyasint"`
	Colour    string `cbor:"3,keyasint"`
	HolderKey []byte `cbor:"4,keyasint"`
}

// AdminRevoke revokes a subject's credentials issued at or before Before.
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

// Enc and Dec are the CBOR modes of the protocol.
var (
	Enc cbor.EncMode
	Dec cbor.DecMode
)

func init() {
	var err error
	opts := cbor.CoreDetEncOptions()
	opts.Time = cbor.TimeRFC3339Nano
	if Enc, err = opts.EncMode(); err != nil {
		panic(err)
	}
	if Dec, err = (cbor.DecOptions{DupMapKey: cbor.DupMapKeyEnforcedAPF, MaxArrayElements: 1 << 22,
		IndefLength: cbor.IndefLengthForbidden}).DecMode(); err != nil {
		panic(err)
	}
}

// signedBytes is what a device signs for a request.
func signedBytes(method, uri, nonce string, body []byte) []byte {
	sum := sha256.Sum256(body)
	return []byte("checkpoint-request-v1\n" + method + "\n" + uri + "\n" + nonce + "\n" + hex.EncodeToString(sum[:]))
}

// SignRequest adds the device's headers to r, whose body is body.
func SignRequest(r *http.Request, deviceID string, key ed25519.PrivateKey, nonce []byte, body []byte) {
	n := hex.EncodeToString(nonce)
	r.Header.Set(HeaderDevice, deviceID)
	r.Header.Set(HeaderNonce, n)
	r.Header.Set(HeaderSignature, base64.StdEncoding.EncodeToString(ed25519.Sign(key, signedBytes(r.Method, r.URL.RequestURI(), n, body))))
}

// ErrUnauthenticated is a request without a valid device signature.
var ErrUnauthenticated = errors.New("request not signed by an enrolled device")

// VerifyRequest checks a device's signature on r with body, looking up
// the device's key. It returns the device and the request's nonce.
func VerifyRequest(r *http.Request, body []byte, keyOf func(id string) (ed25519.PublicKey, error)) (string, []byte, error) {
	id := r.Header.Get(HeaderDevice)
	n := r.Header.Get(HeaderNonce)
	sig, err := base64.StdEncoding.DecodeString(r.Header.Get(HeaderSignature))
	if id == "" || err != nil {
		return "", nil, ErrUnauthenticated
	}
	nonce, err := hex.DecodeString(n)
	if err != nil || len(nonce) < 8 || len(nonce) > 64 {
		return "", nil, ErrUnauthenticated
	}
	key, err := keyOf(id)
	if err != nil {
		return "", nil, fmt.Errorf("%w: %v", ErrUnauthenticated, err)
	}
	if !ed25519.Verify(key, signedBytes(r.Method, r.URL.RequestURI(), n, body), sig) {
		return "", nil, ErrUnauthenticated
	}
	return id, nonce, nil
}
