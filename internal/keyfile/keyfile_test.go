package keyfile

import (
	"crypto/ed25519"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
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
