package screen

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/argon2"
)

// PIN hashes are Argon2id in the PHC string format that other tools read:
// $argon2id$v=19$m=19456,t=2,p=1$SALT$HASH (unpadded base64).
const (
	pinTime    = 2
	pinMemory  = 19 * 1024 // KiB
	pinThreads = 1
	pinKeyLen  = 32
)

// HashPIN returns the Argon2id hash of a guard's PIN, for the
// configuration. checkpointctl passwd and checkpointd --passwd call it.
func HashPIN(pin string) (string, error) {
	if len(pin) < 4 {
		return "", errors.New("a PIN has at least 4 characters")
	}
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key := argon2.IDKey([]byte(pin), salt, pinTime, pinMemory, pinThreads, pinKeyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, pinMemory, pinTime, pinThreads,
		b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// ErrBadHash is a PIN hash that is not an Argon2id PHC string this package
// can check.
var ErrBadHash = errors.New("not an argon2id PIN hash")

// maxPinMemory bounds the memory a configured hash may ask for (KiB).
const maxPinMemory = 256 * 1024

// parseHash reads a PHC string.
func parseHash(h string) (salt, key []byte, m, t uint32, p uint8, err error) {
	parts := strings.Split(h, "$")
	if len(parts) != 6 || parts[1] != "argon2id" || parts[2] != fmt.Sprintf("v=%d", argon2.Version) {
		return nil, nil, 0, 0, 0, ErrBadHash
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil || m == 0 || m > maxPinMemory ||
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

// CheckHash reports whether a configured hash can be checked.
func CheckHash(h string) error {
	_, _, _, _, _, err := parseHash(h)
	return err
}

func pinMatches(hash, pin string) bool {
	salt, key, m, t, p, err := parseHash(hash)
	if err != nil {
		return false
	}
	got := argon2.IDKey([]byte(pin), salt, t, m, p, uint32(len(key)))
	return subtle.ConstantTimeCompare(got, key) == 1
}

// Guard is a guard who may sign in: a name and the hash of a PIN.
type Guard struct {
	Name string
	PIN  string // HashPIN's output
}

// signIns checks PINs, keeps the sessions of the guards signed in, and
// locks signing in for a while after too many wrong PINs in a row.
type signIns struct {
	guards    map[string]string // name -> hash
	lockAfter int
	lockFor   time.Duration
	sessionOf time.Duration

	mu       sync.Mutex
	wrong    int
	lockedTo time.Time
	sessions map[string]session // token -> session
}

type session struct {
	guard   string
	expires time.Time
}

// maxSessions bounds the sessions kept: a box has a few screens.
const maxSessions = 64

// errLocked is a sign-in refused because of earlier wrong PINs.
var errLocked = errors.New("signing in is locked after wrong PINs")

// errWrongPIN is a wrong name or PIN.
var errWrongPIN = errors.New("wrong name or PIN")

// signIn checks a name and PIN at now and returns a session token.
func (s *signIns) signIn(name, pin string, now time.Time) (string, error) {
	s.mu.Lock()
	if now.Before(s.lockedTo) {
		s.mu.Unlock()
		return "", errLocked
	}
	hash, ok := s.guards[name]
	s.mu.Unlock()
	// The slow check runs unlocked; an unknown name costs the same.
	if !ok {
		hash = dummyHash
	}
	good := pinMatches(hash, pin) && ok
	s.mu.Lock()
	defer s.mu.Unlock()
	if !good {
		if s.wrong++; s.wrong >= s.lockAfter {
			s.lockedTo, s.wrong = now.Add(s.lockFor), 0
		}
		return "", errWrongPIN
	}
	s.wrong = 0
	for t, se := range s.sessions {
		if !now.Before(se.expires) || len(s.sessions) >= maxSessions {
			delete(s.sessions, t)
		}
	}
	b := make([]byte, 24)
	rand.Read(b)
	token := base64.RawURLEncoding.EncodeToString(b)
	s.sessions[token] = session{guard: name, expires: now.Add(s.sessionOf)}
	return token, nil
}

// guard returns the guard signed in with token at now.
func (s *signIns) guard(token string, now time.Time) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	se, ok := s.sessions[token]
	if !ok || !now.Before(se.expires) {
		return "", false
	}
	return se.guard, true
}

func (s *signIns) signOut(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.sessions, token)
}

// dummyHash is checked for unknown names, so that a wrong name takes as
// long as a wrong PIN.
var dummyHash = func() string {
	h, _ := HashPIN("unknown guard")
	return h
}()
