package credential_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	cose "github.com/veraison/go-cose"

	"github.com/checkpointd/checkpoint/internal/credential"
	"github.com/checkpointd/checkpoint/internal/credential/credentialtest"
	"github.com/checkpointd/checkpoint/internal/qrcode"
	"github.com/checkpointd/checkpoint/internal/trust"
)

var update = flag.Bool("update", false, "rewrite the golden test vectors in testdata/vectors")

const vectorDir = "../../testdata/vectors"

// Vector is one test vector of docs/credential.md: inputs (test keys only),
// every intermediate value, and the QR text.
type Vector struct {
	Description string            `json:"description"`
	Keys        map[string]string `json:"keys"`
	Inputs      map[string]string `json:"inputs"`
	Derived     map[string]string `json:"derived,omitempty"`
	Steps       []Step            `json:"steps"`
	QRText      string            `json:"qr_text,omitempty"`
	QRVersion   int               `json:"qr_version_at_level_m,omitempty"`
	Decoded     *Decoded          `json:"decoded,omitempty"`
}

// Step is one signed object: its protected header, payload, the
// Sig_structure its signature covers, and the whole COSE_Sign1.
type Step struct {
	Name         string `json:"name"`
	Protected    string `json:"protected_hex"`
	Payload      string `json:"payload_hex"`
	SigStructure string `json:"sig_structure_hex"`
	Signature    string `json:"signature_hex"`
	COSE         string `json:"cose_sign1_hex"`
	Size         int    `json:"cose_sign1_bytes"`
}

// Decoded is what a verifier reads from the QR text.
type Decoded struct {
	KeyID       string     `json:"key_id"`
	Issuer      string     `json:"issuer"`
	ID          string     `json:"credential_id"`
	Subject     string     `json:"subject"`
	Status      string     `json:"status"`
	Region      string     `json:"region"`
	MaskedName  string     `json:"masked_name"`
	IDHash      string     `json:"id_hash"`
	IssuedAt    time.Time  `json:"issued_at"`
	Expires     time.Time  `json:"expires"`
	HolderKey   string     `json:"holder_key,omitempty"`
	Static      bool       `json:"static"`
	PresentedAt *time.Time `json:"presented_at,omitempty"`
}

func decoded(c *credential.Code) *Decoded {
	d := &Decoded{
		KeyID: hex.EncodeToString(c.Credential.KeyID), Issuer: c.Credential.Issuer,
		ID: hex.EncodeToString(c.Credential.ID), Subject: hex.EncodeToString(c.Credential.Subject),
		Status: c.Credential.Status.String(), Region: c.Credential.Region,
		MaskedName: c.Credential.MaskedName,
		IDHash:     hex.EncodeToString(c.Credential.IDHash),
		IssuedAt:   c.Credential.IssuedAt, Expires: c.Credential.Expires,
		HolderKey: hex.EncodeToString(c.Credential.HolderKey), Static: c.Credential.Static(),
	}
	if c.Presented {
		t := c.PresentedAt
		d.PresentedAt = &t
	}
	return d
}

func step(t *testing.T, name string, raw []byte) Step {
	t.Helper()
	var m cose.UntaggedSign1Message
	if err := m.UnmarshalCBOR(raw); err != nil {
		t.Fatal(err)
	}
	var prot []byte
	if err := cbor.Unmarshal(m.Headers.RawProtected, &prot); err != nil {
		t.Fatal(err)
	}
	sig, err := cbor.Marshal([]any{"Signature1", prot, []byte{}, m.Payload})
	if err != nil {
		t.Fatal(err)
	}
	return Step{
		Name: name, Protected: hex.EncodeToString(prot), Payload: hex.EncodeToString(m.Payload),
		SigStructure: hex.EncodeToString(sig), Signature: hex.EncodeToString(m.Signature),
		COSE: hex.EncodeToString(raw), Size: len(raw),
	}
}

func seedHex(k ed25519.PrivateKey) string { return hex.EncodeToString(k.Seed()) }
func pubHex(k ed25519.PrivateKey) string  { return hex.EncodeToString(k.Public().(ed25519.PublicKey)) }

func buildVectors(t *testing.T) map[string]*Vector {
	f := credentialtest.New()
	c := f.Credential(nil)
	cred := f.Issue(c)
	at := f.Now.Add(-5 * time.Second)
	pres, err := credential.Present(cred, f.Holder, at)
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]string{
		"issuer_seed": seedHex(f.Issuer), "issuer_public": pubHex(f.Issuer),
		"issuer_key_id": hex.EncodeToString(credential.KeyIDOf(f.Issuer.Public().(ed25519.PublicKey))),
		"holder_seed":   seedHex(f.Holder), "holder_public": pubHex(f.Holder),
		"pseudonym_key": hex.EncodeToString(f.PseudonymKey),
	}
	inputs := map[string]string{
		"id_number": credentialtest.IDNumber, "name": credentialtest.Name, "issuer": c.Issuer,
		"region": c.Region, "status": c.Status.String(), "credential_id": hex.EncodeToString(c.ID),
		"issued_at": c.IssuedAt.Format(time.RFC3339), "expires": c.Expires.Format(time.RFC3339),
	}
	derived := map[string]string{
		"subject": hex.EncodeToString(c.Subject), "id_hash": hex.EncodeToString(c.IDHash),
		"masked_name": c.MaskedName,
	}

	vs := map[string]*Vector{}
	presInputs := map[string]string{"presented_at": at.Format(time.RFC3339)}
	for k, v := range inputs {
		presInputs[k] = v
	}
	vs["presentation-green"] = &Vector{
		Description: "A phone presentation of a green credential: the issuer's credential, then the holder's presentation of it five seconds before the verification time 2026-11-25T12:00:00Z.",
		Keys:        keys, Inputs: presInputs, Derived: derived,
		Steps:  []Step{step(t, "credential", cred), step(t, "presentation", pres)},
		QRText: credential.EncodeText(pres),
	}

	sc := f.Credential(func(c *credential.Credential) { c.HolderKey = nil; c.Expires = f.Now.Add(7 * 24 * time.Hour) })
	static := f.Issue(sc)
	sKeys := map[string]string{"issuer_seed": keys["issuer_seed"], "issuer_public": keys["issuer_public"],
		"issuer_key_id": keys["issuer_key_id"], "pseudonym_key": keys["pseudonym_key"]}
	sInputs := map[string]string{}
	for k, v := range inputs {
		sInputs[k] = v
	}
	sInputs["expires"] = sc.Expires.Format(time.RFC3339)
	vs["static-paper"] = &Vector{
		Description: "A static paper code: a credential without a holder key, printed as it is. Verifiers mark it static and ask for an ID check.",
		Keys:        sKeys, Inputs: sInputs, Derived: derived,
		Steps:  []Step{step(t, "credential", static)},
		QRText: credential.EncodeText(static),
	}

	rKeys := map[string]string{"root_seed": seedHex(f.Root), "root_public": pubHex(f.Root),
		"root_key_id": hex.EncodeToString(credential.KeyIDOf(f.Root.Public().(ed25519.PublicKey)))}
	vs["trust-list"] = &Vector{
		Description: "The trust list of these vectors, signed by the root key: one issuer, GD, for regions starting 44, during 2026.",
		Keys:        rKeys,
		Inputs:      map[string]string{"version": "1", "issued_at": "2026-01-01T00:00:00Z", "expires": "2026-12-31T00:00:00Z"},
		Steps:       []Step{step(t, "trust list", f.TrustBytes)},
	}
	rev, err := trust.SignRevocations(&trust.Revocations{
		Version: 7, IssuedAt: f.Now.Add(-time.Hour), Expires: f.Now.Add(6 * 24 * time.Hour),
		Entries: []trust.Revocation{{Subject: c.Subject, Before: f.Now.Add(-30 * time.Minute), DropAfter: f.Now.Add(30 * 24 * time.Hour)}},
	}, f.Root)
	if err != nil {
		t.Fatal(err)
	}
	vs["revocation-list"] = &Vector{
		Description: "A revocation list, signed by the root key, revoking every credential of the vectors' subject issued before 11:30 UTC (so the green credential, issued 11:00, is revoked).",
		Keys:        rKeys,
		Inputs: map[string]string{"version": "7", "subject": derived["subject"],
			"before": f.Now.Add(-30 * time.Minute).Format(time.RFC3339)},
		Steps: []Step{step(t, "revocation list", rev)},
	}

	for _, v := range vs {
		if v.QRText == "" {
			continue
		}
		code, err := credential.ParseText(v.QRText)
		if err != nil {
			t.Fatal(err)
		}
		v.Decoded = decoded(code)
		v.QRVersion, err = qrcode.Version(v.QRText)
		if err != nil {
			t.Fatal(err)
		}
	}
	return vs
}

// TestVectors checks the committed vectors two ways: the code must produce
// them byte for byte (Ed25519 and the deterministic CBOR encoding leave no
// freedom), and the committed QR texts must parse to the committed fields.
func TestVectors(t *testing.T) {
	vs := buildVectors(t)
	for name, v := range vs {
		path := filepath.Join(vectorDir, name+".json")
		got, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, '\n')
		if *update {
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go test ./internal/credential -update to write it)", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: the code no longer produces the committed vector", path)
		}
		var committed Vector
		if err := json.Unmarshal(want, &committed); err != nil {
			t.Fatal(err)
		}
		if committed.QRText == "" {
			continue
		}
		code, err := credential.ParseText(committed.QRText)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		issuer, _ := hex.DecodeString(committed.Keys["issuer_public"])
		if err := code.VerifyIssuer(issuer); err != nil {
			t.Errorf("%s: issuer signature: %v", path, err)
		}
		if code.Presented {
			if err := code.VerifyHolder(); err != nil {
				t.Errorf("%s: holder signature: %v", path, err)
			}
		}
		d1, _ := json.Marshal(decoded(code))
		d2, _ := json.Marshal(committed.Decoded)
		if !bytes.Equal(d1, d2) {
			t.Errorf("%s: decoded fields\n got %s\nwant %s", path, d1, d2)
		}
	}
}
