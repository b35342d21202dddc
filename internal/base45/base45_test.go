package base45

import (
	"bytes"
	"errors"
	"testing"
)

// The examples of RFC 9285 sections 4.3 and 4.4.
var rfcVectors = []struct{ raw, enc string }{
	{"AB", "BB8"},
	{"Hello!!", "%69 VD92EX0"},
	{"base-45", "UJCLQE7W581"},
	{"ietf!", "QED8WEX0"},
	{"", ""},
}

func TestRFCVectors(t *testing.T) {
	for _, v := range rfcVectors {
		if got := Encode([]byte(v.raw)); got != v.enc {
			t.Errorf("Encode(%q) = %q, want %q", v.raw, got, v.enc)
		}
		got, err := Decode(v.enc)
		if err != nil || string(got) != v.raw {
			t.Errorf("Decode(%q) = %q, %v; want %q", v.enc, got, err, v.raw)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	for _, s := range []string{
		"A",      // one character left over
		"GGW",    // 65535 < value of the triple
		":::",    // largest triple, out of range
		"GGWAB",  // bad first triple
		"ab8",    // lower case is outside the alphabet
		"B\x00B", // control character
		"BB8:",   // trailing single character
		"::",     // final pair above 255
	} {
		if _, err := Decode(s); !errors.Is(err, ErrInvalid) {
			t.Errorf("Decode(%q) error = %v, want ErrInvalid", s, err)
		}
	}
}

func TestEncodedLen(t *testing.T) {
	for n := 0; n < 50; n++ {
		if got, want := EncodedLen(n), len(Encode(make([]byte, n))); got != want {
			t.Errorf("EncodedLen(%d) = %d, want %d", n, got, want)
		}
	}
}

func FuzzRoundTrip(f *testing.F) {
	f.Add([]byte("Hello!!"))
	f.Add([]byte{0xff, 0xff, 0x00})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		back, err := Decode(Encode(raw))
		if err != nil || !bytes.Equal(back, raw) {
			t.Fatalf("round trip of %x gave %x, %v", raw, back, err)
		}
	})
}

func FuzzDecode(f *testing.F) {
	for _, v := range rfcVectors {
		f.Add(v.enc)
	}
	f.Add("GGW")
	f.Fuzz(func(t *testing.T, s string) {
		raw, err := Decode(s)
		if err != nil {
			return
		}
		// Whatever decodes must encode back to the same text: the encoding
		// is canonical.
		if Encode(raw) != s {
			t.Fatalf("Decode(%q) = %x, which encodes to %q", s, raw, Encode(raw))
		}
	})
}
