package credential_test

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"math/rand/v2"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/checkpointd/checkpoint/internal/base45"
	"github.com/checkpointd/checkpoint/internal/credential"
	"github.com/checkpointd/checkpoint/internal/credential/credentialtest"
	"github.com/checkpointd/checkpoint/internal/qrcode"
)

// randomCredential draws a credential within the format's limits.
func randomCredential(r *rand.Rand, holder ed25519.PublicKey) *credential.Credential {
	b := func(n int) []byte {
		out := make([]byte, n)
		for i := range out {
			out[i] = byte(r.UintN(256))
		}
		return out
	}
	names := []string{"", "李", "王芳", "欧阳明月", "Ayşe Yılmaz", "阿卜杜拉·买买提"}
	iat := time.Unix(r.Int64N(4_000_000_000)+1, 0).UTC()
	c := &credential.Credential{
		Issuer:     strings.Repeat("G", 1+r.IntN(credential.MaxIssuerLen)),
		ID:         b(credential.IDSize),
		Subject:    b(credential.SubjectSize),
		Status:     credential.Status(1 + r.IntN(3)),
		Region:     strconv.FormatUint(1+r.Uint64N(999_999_999_999), 10),
		MaskedName: credential.MaskName(names[r.IntN(len(names))]),
		IDHash:     b(credential.IDHashSize),
		IssuedAt:   iat,
		Expires:    iat.Add(time.Duration(1+r.IntN(1000)) * time.Hour),
	}
	if r.IntN(4) != 0 {
		c.HolderKey = holder
	}
	return c
}

func TestRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	issuer := credentialtest.Key("issuer")
	holder := credentialtest.Key("holder")
	for i := 0; i < 300; i++ {
		c := randomCredential(r, holder.Public().(ed25519.PublicKey))
		raw, err := credential.Issue(c, issuer)
		if err != nil {
			t.Fatalf("issue %+v: %v", c, err)
		}
		text := credential.EncodeText(raw)
		if !c.Static() {
			at := c.IssuedAt.Add(time.Minute)
			p, err := credential.Present(raw, holder, at)
			if err != nil {
				t.Fatal(err)
			}
			text = credential.EncodeText(p)
		}
		code, err := credential.ParseText(text)
		if err != nil {
			t.Fatalf("parse: %v", err)
		}
		got := code.Credential
		if got.Issuer != c.Issuer || !bytes.Equal(got.ID, c.ID) || !bytes.Equal(got.Subject, c.Subject) ||
			got.Status != c.Status || got.Region != c.Region || got.MaskedName != c.MaskedName ||
			!bytes.Equal(got.IDHash, c.IDHash) || !got.IssuedAt.Equal(c.IssuedAt) ||
			!got.Expires.Equal(c.Expires) || !bytes.Equal(got.HolderKey, c.HolderKey) || !bytes.Equal(got.KeyID, c.KeyID) {
			t.Fatalf("round trip changed the credential:\n got %+v\nwant %+v", got, *c)
		}
		if code.Presented == c.Static() {
			t.Fatalf("presented=%v for static=%v", code.Presented, c.Static())
		}
		if err := code.VerifyIssuer(issuer.Public().(ed25519.PublicKey)); err != nil {
			t.Fatal(err)
		}
		if !c.Static() {
			if err := code.VerifyHolder(); err != nil {
				t.Fatal(err)
			}
		}
		back, err := code.CredentialBytes()
		if err != nil || !bytes.Equal(back, raw) {
			t.Fatalf("credential bytes changed in the round trip")
		}
	}
}

func TestIssueRejects(t *testing.T) {
	f := credentialtest.New()
	for name, edit := range map[string]func(*credential.Credential){
		"no issuer":         func(c *credential.Credential) { c.Issuer = "" },
		"long issuer":       func(c *credential.Credential) { c.Issuer = "GUANGDONG" },
		"short id":          func(c *credential.Credential) { c.ID = c.ID[:4] },
		"short subject":     func(c *credential.Credential) { c.Subject = c.Subject[:4] },
		"no colour":         func(c *credential.Credential) { c.Status = 0 },
		"letters in region": func(c *credential.Credential) { c.Region = "GD" },
		"leading zero":      func(c *credential.Credential) { c.Region = "0440" },
		"unmasked name":     func(c *credential.Credential) { c.MaskedName = "张三丰" + "丰" },
		"ends before start": func(c *credential.Credential) { c.Expires = c.IssuedAt },
		"bad holder key":    func(c *credential.Credential) { c.HolderKey = c.HolderKey[:8] },
	} {
		if _, err := credential.Issue(f.Credential(edit), f.Issuer); !errors.Is(err, credential.ErrMalformed) {
			t.Errorf("%s: Issue error %v, want ErrMalformed", name, err)
		}
	}
	cred := f.Issue(f.Credential(nil))
	if _, err := credential.Present(cred, credentialtest.Key("someone else"), f.Now); err == nil {
		t.Error("presented a credential with someone else's key")
	}
	static := f.Issue(f.Credential(func(c *credential.Credential) { c.HolderKey = nil }))
	if _, err := credential.Present(static, f.Holder, f.Now); !errors.Is(err, credential.ErrNoHolderKey) {
		t.Errorf("presenting a paper code: %v", err)
	}
}

// TestSizeBudget holds the format to its promise: a typical presentation
// fits QR version 12 at level M, and so does one with any two of the
// variable fields at their largest, as docs/credential.md says; a paper code
// fits version 8.
func TestSizeBudget(t *testing.T) {
	f := credentialtest.New()
	const (
		longIssuer = "ABCDEFGH"
		longRegion = "440305001001"
		rareName   = "𠀀𠀀𠀀" // three characters of 4 bytes each
	)
	cases := []struct {
		name    string
		edit    func(*credential.Credential)
		maxVer  int
		maxText int
	}{
		{"typical", nil, 12, 399},
		{"two-character name", func(c *credential.Credential) { c.MaskedName = credential.MaskName("王芳") }, 12, 399},
		{"four-character name", func(c *credential.Credential) { c.MaskedName = credential.MaskName("欧阳明月") }, 12, 399},
		{"rare four-byte character", func(c *credential.Credential) { c.MaskedName = "𠀀*丰" }, 12, 400},
		{"city region", func(c *credential.Credential) { c.Region = "4403" }, 12, 400},
		{"county region", func(c *credential.Credential) { c.Region = "440305" }, 12, 403},
		{"8-byte issuer, 12-digit region", func(c *credential.Credential) {
			c.Issuer, c.Region = longIssuer, longRegion
		}, 12, 419},
		{"8-byte issuer, rare characters", func(c *credential.Credential) {
			c.Issuer, c.MaskedName = longIssuer, rareName
		}, 12, 419},
		{"12-digit region, rare characters", func(c *credential.Credential) {
			c.Region, c.MaskedName = longRegion, rareName
		}, 12, 419},
		{"everything at its largest", func(c *credential.Credential) {
			c.Issuer, c.Region, c.MaskedName = longIssuer, longRegion, rareName
		}, 13, 426},
	}
	for _, tc := range cases {
		text := f.Present(f.Issue(f.Credential(tc.edit)), f.Now)
		v, err := qrcode.Version(text)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %d characters, %d bytes, QR version %d", tc.name, len(text), (len(text)-len(credential.Prefix))*2/3, v)
		if v > tc.maxVer || len(text) > tc.maxText {
			t.Errorf("%s: %d characters need QR version %d, budget %d characters, version %d", tc.name, len(text), v, tc.maxText, tc.maxVer)
		}
		for _, c := range text {
			if !strings.ContainsRune(base45.Alphabet, c) {
				t.Fatalf("%q is outside the QR alphanumeric set", c)
			}
		}
	}
	paper := credential.EncodeText(f.Issue(f.Credential(func(c *credential.Credential) { c.HolderKey = nil })))
	if v, err := qrcode.Version(paper); err != nil || v > 8 || len(paper) > 211 {
		t.Errorf("paper code: %d characters, QR version %d (%v), budget 211 characters, version 8", len(paper), v, err)
	}
}

func TestParseTextErrors(t *testing.T) {
	f := credentialtest.New()
	good := f.Text()
	for _, tc := range []struct {
		text string
		want error
	}{
		{"", credential.ErrMalformed},
		{"HC1:NCFOXN%TS3DH", credential.ErrMalformed},
		{"CP2", credential.ErrMalformed},
		{"CP1:" + good[4:], credential.ErrUnsupportedVersion},
		{"CP1:ABC", credential.ErrUnsupportedVersion},
		{"CP3:" + good[4:], credential.ErrUnsupportedVersion},
		{"CP10:ABC", credential.ErrUnsupportedVersion},
		{"cp2:" + good[4:], credential.ErrMalformed},
		{good[:len(good)-1], credential.ErrMalformed},
		{good + "00", credential.ErrMalformed},
		{credential.Prefix + base45.Encode([]byte{0x84, 0x40, 0xa0, 0xf6, 0x40}), credential.ErrMalformed},
		{credential.Prefix + base45.Encode(bytes.Repeat([]byte{0x81}, 200)), credential.ErrMalformed},
	} {
		if _, err := credential.ParseText(tc.text); !errors.Is(err, tc.want) {
			t.Errorf("ParseText(%.30q) error %v, want %v", tc.text, err, tc.want)
		}
	}
	// A handheld scanner's line ending is not part of the code.
	if _, err := credential.ParseText(good + "\r\n"); err != nil {
		t.Errorf("code with CRLF: %v", err)
	}
}

func TestMaskName(t *testing.T) {
	for in, want := range map[string]string{
		"":            "",
		"李":           "李",
		"王芳":          "王*",
		"张三丰":         "张*丰",
		"欧阳明月":        "欧*月",
		" 张 三 ":       "张*",
		"Ayşe Yılmaz": "A*z",
		"阿卜杜拉·买买提":    "阿*提",
	} {
		if got := credential.MaskName(in); got != want {
			t.Errorf("MaskName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestIDDerivations(t *testing.T) {
	key := []byte("k")
	a := credential.Pseudonym(key, "11010519491231002X")
	if !bytes.Equal(a, credential.Pseudonym(key, " 11010519491231002x ")) {
		t.Error("pseudonym depends on the case of the check letter")
	}
	if bytes.Equal(a, credential.Pseudonym([]byte("other key"), "11010519491231002X")) {
		t.Error("pseudonym does not depend on the key")
	}
	if bytes.Equal(a, credential.Pseudonym(key, "440305199003071236")) {
		t.Error("pseudonyms of two numbers collide")
	}
	h := credential.IDHash("11010519491231002X", a)
	if len(h) != credential.IDHashSize || !bytes.Equal(h, credential.IDHash("11010519491231002x", a)) {
		t.Errorf("ID hash %x: want %d bytes, the same for a lower-case check letter", h, credential.IDHashSize)
	}
	if bytes.Equal(h, credential.IDHash("11010519491231002X", credential.Pseudonym(key, "x"))) {
		t.Error("ID hash is not salted by the subject")
	}
}

func TestParseID(t *testing.T) {
	for _, tc := range []struct {
		in, want string // want "" for a refusal
		mention  string // what the refusal says
	}{
		{"11010519491231002X", "11010519491231002X", ""},
		{" 11010519491231002x\n", "11010519491231002X", ""},
		{"440305199003071236", "440305199003071236", ""},
		{"44030519880506122X", "44030519880506122X", ""},
		{"440305190001010017", "440305190001010017", ""}, // born 1900-01-01
		{"440305200002290010", "440305200002290010", ""}, // 29 February of a leap year
		{"440305199003071234", "", "check character"},
		{"11010519491231002Y", "", "digit or X"},
		{"110105194912310021", "", "check character"},
		{"440305zz1224", "", "18 characters"},
		{"4403051990030zz23X", "", "character 14 is not a digit"},
		{"440305900307123", "", "first-generation"},
		{"11010549123100", "", "18 characters"},
		{"1101051949123100200", "", "18 characters"},
		{"", "", "18 characters"},
		{"440305199002300017", "", "birth date"},  // 30 February
		{"440305199013010015", "", "birth date"},  // month 13
		{"440305189912310012", "", "birth date"},  // 1899
		{"040305199003071231", "", "region code"}, // no region starts with 0
		{"44030５199003071236", "", "18 characters"},
	} {
		got, err := credential.ParseID(tc.in)
		if tc.want != "" {
			if got != tc.want || err != nil {
				t.Errorf("ParseID(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
			continue
		}
		if !errors.Is(err, credential.ErrBadIDNumber) || got != "" || !strings.Contains(err.Error(), tc.mention) {
			t.Errorf("ParseID(%q) = %q, %v; want ErrBadIDNumber saying %q", tc.in, got, err, tc.mention)
		}
		if err != nil && len(tc.in) > 4 && strings.Contains(err.Error(), tc.in[:len(tc.in)-3]) {
			t.Errorf("ParseID(%q): the error %q repeats the number", tc.in, err)
		}
	}
}

func FuzzParseText(f *testing.F) {
	fx := credentialtest.New()
	f.Add(fx.Text())
	f.Add(credential.EncodeText(fx.Issue(fx.Credential(func(c *credential.Credential) { c.HolderKey = nil }))))
	f.Add("CP2:")
	f.Add("CP1:ABC")
	f.Add("CP3:ABC")
	f.Add("CP2:GGW")
	f.Fuzz(func(t *testing.T, text string) {
		code, err := credential.ParseText(text)
		if err != nil {
			if !errors.Is(err, credential.ErrMalformed) && !errors.Is(err, credential.ErrUnsupportedVersion) {
				t.Fatalf("error %v is neither malformed nor unsupported", err)
			}
			return
		}
		if code.Credential.Status < credential.Green || code.Credential.Status > credential.Red {
			t.Fatalf("parsed a code with status %d", code.Credential.Status)
		}
	})
}

// FuzzParse feeds the CBOR decoding directly, skipping base45.
func FuzzParse(f *testing.F) {
	fx := credentialtest.New()
	cred := fx.Issue(fx.Credential(nil))
	p, _ := credential.Present(cred, fx.Holder, fx.Now)
	f.Add(p)
	f.Add(cred)
	f.Add([]byte{0x84, 0x40, 0xa0, 0x40, 0x40})
	f.Add(bytes.Repeat([]byte{0x81}, 100))
	f.Add([]byte{0x9f, 0xff})
	f.Fuzz(func(t *testing.T, raw []byte) {
		code, err := credential.Parse(raw)
		if err != nil {
			if !errors.Is(err, credential.ErrMalformed) {
				t.Fatalf("error %v is not ErrMalformed", err)
			}
			return
		}
		_ = code.VerifyIssuer(fx.Issuer.Public().(ed25519.PublicKey))
		_ = code.VerifyHolder()
		_ = code.Fingerprint()
	})
}

// TestHostileInput feeds the kinds of input an attacker would craft and
// checks each is refused as malformed without building anything large:
// the text cap bounds the bytes, and the CBOR limits bound the structures.
func TestHostileInput(t *testing.T) {
	f := credentialtest.New()
	cred := f.Issue(f.Credential(nil))
	wrap := func(payload []byte) []byte { // a COSE_Sign1 around payload
		out := []byte{0x84, 0x43, 0xa1, 0x01, 0x27, 0xa0, 0x58, byte(len(payload))}
		out = append(out, payload...)
		out = append(out, 0x58, 0x40)
		return append(out, make([]byte, 64)...)
	}
	cases := map[string][]byte{
		"random bytes":              bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef}, 60),
		"huge declared byte string": {0x84, 0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		"huge declared array":       {0x9b, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00},
		"huge declared map":         wrap([]byte{0xbb, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00}),
		"deep nesting":              bytes.Repeat([]byte{0x81}, 250),
		"deep nesting in claims":    wrap(append(bytes.Repeat([]byte{0x81}, 100), 0x00)),
		"indefinite length":         {0x9f, 0x40, 0xa0, 0x40, 0x40, 0xff},
		"tagged":                    append([]byte{0xd2}, cred...),
		"claims are an integer":     wrap([]byte{0x18, 0x2a}),
		"issuer is an integer":      wrap([]byte{0xa1, 0x01, 0x18, 0x2a}),
		"duplicate claim":           wrap([]byte{0xa2, 0x01, 0x61, 0x41, 0x01, 0x61, 0x42}),
		"no health-code claim":      wrap([]byte{0xa1, 0x01, 0x62, 0x47, 0x44}),
		"truncated credential":      cred[:len(cred)/2],
		"credential and more":       append(append([]byte(nil), cred...), 0x00),
		"empty":                     {},
	}
	for name, raw := range cases {
		t.Run(name, func(t *testing.T) {
			text := credential.Prefix + base45.Encode(raw)
			if len(text) > credential.MaxTextLen {
				text = text[:credential.MaxTextLen]
			}
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := credential.ParseText(text)
			runtime.ReadMemStats(&after)
			if !errors.Is(err, credential.ErrMalformed) {
				t.Fatalf("error %v, want ErrMalformed", err)
			}
			if n := after.TotalAlloc - before.TotalAlloc; n > 256<<10 {
				t.Errorf("parsing %d bytes allocated %d bytes", len(raw), n)
			}
		})
	}
}
