package credential

import (
	"crypto/hmac"
	"crypto/sha256"
	"strings"
	"unicode"

	"golang.org/x/crypto/argon2"
)

// NormalizeID returns the canonical form of an ID number that the hashes
// below are computed over: surrounding spaces removed and letters (the
// check character X) in upper case.
func NormalizeID(id string) string {
	return strings.ToUpper(strings.TrimSpace(id))
}

// Pseudonym returns the subject pseudonym of an ID number: HMAC-SHA256 under
// the authority's pseudonym key, truncated to SubjectSize bytes. Without the
// key nobody can compute or reverse it; revocations name subjects by it.
func Pseudonym(key []byte, idNumber string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("checkpoint subject v1\x00"))
	m.Write([]byte(NormalizeID(idNumber)))
	return m.Sum(nil)[:SubjectSize]
}

// Argon2id parameters of IDHash: the cost that OWASP recommends as a
// minimum for password hashing (19 MiB, two passes, one lane).
const (
	idHashTime    = 2
	idHashMemory  = 19 * 1024 // KiB
	idHashThreads = 1
)

// IDHash returns the salted hash of an ID number that lets a checkpoint with
// an ID-card reader match the card to the code: Argon2id of the normalised
// number, salted with the subject pseudonym, truncated to IDHashSize bytes.
// ID numbers are guessable, so the hash is slow on purpose; it is computed
// once per person at the authority and once per card read at the gate.
func IDHash(idNumber string, subject []byte) []byte {
	return argon2.IDKey([]byte(NormalizeID(idNumber)), subject, idHashTime, idHashMemory, idHashThreads, IDHashSize)
}

// IDSuffix returns the last MaxIDSuffixLen characters of an ID number, which
// the guard compares with the card.
func IDSuffix(idNumber string) string {
	id := NormalizeID(idNumber)
	if len(id) <= MaxIDSuffixLen {
		return id
	}
	return id[len(id)-MaxIDSuffixLen:]
}

// MaskName keeps the first and last character of a name and puts one
// asterisk between them ("张三丰" and "张丰" become "张*丰" and "张*"), so that
// the guard can compare it with the card while the code reveals little, and
// so that every name costs the same few bytes. Spaces are dropped first.
func MaskName(name string) string {
	r := []rune(strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) {
			return -1
		}
		return r
	}, name))
	switch len(r) {
	case 0:
		return ""
	case 1:
		return string(r)
	case 2:
		return string(r[0]) + "*"
	}
	return string(r[0]) + "*" + string(r[len(r)-1])
}
