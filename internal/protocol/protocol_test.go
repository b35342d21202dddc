package protocol

import (
	"crypto/ed25519"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/checkpointd/checkpoint/store"
)

var (
	testKey = ed25519.NewKeyFromSeed(make([]byte, 32))
	testAt  = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
)

func keyOf(id string) (ed25519.PublicKey, error) {
	if id != "dev-1" {
		return nil, errors.New("unknown device")
	}
	return testKey.Public().(ed25519.PublicKey), nil
}

func signed(body string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/v1/events?x=1", strings.NewReader(body))
	SignRequest(r, "dev-1", testKey, []byte("0123456789abcdef"), testAt, []byte(body))
	return r
}

// TestSignedRequest: the headers verify as signed, and changing any part
// of the request they cover makes them fail; the body is checked apart.
func TestSignedRequest(t *testing.T) {
	sr, err := VerifyRequest(signed("batch"), keyOf)
	if err != nil {
		t.Fatal(err)
	}
	if sr.Device != "dev-1" || string(sr.Nonce) != "0123456789abcdef" || !sr.Time.Equal(testAt) {
		t.Errorf("verified %+v", sr)
	}
	if sr.CheckBody([]byte("batch")) != nil || !errors.Is(sr.CheckBody([]byte("other")), ErrBodyMismatch) {
		t.Error("the body check does not tell the signed body from another")
	}
	for name, tamper := range map[string]func(r *http.Request){
		"method":    func(r *http.Request) { r.Method = http.MethodPut },
		"path":      func(r *http.Request) { r.URL.Path = "/v1/status" },
		"query":     func(r *http.Request) { r.URL.RawQuery = "x=2" },
		"time":      func(r *http.Request) { r.Header.Set(HeaderTime, "1795608001") },
		"nonce":     func(r *http.Request) { r.Header.Set(HeaderNonce, "00112233445566778899") },
		"body hash": func(r *http.Request) { r.Header.Set(HeaderContentSHA256, strings.Repeat("00", 32)) },
		"device":    func(r *http.Request) { r.Header.Set(HeaderDevice, "dev-2") },
		"signature": func(r *http.Request) { r.Header.Set(HeaderSignature, "AAAA") },
		"no time":   func(r *http.Request) { r.Header.Del(HeaderTime) },
		"short nonce": func(r *http.Request) {
			r.Header.Set(HeaderNonce, "0011")
		},
	} {
		r := signed("batch")
		tamper(r)
		if _, err := VerifyRequest(r, keyOf); !errors.Is(err, ErrUnauthenticated) {
			t.Errorf("%s changed: %v", name, err)
		}
	}
}

// TestSignedRequestAnyTime: a request signed at any time verifies, also
// before 1970 or far ahead, so that the authority can answer a box whose
// clock is that far off with its own time.
func TestSignedRequestAnyTime(t *testing.T) {
	for _, at := range []time.Time{time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC), time.Unix(0, 0), time.Unix(1<<41, 0)} {
		r := httptest.NewRequest(http.MethodGet, "/v1/status", nil)
		SignRequest(r, "dev-1", testKey, []byte("0123456789abcdef"), at, nil)
		sr, err := VerifyRequest(r, keyOf)
		if err != nil || !sr.Time.Equal(at) {
			t.Errorf("signed at %v: %v, time %v", at, err, sr.Time)
		}
	}
}

// FuzzVerifyRequest: headers from anyone never crash the check, and only
// the signed ones pass.
func FuzzVerifyRequest(f *testing.F) {
	r := signed("")
	f.Add(r.Header.Get(HeaderDevice), r.Header.Get(HeaderNonce), r.Header.Get(HeaderTime),
		r.Header.Get(HeaderContentSHA256), r.Header.Get(HeaderSignature))
	f.Add("", "zz", "-1", "", "")
	f.Fuzz(func(t *testing.T, device, nonce, at, sum, sig string) {
		r := httptest.NewRequest(http.MethodPost, "/v1/events?x=1", nil)
		r.Header.Set(HeaderDevice, device)
		r.Header.Set(HeaderNonce, nonce)
		r.Header.Set(HeaderTime, at)
		r.Header.Set(HeaderContentSHA256, sum)
		r.Header.Set(HeaderSignature, sig)
		good := signed("")
		same := device == good.Header.Get(HeaderDevice) && nonce == good.Header.Get(HeaderNonce) &&
			at == good.Header.Get(HeaderTime) && sum == good.Header.Get(HeaderContentSHA256) && sig == good.Header.Get(HeaderSignature)
		if _, err := VerifyRequest(r, keyOf); (err == nil) != same {
			t.Errorf("verify %v for headers %q %q %q %q %q", err, device, nonce, at, sum, sig)
		}
	})
}

// FuzzDecodeChunk: a chunk from the network is decoded or refused, never
// crashes, and what it decodes to survives encoding and decoding again.
func FuzzDecodeChunk(f *testing.F) {
	var s [store.SubjectSize]byte
	good, _ := EncodeChunk([]store.RevEntry{{Subject: s, Before: 1, DropAfter: 2}, {Subject: s, Tombstone: true}})
	f.Add(good)
	f.Add([]byte{0x81, 0x81, 0x40})
	f.Fuzz(func(t *testing.T, b []byte) {
		es, err := DecodeChunk(b)
		if err != nil {
			return
		}
		again, err := EncodeChunk(es)
		if err != nil {
			t.Fatalf("decoded entries do not encode: %v", err)
		}
		back, err := DecodeChunk(again)
		if err != nil || !slices.Equal(back, es) {
			t.Errorf("entries changed on the way round: %v, %v", es, back)
		}
	})
}

// TestHolderRequests: a holder's request verifies as a holder's, with its
// own header; a device's signature over the same request does not pass
// for a holder's, nor a holder's for a device's.
func TestHolderRequests(t *testing.T) {
	holderKeyOf := func(id string) (ed25519.PublicKey, error) {
		if id != "holder-1" {
			return nil, errors.New("unknown holder")
		}
		return testKey.Public().(ed25519.PublicKey), nil
	}
	r := httptest.NewRequest(http.MethodPost, PathDeclare, strings.NewReader("form"))
	SignHolderRequest(r, "holder-1", testKey, []byte("0123456789abcdef"), testAt, []byte("form"))
	sr, err := VerifyHolderRequest(r, holderKeyOf)
	if err != nil || sr.Device != "holder-1" || sr.CheckBody([]byte("form")) != nil {
		t.Fatalf("holder request: %+v %v", sr, err)
	}
	if _, err := VerifyRequest(r, keyOf); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("a holder's request verified as a device's: %v", err)
	}
	// The same key signing as a device, the header renamed: refused.
	d := signed("form")
	d.Header.Set(HeaderHolder, "holder-1")
	if _, err := VerifyHolderRequest(d, holderKeyOf); !errors.Is(err, ErrHolderUnauthenticated) {
		t.Errorf("a device's signature passed for a holder's: %v", err)
	}
	r.Header.Set(HeaderHolder, "holder-2")
	if _, err := VerifyHolderRequest(r, holderKeyOf); !errors.Is(err, ErrHolderUnauthenticated) {
		t.Errorf("another holder: %v", err)
	}
}
