package export

import (
	"bufio"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"golang.org/x/crypto/nacl/box"

	"github.com/checkpointd/checkpoint/internal/keyfile"
)

// An encrypted export is the plain file sealed to a supervisor's X25519
// public key with nacl/box (Curve25519, XSalsa20-Poly1305), in chunks so
// that a large export never sits whole in memory:
//
//	magic "CPXBOX1\n" | ephemeral public key (32) | nonce prefix (16)
//	chunks: length (4, big-endian) | box of up to 64 KiB
//
// Chunk i's nonce is the prefix, i (7 bytes) and a last-chunk flag, so
// that chunks cannot be reordered, dropped or cut off at the end unseen.
// The ephemeral key is made for each file and forgotten: only the holder
// of the supervisor's private key can open it.

var magic = []byte("CPXBOX1\n")

const chunkSize = 64 << 10

// ErrDecrypt is an encrypted export that does not open with the key
// given, or was changed.
var ErrDecrypt = errors.New("export: does not decrypt with this key, or was changed")

// IsEncrypted reports whether a file starts as an encrypted export.
func IsEncrypted(head []byte) bool {
	return len(head) >= len(magic) && string(head[:len(magic)]) == string(magic)
}

type sealer struct {
	w      io.Writer
	shared [32]byte
	prefix [16]byte
	n      uint64
	buf    []byte
	closed bool
}

// Encrypt returns a writer that seals what is written to it for the
// holder of the private key of to, and writes it to w. Close writes the
// last chunk; without it the file does not open.
func Encrypt(w io.Writer, to *[32]byte) (io.WriteCloser, error) {
	pub, priv, err := box.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	s := &sealer{w: w, buf: make([]byte, 0, chunkSize)}
	box.Precompute(&s.shared, to, priv)
	if _, err := rand.Read(s.prefix[:]); err != nil {
		return nil, err
	}
	head := append(append(append([]byte(nil), magic...), pub[:]...), s.prefix[:]...)
	if _, err := w.Write(head); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *sealer) nonce(last bool) *[24]byte {
	var n [24]byte
	copy(n[:16], s.prefix[:])
	var c [8]byte
	binary.BigEndian.PutUint64(c[:], s.n)
	copy(n[16:23], c[1:])
	if last {
		n[23] = 1
	}
	return &n
}

func (s *sealer) flush(last bool) error {
	sealed := box.SealAfterPrecomputation(make([]byte, 4, 4+len(s.buf)+box.Overhead), s.buf, s.nonce(last), &s.shared)
	binary.BigEndian.PutUint32(sealed, uint32(len(sealed)-4))
	s.n++
	s.buf = s.buf[:0]
	_, err := s.w.Write(sealed)
	return err
}

func (s *sealer) Write(p []byte) (int, error) {
	if s.closed {
		return 0, errors.New("export: write after close")
	}
	n := 0
	for len(p) > 0 {
		k := min(len(p), chunkSize-len(s.buf))
		s.buf = append(s.buf, p[:k]...)
		p, n = p[k:], n+k
		if len(s.buf) == chunkSize {
			if err := s.flush(false); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

func (s *sealer) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	return s.flush(true)
}

type opener struct {
	r      *bufio.Reader
	shared [32]byte
	prefix [16]byte
	n      uint64
	plain  []byte
	done   bool
}

// Decrypt returns a reader of the plain export sealed in r for priv. A
// changed, reordered or cut-off file fails with ErrDecrypt when the
// reader reaches the damage.
func Decrypt(r io.Reader, priv *[32]byte) (io.Reader, error) {
	br := bufio.NewReaderSize(r, chunkSize+box.Overhead+4)
	head := make([]byte, len(magic)+32+16)
	if _, err := io.ReadFull(br, head); err != nil || !IsEncrypted(head) {
		return nil, fmt.Errorf("%w: not an encrypted export", ErrDecrypt)
	}
	var pub [32]byte
	copy(pub[:], head[len(magic):])
	o := &opener{r: br}
	copy(o.prefix[:], head[len(magic)+32:])
	box.Precompute(&o.shared, &pub, priv)
	return o, nil
}

func (o *opener) Read(p []byte) (int, error) {
	for len(o.plain) == 0 {
		if o.done {
			if _, err := o.r.ReadByte(); err != io.EOF {
				return 0, fmt.Errorf("%w: data after the last chunk", ErrDecrypt)
			}
			return 0, io.EOF
		}
		var l [4]byte
		if _, err := io.ReadFull(o.r, l[:]); err != nil {
			return 0, fmt.Errorf("%w: cut off", ErrDecrypt)
		}
		n := binary.BigEndian.Uint32(l[:])
		if n < box.Overhead || n > chunkSize+box.Overhead {
			return 0, fmt.Errorf("%w: a chunk of %d bytes", ErrDecrypt, n)
		}
		sealed := make([]byte, n)
		if _, err := io.ReadFull(o.r, sealed); err != nil {
			return 0, fmt.Errorf("%w: cut off", ErrDecrypt)
		}
		s := sealer{prefix: o.prefix, n: o.n}
		plain, ok := box.OpenAfterPrecomputation(o.plain[:0], sealed, s.nonce(false), &o.shared)
		if !ok {
			if plain, ok = box.OpenAfterPrecomputation(o.plain[:0], sealed, s.nonce(true), &o.shared); !ok {
				return 0, ErrDecrypt
			}
			o.done = true
		}
		o.plain = plain
		o.n++
	}
	n := copy(p, o.plain)
	o.plain = o.plain[n:]
	return n, nil
}

// GenerateBoxKey makes a supervisor's X25519 key pair for encrypted
// exports: the private key at priv (mode 0600), the public key at pub, to
// give to the box's configuration. It refuses to overwrite a key.
func GenerateBoxKey(priv, pub string) error {
	made, err := keyfile.CreateEventKeys(priv, pub)
	if err != nil {
		return err
	}
	if !made {
		return fmt.Errorf("export: %s exists; not overwriting a key", priv)
	}
	return nil
}

// ReadBoxPublic reads a supervisor's public key.
func ReadBoxPublic(path string) (*[32]byte, error) {
	k, err := keyfile.ReadEventPublic(path)
	if err != nil {
		return nil, err
	}
	return (*[32]byte)(k.Bytes()), nil
}

// ReadBoxPrivate reads a supervisor's private key.
func ReadBoxPrivate(path string) (*[32]byte, error) {
	k, err := keyfile.ReadEventPrivate(path)
	if err != nil {
		return nil, err
	}
	return (*[32]byte)(k.Bytes()), nil
}
