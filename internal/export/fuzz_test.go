package export

import (
	"bytes"
	"crypto/ed25519"
	"io"
	"testing"
)

// FuzzCheck: whatever the file and manifest hold, Check answers without
// panicking, and accepts only what was signed.
func FuzzCheck(f *testing.F) {
	seed := ed25519.NewKeyFromSeed(make([]byte, 32))
	pub := seed.Public().(ed25519.PublicKey)
	t := &testing.T{}
	for _, format := range []Format{CSV, JSONL} {
		data, signed := write(t, format, chain(t, 3), seed, "")
		f.Add(data, signed)
	}
	f.Fuzz(func(t *testing.T, data, signed []byte) {
		m, err := Check(bytes.NewReader(data), signed, pub)
		if err == nil && m.Count < 0 {
			t.Fatalf("accepted a manifest with %d rows", m.Count)
		}
	})
}

// FuzzDecrypt: a damaged or forged encrypted export fails cleanly.
func FuzzDecrypt(f *testing.F) {
	var key, pub [32]byte
	key[0] = 1
	var sealed bytes.Buffer
	pubKey, _, _ := keyPair(&key, &pub)
	w, _ := Encrypt(&sealed, pubKey)
	w.Write([]byte("seq,time\n1,2026\n"))
	w.Close()
	f.Add(sealed.Bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Decrypt(bytes.NewReader(b), &key)
		if err != nil {
			return
		}
		io.Copy(io.Discard, io.LimitReader(r, 1<<20))
	})
}
