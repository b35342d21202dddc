package credential

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"

	"golang.org/x/crypto/argon2"
)

// NormalizeID returns the canonical form of an ID number that the hashes
// below are computed over: surrounding spaces removed and letters (the
// check character X) in upper case.
func NormalizeID(id string) string {
	return strings.ToUpper(strings.TrimSpace(id))
}

// ErrBadIDNumber is wrapped by every error of ParseID. Its messages say
// what is wrong without repeating the number.
var ErrBadIDNumber = errors.New("not a valid ID number")

// idWeights are the GB 11643-1999 weights of the first 17 digits; the sum
// of the weighted digits modulo 11 indexes idCheck.
var idWeights = [17]int{7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2}

const idCheck = "10X98765432"

// ParseID checks a citizen identity number of GB 11643-1999 and returns it
// normalised (NormalizeID): 17 digits, the first six a region code not
// starting with 0, the next eight a birth date (YYYYMMDD, a real date, year
// 1900 or later), then the check character, a digit or X, that the others
// determine. A 15-digit number of a first-generation card is refused: those
// cards stopped being valid on 2013-01-01.
func ParseID(s string) (string, error) {
	id := NormalizeID(s)
	if len(id) == 15 && strings.Trim(id, "0123456789") == "" {
		return "", fmt.Errorf("%w: a 15-digit number is from a first-generation ID card, which stopped being valid on 2013-01-01; give the 18-digit number on the current card", ErrBadIDNumber)
	}
	if len(id) != 18 {
		return "", fmt.Errorf("%w: it must have 18 characters", ErrBadIDNumber)
	}
	sum := 0
	for i, w := range idWeights {
		if id[i] < '0' || id[i] > '9' {
			return "", fmt.Errorf("%w: character %d is not a digit (only the last may be X)", ErrBadIDNumber, i+1)
		}
		sum += int(id[i]-'0') * w
	}
	if id[17] != 'X' && (id[17] < '0' || id[17] > '9') {
		return "", fmt.Errorf("%w: the last character must be a digit or X", ErrBadIDNumber)
	}
	if id[0] == '0' {
		return "", fmt.Errorf("%w: the region code (characters 1-6) cannot start with 0", ErrBadIDNumber)
	}
	birth, err := time.Parse("20060102", id[6:14])
	if err != nil || birth.Year() < 1900 {
		return "", fmt.Errorf("%w: characters 7-14 are not a birth date (YYYYMMDD, 1900 or later)", ErrBadIDNumber)
	}
	if id[17] != idCheck[sum%11] {
		return "", fmt.Errorf("%w: the check character (the last) does not match the other 17 digits", ErrBadIDNumber)
	}
	return id, nil
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

// idHashLen is the Argon2id output length; Argon2 makes at least 4 bytes,
// and IDHash keeps the first IDHashSize.
const idHashLen = 32

// IDHash returns the salted hash of an ID number that lets a checkpoint with
// an ID-card reader match the card to the code: Argon2id of the normalised
// number, salted with the subject pseudonym, 32 bytes long, truncated to
// its first IDHashSize bytes. ID numbers are guessable, so the hash is slow
// on purpose, and short, so that a code is consistent with many numbers
// (docs/credential.md, section 3.2); a card that is not the holder's
// matches by chance once in 65,536 reads. It is computed once per person at
// the authority and once per card read at the gate.
func IDHash(idNumber string, subject []byte) []byte {
	return argon2.IDKey([]byte(NormalizeID(idNumber)), subject, idHashTime, idHashMemory, idHashThreads, idHashLen)[:IDHashSize]
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
