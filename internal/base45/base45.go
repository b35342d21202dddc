// Package base45 implements the Base45 encoding of RFC 9285, which turns bytes
// into text made only of the 45 characters of the QR code alphanumeric mode, so
// that a QR code carrying binary data can use that denser mode.
//
// It is imported by internal/credential, which uses it for the QR text of
// credentials and presentations. It is written here rather than imported
// because no small, maintained module for it is available to this project.
package base45

import (
	"errors"
	"fmt"
	"strings"
)

// Alphabet is the RFC 9285 table: the value of a character is its index.
const Alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"

// ErrInvalid is returned (wrapped) for text that is not valid Base45.
var ErrInvalid = errors.New("base45: invalid input")

var decodeTable = func() [256]int8 {
	var t [256]int8
	for i := range t {
		t[i] = -1
	}
	for i := 0; i < len(Alphabet); i++ {
		t[Alphabet[i]] = int8(i)
	}
	return t
}()

// EncodedLen returns the length of the Base45 encoding of n bytes.
func EncodedLen(n int) int {
	return n/2*3 + n%2*2
}

// Encode returns the Base45 encoding of src.
func Encode(src []byte) string {
	var b strings.Builder
	b.Grow(EncodedLen(len(src)))
	for i := 0; i+1 < len(src); i += 2 {
		n := int(src[i])<<8 | int(src[i+1])
		b.WriteByte(Alphabet[n%45])
		b.WriteByte(Alphabet[n/45%45])
		b.WriteByte(Alphabet[n/(45*45)])
	}
	if len(src)%2 == 1 {
		n := int(src[len(src)-1])
		b.WriteByte(Alphabet[n%45])
		b.WriteByte(Alphabet[n/45])
	}
	return b.String()
}

// Decode returns the bytes that s encodes. It fails on characters outside the
// alphabet, on a length that leaves one character over (length mod 3 == 1),
// and on groups whose value does not fit the bytes they stand for, as RFC 9285
// section 4.2 requires.
func Decode(s string) ([]byte, error) {
	if len(s)%3 == 1 {
		return nil, fmt.Errorf("%w: length %d leaves a single character", ErrInvalid, len(s))
	}
	out := make([]byte, 0, len(s)/3*2+1)
	for i := 0; i < len(s); i += 3 {
		if i+2 >= len(s) {
			c, d := decodeTable[s[i]], decodeTable[s[i+1]]
			if c < 0 || d < 0 {
				return nil, fmt.Errorf("%w: character outside the alphabet near offset %d", ErrInvalid, i)
			}
			n := int(c) + int(d)*45
			if n > 0xff {
				return nil, fmt.Errorf("%w: final pair %q is out of range", ErrInvalid, s[i:])
			}
			out = append(out, byte(n))
			break
		}
		c, d, e := decodeTable[s[i]], decodeTable[s[i+1]], decodeTable[s[i+2]]
		if c < 0 || d < 0 || e < 0 {
			return nil, fmt.Errorf("%w: character outside the alphabet near offset %d", ErrInvalid, i)
		}
		n := int(c) + int(d)*45 + int(e)*45*45
		if n > 0xffff {
			return nil, fmt.Errorf("%w: triple %q is out of range", ErrInvalid, s[i:i+3])
		}
		out = append(out, byte(n>>8), byte(n))
	}
	return out, nil
}
