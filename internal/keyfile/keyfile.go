// Package keyfile reads and writes the key files of the authority, the
// holder simulator and the checkpoint: Ed25519 keys as PEM (PKCS #8 for
// private keys, PKIX for public keys), the authority's X25519 event key
// pair (the same formats), its pseudonym secret and bearer tokens (the
// authority's admin token).
//
// Private key and token files are written with mode 0600 and refused when
// group or others may read them. cmd/authority, cmd/holder,
// cmd/checkpointctl and checkpointd import it.
package keyfile

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// ErrTooOpen is returned (wrapped) for a secret file others can read.
var ErrTooOpen = errors.New("secret key file is readable by group or others")

// PEM block types.
const (
	blockPrivate   = "PRIVATE KEY"
	blockPublic    = "PUBLIC KEY"
	blockPseudonym = "CHECKPOINT PSEUDONYM KEY"
	blockStore     = "CHECKPOINT STORE KEY"
)

// PseudonymKeySize is the size of the authority's pseudonym secret.
const PseudonymKeySize = 32

// WritePrivate writes key to path with mode 0600, replacing any file there.
func WritePrivate(path string, key ed25519.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	return writeAtomic(path, pem.EncodeToMemory(&pem.Block{Type: blockPrivate, Bytes: der}), 0o600)
}

// WritePublic writes key to path with mode 0644.
func WritePublic(path string, key ed25519.PublicKey) error {
	der, err := x509.MarshalPKIXPublicKey(key)
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	return writeAtomic(path, pem.EncodeToMemory(&pem.Block{Type: blockPublic, Bytes: der}), 0o644)
}

// ReadPrivate reads an Ed25519 private key written by WritePrivate.
func ReadPrivate(path string) (ed25519.PrivateKey, error) {
	block, err := readSecret(path, blockPrivate)
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(block)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	key, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: not an Ed25519 key", path)
	}
	return key, nil
}

// ReadPublic reads an Ed25519 public key written by WritePublic.
func ReadPublic(path string) (ed25519.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	der, err := decodePEM(path, data, blockPublic)
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	key, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%s: not an Ed25519 key", path)
	}
	return key, nil
}

// CreatePseudonymKey writes a new random pseudonym secret to path unless a
// file is there already: replacing it would change every subject's
// pseudonym and orphan every revocation. It reports whether it wrote one.
func CreatePseudonymKey(path string) (bool, error) {
	if _, err := os.Stat(path); err == nil {
		return false, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	key := make([]byte, PseudonymKeySize)
	if _, err := rand.Read(key); err != nil {
		return false, err
	}
	return true, writeAtomic(path, pem.EncodeToMemory(&pem.Block{Type: blockPseudonym, Bytes: key}), 0o600)
}

// ReadPseudonymKey reads the pseudonym secret.
func ReadPseudonymKey(path string) ([]byte, error) {
	key, err := readSecret(path, blockPseudonym)
	if err != nil {
		return nil, err
	}
	if len(key) != PseudonymKeySize {
		return nil, fmt.Errorf("%s: pseudonym key of %d bytes", path, len(key))
	}
	return key, nil
}

// StoreKey reads the checkpoint's key for the fields its store keeps
// encrypted (32 bytes, for XChaCha20-Poly1305), making one on first use:
// mode 0600, readable by the daemon's user only, refused when others can
// read it. Losing it makes those fields unreadable, not the log.
func StoreKey(path string) (*[32]byte, error) {
	k, err := ReadStoreKey(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	k = new([32]byte)
	if _, err := rand.Read(k[:]); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	return k, writeAtomic(path, pem.EncodeToMemory(&pem.Block{Type: blockStore, Bytes: k[:]}), 0o600)
}

// ReadStoreKey reads the store key, without making one.
func ReadStoreKey(path string) (*[32]byte, error) {
	b, err := readSecret(path, blockStore)
	if err != nil {
		return nil, err
	}
	if len(b) != 32 {
		return nil, fmt.Errorf("%s: store key of %d bytes", path, len(b))
	}
	return (*[32]byte)(b), nil
}

// CreateEventKeys makes the authority's X25519 event key pair, to which
// checkpoints seal what only the authority may read: the private key at
// priv (PKCS #8, mode 0600) and the public key at pub (PKIX). Like the
// pseudonym key it is never replaced: sealed records would become
// unreadable. It reports whether it made them.
func CreateEventKeys(priv, pub string) (bool, error) {
	if _, err := os.Stat(priv); err == nil {
		return false, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return false, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return false, err
	}
	pder, err := x509.MarshalPKIXPublicKey(k.PublicKey())
	if err != nil {
		return false, err
	}
	if err := writeAtomic(pub, pem.EncodeToMemory(&pem.Block{Type: blockPublic, Bytes: pder}), 0o644); err != nil {
		return false, err
	}
	return true, writeAtomic(priv, pem.EncodeToMemory(&pem.Block{Type: blockPrivate, Bytes: der}), 0o600)
}

// ReadEventPrivate reads the authority's X25519 event private key.
func ReadEventPrivate(path string) (*ecdh.PrivateKey, error) {
	block, err := readSecret(path, blockPrivate)
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(block)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	key, ok := k.(*ecdh.PrivateKey)
	if !ok || key.Curve() != ecdh.X25519() {
		return nil, fmt.Errorf("%s: not an X25519 key", path)
	}
	return key, nil
}

// ReadEventPublic reads an X25519 event public key.
func ReadEventPublic(path string) (*ecdh.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, err := decodePEM(path, data, blockPublic)
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKIXPublicKey(block)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	key, ok := k.(*ecdh.PublicKey)
	if !ok || key.Curve() != ecdh.X25519() {
		return nil, fmt.Errorf("%s: not an X25519 key", path)
	}
	return key, nil
}

// CreateToken writes a new random bearer token (24 bytes, hex) to path
// with mode 0600 unless a file is there already, and returns the token in
// the file. Processes calling it at once on one path (authority servers
// started together with one keys folder) all get the same token: the
// first file made is kept, never replaced.
func CreateToken(path string) (string, error) {
	t, err := ReadToken(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return t, err
	}
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	token := hex.EncodeToString(b[:])
	err = writeNew(path, []byte(token+"\n"), 0o600)
	if errors.Is(err, fs.ErrExist) {
		return ReadToken(path) // made by another process meanwhile
	}
	return token, err
}

// ReadToken reads a bearer token file: one line of text, refused when
// group or others may read it, like a private key.
func ReadToken(path string) (string, error) {
	data, err := readProtected(path)
	if err != nil {
		return "", err
	}
	t := strings.TrimSpace(string(data))
	if t == "" || strings.ContainsAny(t, " \t\r\n") {
		return "", fmt.Errorf("%s: not a token file (one line, no spaces)", path)
	}
	return t, nil
}

func readSecret(path, blockType string) ([]byte, error) {
	data, err := readProtected(path)
	if err != nil {
		return nil, err
	}
	return decodePEM(path, data, blockType)
}

// readProtected reads a small secret file that only its owner may read.
func readProtected(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s: %w (mode %#o): run chmod 600 %s", path, ErrTooOpen, st.Mode().Perm(), path)
	}
	return readAllLimited(f, path)
}

// Key files are small; refuse to read anything large.
const maxKeyFile = 16 << 10

func readAllLimited(f *os.File, path string) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > maxKeyFile {
		return nil, fmt.Errorf("%s: larger than a key file", path)
	}
	return data, nil
}

func decodePEM(path string, data []byte, blockType string) ([]byte, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != blockType {
		return nil, fmt.Errorf("%s: not a PEM %q block", path, blockType)
	}
	return block.Bytes, nil
}

// writeNew writes data to path, whole, unless a file is there: as
// writeAtomic, but the synced temporary file is linked to path, which
// fails (fs.ErrExist) if path exists, rather than renamed over it. On a
// file system without hard links it creates path exclusively instead.
func writeNew(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := writeSynced(tmp, data, mode); err != nil {
		return err
	}
	err = os.Link(tmp.Name(), path)
	if err == nil || errors.Is(err, fs.ErrExist) {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	return writeSynced(f, data, mode)
}

// writeSynced writes data to f with mode, syncs and closes it.
func writeSynced(f *os.File, data []byte, mode os.FileMode) error {
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// writeAtomic writes data to a temporary file beside path, syncs it and
// renames it over path, so a crash never leaves half a key.
func writeAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := writeSynced(tmp, data, mode); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
