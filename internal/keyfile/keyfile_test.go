package keyfile

import (
	"crypto/ed25519"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func TestKeyFiles(t *testing.T) {
	dir := t.TempDir()
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	kp, pp := filepath.Join(dir, "k.key"), filepath.Join(dir, "k.pub")
	if err := WritePrivate(kp, priv); err != nil {
		t.Fatal(err)
	}
	if err := WritePublic(pp, pub); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(kp); st.Mode().Perm() != 0o600 {
		t.Errorf("private key written with mode %v", st.Mode().Perm())
	}
	gotPriv, err := ReadPrivate(kp)
	if err != nil || !gotPriv.Equal(priv) {
		t.Fatalf("ReadPrivate: %v", err)
	}
	gotPub, err := ReadPublic(pp)
	if err != nil || !gotPub.Equal(pub) {
		t.Fatalf("ReadPublic: %v", err)
	}
	if _, err := ReadPrivate(pp); err == nil {
		t.Error("read a public key as a private key")
	}

	if err := os.Chmod(kp, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadPrivate(kp); !errors.Is(err, ErrTooOpen) {
		t.Errorf("world-readable private key: %v", err)
	}
	if _, err := ReadPrivate(filepath.Join(dir, "missing.key")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing key: %v", err)
	}
}

func TestPseudonymKeyIsNeverReplaced(t *testing.T) {
	p := filepath.Join(t.TempDir(), "pseudonym.key")
	wrote, err := CreatePseudonymKey(p)
	if err != nil || !wrote {
		t.Fatalf("first create: %v %v", wrote, err)
	}
	k1, err := ReadPseudonymKey(p)
	if err != nil {
		t.Fatal(err)
	}
	wrote, err = CreatePseudonymKey(p)
	if err != nil || wrote {
		t.Fatalf("second create: %v %v", wrote, err)
	}
	k2, _ := ReadPseudonymKey(p)
	if string(k1) != string(k2) || len(k1) != PseudonymKeySize {
		t.Fatal("pseudonym key changed")
	}
}

// TestTokenFile: a token file is made once, kept, and refused like a
// private key when others can read it.
func TestTokenFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "admin.token")
	tok, err := CreateToken(p)
	if err != nil || len(tok) != 48 {
		t.Fatalf("CreateToken: %q %v", tok, err)
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o600 {
		t.Errorf("token written with mode %v", st.Mode().Perm())
	}
	if again, err := CreateToken(p); err != nil || again != tok {
		t.Errorf("second CreateToken: %q %v, want the first token kept", again, err)
	}
	if got, err := ReadToken(p); err != nil || got != tok {
		t.Errorf("ReadToken: %q %v", got, err)
	}
	for mode, want := range map[os.FileMode]error{0o644: ErrTooOpen, 0o640: ErrTooOpen, 0o604: ErrTooOpen, 0o400: nil} {
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadToken(p); !errors.Is(err, want) {
			t.Errorf("mode %v: %v, want %v", mode, err, want)
		}
		if _, err := CreateToken(p); !errors.Is(err, want) {
			t.Errorf("CreateToken over mode %v: %v, want %v", mode, err, want)
		}
	}
	os.Chmod(p, 0o600)
	if err := os.WriteFile(p, []byte("two words\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadToken(p); err == nil {
		t.Error("read a token with a space in it")
	}
}

// TestEventKeys: the X25519 pair is made once and kept, the private key
// owner-only, each read back as X25519 and not as the other kind.
func TestEventKeys(t *testing.T) {
	dir := t.TempDir()
	priv, pub := filepath.Join(dir, "event.key"), filepath.Join(dir, "event.pub")
	made, err := CreateEventKeys(priv, pub)
	if err != nil || !made {
		t.Fatalf("CreateEventKeys: %v %v", made, err)
	}
	k, err := ReadEventPrivate(priv)
	if err != nil {
		t.Fatal(err)
	}
	p, err := ReadEventPublic(pub)
	if err != nil || !p.Equal(k.PublicKey()) {
		t.Fatalf("public key %v does not match the private one: %v", p, err)
	}
	if made, err := CreateEventKeys(priv, pub); err != nil || made {
		t.Errorf("second CreateEventKeys: %v %v (want the pair kept)", made, err)
	}
	if again, _ := ReadEventPrivate(priv); !again.Equal(k) {
		t.Error("the event key changed")
	}
	if _, err := ReadPrivate(priv); err == nil {
		t.Error("read an X25519 key as an Ed25519 key")
	}
	os.Chmod(priv, 0o644)
	if _, err := ReadEventPrivate(priv); !errors.Is(err, ErrTooOpen) {
		t.Errorf("world-readable event key: %v", err)
	}
}

// TestStoreKey: made once with mode 0600, kept, and refused when others
// can read it.
func TestStoreKey(t *testing.T) {
	p := filepath.Join(t.TempDir(), "state", "store.key")
	k, err := StoreKey(p)
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", st.Mode().Perm())
	}
	again, err := StoreKey(p)
	if err != nil || *again != *k {
		t.Errorf("second StoreKey: %v (want the same key)", err)
	}
	if r, err := ReadStoreKey(p); err != nil || *r != *k {
		t.Errorf("ReadStoreKey: %v", err)
	}
	os.Chmod(p, 0o640)
	if _, err := StoreKey(p); !errors.Is(err, ErrTooOpen) {
		t.Errorf("group-readable store key: %v", err)
	}
}

// TestTokenCreatedAtOnce: processes making the token at once (authority
// servers started together on one keys folder) all get the one token the
// file keeps.
func TestTokenCreatedAtOnce(t *testing.T) {
	for round := range 20 {
		p := filepath.Join(t.TempDir(), "admin.token")
		const n = 8
		toks, errs := make([]string, n), make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				toks[i], errs[i] = CreateToken(p)
			}()
		}
		wg.Wait()
		kept, err := ReadToken(p)
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			if errs[i] != nil || toks[i] != kept {
				t.Fatalf("round %d, call %d: %q %v; the file keeps %q", round, i, toks[i], errs[i], kept)
			}
		}
		if left, _ := filepath.Glob(filepath.Join(filepath.Dir(p), ".admin.token.*")); len(left) > 0 {
			t.Fatalf("temporary files left: %v", left)
		}
	}
}
