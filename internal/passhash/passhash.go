// Package passhash hashes and checks the secrets people type at a
// checkpoint: guards' PINs on the screen and supervisors' passwords for
// the local API. Hashes are Argon2id in the PHC string format other tools
// read, $argon2id$v=19$m=19456,t=2,p=1$SALT$HASH (unpadded base64), and
// live in the configuration. internal/screen, internal/localapi,
// internal/config and checkpointctl passwd import it.
package passhash

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"
)

// The cost of a new hash: the OWASP minimum for Argon2id.
const (
	hashTime    = 2
	hashMemory  = 19 * 1024 // KiB
	hashThreads = 1
	hashKeyLen  = 32
)

// MinLength is the shortest secret Hash accepts.
const MinLength = 4

// Hash returns the Argon2id hash of a secret, salted at random.
func Hash(secret string) (string, error) {
	if len(secret) < MinLength {
		return "", fmt.Errorf("a PIN or password has at least %d characters", MinLength)
	}
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key := argon2.IDKey([]byte(secret), salt, hashTime, hashMemory, hashThreads, hashKeyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, hashMemory, hashTime, hashThreads,
		b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// ErrBadHash is a hash that is not an Argon2id PHC string this package can
// check.
var ErrBadHash = errors.New("not an argon2id hash")

// maxMemory bounds the memory a configured hash may ask for (KiB).
const maxMemory = 256 * 1024

func parse(h string) (salt, key []byte, m, t uint32, p uint8, err error) {
	parts := strings.Split(h, "$")
	if len(parts) != 6 || parts[1] != "argon2id" || parts[2] != fmt.Sprintf("v=%d", argon2.Version) {
		return nil, nil, 0, 0, 0, ErrBadHash
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil || m == 0 || m > maxMemory ||
		t == 0 || t > 16 || p == 0 {
		return nil, nil, 0, 0, 0, ErrBadHash
	}
	b64 := base64.RawStdEncoding
	if salt, err = b64.DecodeString(parts[4]); err != nil || len(salt) < 8 {
		return nil, nil, 0, 0, 0, ErrBadHash
	}
	if key, err = b64.DecodeString(parts[5]); err != nil || len(key) < 16 {
		return nil, nil, 0, 0, 0, ErrBadHash
	}
	return salt, key, m, t, p, nil
}

// Check reports whether a configured hash can be checked.
func Check(h string) error {
	_, _, _, _, _, err := parse(h)
	return err
}

// Matches reports whether secret is the one hash was made of. A hash that
// cannot be checked matches nothing.
func Matches(hash, secret string) bool {
	salt, key, m, t, p, err := parse(hash)
	if err != nil {
		return false
	}
	got := argon2.IDKey([]byte(secret), salt, t, m, p, uint32(len(key)))
	return subtle.ConstantTimeCompare(got, key) == 1
}

// Unknown is a hash to check when the name given is unknown, so that a
// wrong name takes as long as a wrong secret.
var Unknown = func() string {
	h, _ := Hash("no such account")
	return h
}()
