package export

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/checkpointd/checkpoint/store"
)

var t0 = time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)

// chain makes n linked events, as a box would record them.
func chain(t *testing.T, n int) []store.Event {
	t.Helper()
	var out []store.Event
	var prev [32]byte
	for i := 1; i <= n; i++ {
		e := store.Event{Seq: uint64(i), Time: t0.Add(time.Duration(i) * time.Minute), Kind: "passage", Decision: "pass",
			Status: "green", Lane: "north", Gate: "east-gate", Temperature: 366, Subject: []byte{byte(i), 2, 3},
			MaskedName: "张*丰", Prev: prev, Reasons: []string{"id_only"},
			Actions: []store.ActionRecord{{Kind: "override", Guard: "guard-1", At: t0, Outcome: "pass", Reason: "queue"}}}
		if i%3 == 0 {
			e.Decision, e.Reasons = "refuse", []string{"fever", "status_red"}
		}
		h, err := store.ChainHash(e)
		if err != nil {
			t.Fatal(err)
		}
		e.Hash, prev = h, h
		out = append(out, e)
	}
	return out
}

func write(t *testing.T, f Format, evs []store.Event, key ed25519.PrivateKey, filter string) ([]byte, []byte) {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, f)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if err := w.Write(e); err != nil {
			t.Fatal(err)
		}
	}
	m, err := w.Finish(Meta{Checkpoint: "east-gate", Filter: filter, Who: "wang", Created: t0})
	if err != nil {
		t.Fatal(err)
	}
	signed, err := Sign(m, key)
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), signed
}

// TestCheck: an export checks against its manifest; a changed, removed or
// added row, a manifest signed by another key, or a changed manifest do
// not.
func TestCheck(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(nil)
	_, other, _ := ed25519.GenerateKey(nil)
	pub := key.Public().(ed25519.PublicKey)
	evs := chain(t, 40)
	for _, f := range []Format{CSV, JSONL} {
		data, signed := write(t, f, evs, key, "")
		m, err := Check(bytes.NewReader(data), signed, pub)
		if err != nil || m.Count != 40 || m.FirstSeq != 1 || m.LastSeq != 40 {
			t.Fatalf("%s: %+v, %v", f, m, err)
		}
		if !strings.Contains(string(data), "张*丰") {
			t.Errorf("%s: the masked name is not in the export", f)
		}
		lines := strings.SplitAfter(string(data), "\n")
		head := 0
		if f == CSV {
			head = 1
		}
		row := func(i int) string { return lines[head+i] } // event i+1
		cases := map[string]string{
			"changed":  strings.Join(lines[:head+5], "") + strings.Replace(row(5), "pass", "refuse", 1) + strings.Join(lines[head+6:], ""),
			"removed":  strings.Join(lines[:head+5], "") + strings.Join(lines[head+6:], ""),
			"added":    strings.Join(lines[:head+5], "") + row(5) + strings.Join(lines[head+5:], ""),
			"last cut": strings.Join(lines[:len(lines)-2], ""),
			"reversed": strings.Join(lines[:head], "") + row(1) + row(0) + strings.Join(lines[head+2:], ""),
		}
		for name, bad := range cases {
			if bad == string(data) {
				t.Fatalf("%s %s: the case changes nothing", f, name)
			}
			if _, err := Check(strings.NewReader(bad), signed, pub); !errors.Is(err, ErrCheck) {
				t.Errorf("%s, a row %s: %v, want ErrCheck", f, name, err)
			}
		}
		if _, err := Check(bytes.NewReader(data), signed, other.Public().(ed25519.PublicKey)); !errors.Is(err, ErrCheck) {
			t.Errorf("%s: checked with another box's key: %v", f, err)
		}
		forged := bytes.Replace(signed, []byte(`"count": 40`), []byte(`"count": 39`), 1)
		if bytes.Equal(forged, signed) {
			t.Fatal("the forged manifest is the same")
		}
		if _, err := Check(bytes.NewReader(data), forged, pub); !errors.Is(err, ErrCheck) {
			t.Errorf("%s: a changed manifest: %v", f, err)
		}
	}
	// A filtered export holds chosen events, not a contiguous run: rows
	// must still rise, and the digest covers the rest.
	var refusals []store.Event
	for _, e := range evs {
		if e.Decision == "refuse" {
			refusals = append(refusals, e)
		}
	}
	data, signed := write(t, CSV, refusals, key, "outcome=refuse")
	if m, err := Check(bytes.NewReader(data), signed, pub); err != nil || m.Count != 13 {
		t.Errorf("filtered export: %+v, %v", m, err)
	}
}

// TestEncrypt: an encrypted export opens with the supervisor's key only,
// and a cut-off, changed or extended file does not open.
func TestEncrypt(t *testing.T) {
	dir := t.TempDir()
	priv, pub := filepath.Join(dir, "wang.key"), filepath.Join(dir, "wang.pub")
	if err := GenerateBoxKey(priv, pub); err != nil {
		t.Fatal(err)
	}
	if err := GenerateBoxKey(priv, pub); err == nil {
		t.Error("a second GenerateBoxKey overwrote the key")
	}
	to, err := ReadBoxPublic(pub)
	if err != nil {
		t.Fatal(err)
	}
	mine, err := ReadBoxPrivate(priv)
	if err != nil {
		t.Fatal(err)
	}
	_, stranger, _ := naclKey(t)
	plain := bytes.Repeat([]byte("seq,time,kind 张*丰\n"), 20000) // several chunks
	for _, size := range []int{0, 10, chunkSize, len(plain)} {
		var sealed bytes.Buffer
		w, err := Encrypt(&sealed, to)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(plain[:size])
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if !IsEncrypted(sealed.Bytes()) || size > 0 && bytes.Contains(sealed.Bytes(), plain[:min(size, 19)]) {
			t.Fatalf("size %d: not sealed", size)
		}
		open := func(b []byte, k *[32]byte) ([]byte, error) {
			r, err := Decrypt(bytes.NewReader(b), k)
			if err != nil {
				return nil, err
			}
			return io.ReadAll(r)
		}
		if got, err := open(sealed.Bytes(), mine); err != nil || !bytes.Equal(got, plain[:size]) {
			t.Fatalf("size %d: %d bytes, %v", size, len(got), err)
		}
		if _, err := open(sealed.Bytes(), stranger); !errors.Is(err, ErrDecrypt) {
			t.Errorf("size %d: opened with another key: %v", size, err)
		}
		b := sealed.Bytes()
		flipped := bytes.Clone(b)
		flipped[len(flipped)-5] ^= 1
		for name, bad := range map[string][]byte{
			"cut":      b[:len(b)-box0(size)],
			"changed":  flipped,
			"extended": append(bytes.Clone(b), b[len(magic)+48:]...),
		} {
			if _, err := open(bad, mine); !errors.Is(err, ErrDecrypt) {
				t.Errorf("size %d, %s: %v, want ErrDecrypt", size, name, err)
			}
		}
	}
}

// box0 is how much to cut to lose the last chunk of a file of size bytes.
func box0(size int) int { return 4 + size%chunkSize + 16 }

func naclKey(t *testing.T) (*[32]byte, *[32]byte, error) {
	t.Helper()
	dir := t.TempDir()
	if err := GenerateBoxKey(filepath.Join(dir, "k"), filepath.Join(dir, "p")); err != nil {
		t.Fatal(err)
	}
	pub, _ := ReadBoxPublic(filepath.Join(dir, "p"))
	priv, err := ReadBoxPrivate(filepath.Join(dir, "k"))
	return pub, priv, err
}

// keyPair derives the public key of a fixed private key.
func keyPair(priv, pub *[32]byte) (*[32]byte, *[32]byte, error) {
	k, err := ecdh.X25519().NewPrivateKey(priv[:])
	if err != nil {
		return nil, nil, err
	}
	copy(pub[:], k.PublicKey().Bytes())
	return pub, priv, nil
}
