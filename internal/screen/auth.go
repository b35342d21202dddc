package screen

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"sync"
	"time"

	"github.com/checkpointd/checkpoint/internal/passhash"
)

// Guard is a guard who may sign in: a name and the hash of a PIN.
type Guard struct {
	Name string
	PIN  string // passhash.Hash's output
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
		hash = passhash.Unknown
	}
	good := passhash.Matches(hash, pin) && ok
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
