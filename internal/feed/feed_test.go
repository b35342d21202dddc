package feed

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/checkpointd/checkpoint/internal/credential"
	"github.com/checkpointd/checkpoint/internal/rules"
)

func key(name string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte(name))
	return ed25519.NewKeyFromSeed(seed[:])
}

func pub(k ed25519.PrivateKey) ed25519.PublicKey { return k.Public().(ed25519.PublicKey) }

var issued = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func pseudo(id string) []byte {
	return credential.Pseudonym([]byte("0123456789abcdef0123456789abcdef"), id)
}

// TestSignAndOpen: a feed opens with its key among others, names the key
// as its issuer and has a digest of its signed content; with no key of
// its signer, or changed, it does not open.
func TestSignAndOpen(t *testing.T) {
	health := key("health")
	f := Feed{Kind: CloseContacts, Version: 3, Issued: issued, Format: CSV, Content: []byte("id_number,since\n")}
	raw, err := Sign(f, health)
	if err != nil {
		t.Fatal(err)
	}
	o, err := Open(raw, []ed25519.PublicKey{pub(key("other")), pub(health)})
	if err != nil {
		t.Fatal(err)
	}
	if o.Kind != CloseContacts || o.Version != 3 || !o.Issued.Equal(issued) || o.Format != CSV ||
		o.Issuer != hex.EncodeToString(credential.KeyIDOf(pub(health))) {
		t.Errorf("opened %+v", o)
	}
	again, _ := Sign(f, health)
	if o2, _ := Open(again, []ed25519.PublicKey{pub(health)}); o2.Digest != o.Digest {
		t.Error("the same feed signed again has another digest")
	}
	f.Content = []byte("id_number,since\n11010519491231002X,2026-11-20\n")
	other, _ := Sign(f, health)
	if o3, _ := Open(other, []ed25519.PublicKey{pub(health)}); o3.Digest == o.Digest {
		t.Error("another content has the same digest")
	}
	if _, err := Open(raw, []ed25519.PublicKey{pub(key("other"))}); !errors.Is(err, ErrBadSignature) {
		t.Errorf("with an unknown key: %v", err)
	}
	if _, err := Open(raw, nil); !errors.Is(err, ErrBadSignature) {
		t.Errorf("with no key configured: %v", err)
	}
	bad := bytes.Clone(raw)
	bad[len(bad)-1] ^= 1
	if _, err := Open(bad, []ed25519.PublicKey{pub(health)}); !errors.Is(err, ErrBadSignature) {
		t.Errorf("changed: %v", err)
	}
	if _, err := Open([]byte("id_number,since"), []ed25519.PublicKey{pub(health)}); !errors.Is(err, ErrMalformed) {
		t.Errorf("not a feed: %v", err)
	}
	for name, f := range map[string]Feed{
		"kind":    {Kind: "vaccinations", Version: 1, Issued: issued, Format: CSV},
		"version": {Kind: Cases, Issued: issued, Format: CSV},
		"issued":  {Kind: Cases, Version: 1, Format: CSV},
		"format":  {Kind: Cases, Version: 1, Issued: issued, Format: "xml"},
	} {
		if _, err := Sign(f, health); !errors.Is(err, ErrMalformed) {
			t.Errorf("a feed without a good %s: %v", name, err)
		}
	}
}

// TestTables: each kind in CSV and in JSON reads to the same rows.
func TestTables(t *testing.T) {
	day := func(s string) time.Time { d, _ := rules.ParseDay(s); return d }
	areasCSV := "region,from,to\n440111,2026-11-20,2026-11-30\n4403,2026-11-22T08:00:00+08:00,\n"
	areasJSON := `[{"region": "440111", "from": "2026-11-20", "to": "2026-11-30"}, {"region": "4403", "from": "2026-11-22T08:00:00+08:00"}]`
	want := []Area{{Region: "440111", From: day("2026-11-20"), To: day("2026-12-01")},
		{Region: "4403", From: day("2026-11-22").Add(8 * time.Hour)}}
	for format, content := range map[string]string{CSV: areasCSV, JSON: areasJSON} {
		got, err := ParseAreas(&Feed{Kind: RiskAreas, Format: format, Content: []byte(content)})
		if err != nil || len(got) != 2 {
			t.Fatalf("%s: %v %v", format, got, err)
		}
		for i := range want {
			if got[i].Region != want[i].Region || !got[i].From.Equal(want[i].From) || !got[i].To.Equal(want[i].To) {
				t.Errorf("%s row %d: %+v, want %+v", format, i, got[i], want[i])
			}
		}
	}
	listCSV := "id_number,since\n11010519491231002x,2026-11-20\n44030519880506122X,2026-11-24T09:30:00Z\n"
	listJSON := `[{"id_number": "11010519491231002x", "since": "2026-11-20"}, {"id_number": "44030519880506122X", "since": "2026-11-24T09:30:00Z"}]`
	for format, content := range map[string]string{CSV: listCSV, JSON: listJSON} {
		got, err := ParseListings(&Feed{Kind: Cases, Format: format, Content: []byte(content)}, pseudo)
		if err != nil || len(got) != 2 {
			t.Fatalf("%s: %v %v", format, got, err)
		}
		if !bytes.Equal(got[0].Subject, pseudo("11010519491231002X")) || !got[0].Since.Equal(day("2026-11-20")) ||
			!bytes.Equal(got[1].Subject, pseudo("44030519880506122X")) || !got[1].Since.Equal(time.Date(2026, 11, 24, 9, 30, 0, 0, time.UTC)) {
			t.Errorf("%s: %+v", format, got)
		}
	}
}

// TestTableErrors: a bad row refuses the whole feed, naming the row and
// never what it holds.
func TestTableErrors(t *testing.T) {
	const id = "11010519491231002X"
	for _, tc := range []struct {
		kind, format, content, mention string
	}{
		{Cases, CSV, "id,since\n", "header"},
		{Cases, CSV, "", "header"},
		{Cases, CSV, "id_number,since\n" + id + ",2026-11-20\n110105194912310021,2026-11-20\n", "line 3: id_number"},
		{Cases, CSV, "id_number,since\n" + id + ",yesterday\n", "line 2: since"},
		{Cases, CSV, "id_number,since\n" + id + ",2026-11-20,extra\n", "line 2"},
		{Cases, CSV, "id_number,since\n\"" + id + ",2026-11-20\n", "line 2"},
		{CloseContacts, JSON, `[{"id_number": "` + id + `", "since": "2026-11-20", "name": "张三丰"}]`, "row 1: unknown field"},
		{CloseContacts, JSON, `[{"id_number": "` + id + `", "since": 20261120}]`, "array of objects"},
		{CloseContacts, JSON, `{"id_number": "` + id + `"}`, "array of objects"},
		{CloseContacts, JSON, `[] []`, "more than one"},
		{CloseContacts, JSON, `[]]`, "more than one"},
		{RiskAreas, CSV, "region,from,to\n44x,2026-11-20,\n", "line 2: region"},
		{RiskAreas, CSV, "region,from,to\n4401,2026-11-20,2026-11-19\n", "line 2: to is not after from"},
		{RiskAreas, CSV, "region,from,to\n4401,,\n", "line 2: from"},
		{RiskAreas, JSON, `[{"region": "4401", "from": "2026-11-20", "to": "soon"}]`, "row 1: to"},
	} {
		f := &Feed{Kind: tc.kind, Format: tc.format, Content: []byte(tc.content)}
		var err error
		if tc.kind == RiskAreas {
			_, err = ParseAreas(f)
		} else {
			_, err = ParseListings(f, pseudo)
		}
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.mention) {
			t.Errorf("%s %s %q: %v; want an error naming %q", tc.kind, tc.format, tc.content, err, tc.mention)
		}
		if err != nil && (strings.Contains(err.Error(), id[:10]) || strings.Contains(err.Error(), "张")) {
			t.Errorf("the error repeats the row's content: %v", err)
		}
	}
	if _, err := ParseAreas(&Feed{Kind: Cases, Format: CSV}); !errors.Is(err, ErrMalformed) {
		t.Errorf("areas of a case feed: %v", err)
	}
	big := "id_number,since\n" + strings.Repeat("11010519491231002X,2026-11-20\n", MaxEntries+1)
	if _, err := ParseListings(&Feed{Kind: Cases, Format: CSV, Content: []byte(big)}, pseudo); !errors.Is(err, ErrMalformed) {
		t.Errorf("a feed of %d rows: %v", MaxEntries+1, err)
	}
}

// FuzzOpen: hostile bytes open as a checked feed or fail with one of the
// package's errors.
func FuzzOpen(f *testing.F) {
	health := key("health")
	raw, _ := Sign(Feed{Kind: Cases, Version: 1, Issued: issued, Format: CSV, Content: []byte("id_number,since\n")}, health)
	f.Add(raw)
	f.Add([]byte{0x84, 0x40, 0xa0, 0x40, 0x40})
	keys := []ed25519.PublicKey{pub(health)}
	f.Fuzz(func(t *testing.T, data []byte) {
		o, err := Open(data, keys)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrBadSignature) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if o.check() != nil {
			t.Fatal("an unchecked feed opened")
		}
	})
}

// FuzzTables: any table of any kind and format parses or fails with
// ErrMalformed; what parses is in range.
func FuzzTables(f *testing.F) {
	f.Add(uint8(0), false, []byte("region,from,to\n440111,2026-11-20,2026-11-30\n"))
	f.Add(uint8(1), false, []byte("id_number,since\n11010519491231002x,2026-11-20\n"))
	f.Add(uint8(2), true, []byte(`[{"id_number": "11010519491231002X", "since": "2026-11-24T09:30:00Z"}]`))
	f.Add(uint8(0), true, []byte(`[{"region": "4403", "from": "2026-11-22", "to": ""}]`))
	f.Fuzz(func(t *testing.T, kind uint8, asJSON bool, content []byte) {
		fd := &Feed{Kind: Kinds[int(kind)%len(Kinds)], Format: CSV, Content: content}
		if asJSON {
			fd.Format = JSON
		}
		if fd.Kind == RiskAreas {
			areas, err := ParseAreas(fd)
			if err != nil && !errors.Is(err, ErrMalformed) {
				t.Fatal(err)
			}
			for _, a := range areas {
				if _, ok := rules.Region(a.Region); !ok || (!a.To.IsZero() && !a.To.After(a.From)) {
					t.Fatalf("out of range: %+v", a)
				}
			}
			return
		}
		ls, err := ParseListings(fd, pseudo)
		if err != nil && !errors.Is(err, ErrMalformed) {
			t.Fatal(err)
		}
		for _, l := range ls {
			if len(l.Subject) != 10 || l.Since.IsZero() {
				t.Fatalf("out of range: %+v", l)
			}
		}
	})
}

// TestHostileTables: a byte order mark (as spreadsheets write) and CRLF
// line ends are read; region codes come out as rules.Region gives them; a
// listing since after the feed was issued is refused; duplicate rows are
// kept in order (the later replaces the earlier when applied).
func TestHostileTables(t *testing.T) {
	id := "11010519491231002X"
	f := &Feed{Kind: Cases, Issued: issued, Format: CSV,
		Content: []byte("\xef\xbb\xbfid_number,since\r\n" + id + ",2026-11-20\r\n" + id + ",2026-11-21\r\n")}
	ls, err := ParseListings(f, pseudo)
	if err != nil || len(ls) != 2 || !ls[1].Since.After(ls[0].Since) {
		t.Errorf("a CSV table with a byte order mark and CRLF: %v %v", ls, err)
	}
	f = &Feed{Kind: CloseContacts, Issued: issued, Format: JSON, Content: []byte("\xef\xbb\xbf[]")}
	if _, err := ParseListings(f, pseudo); err != nil {
		t.Errorf("a JSON table with a byte order mark: %v", err)
	}
	for _, since := range []string{"2026-11-26", "2026-11-25T12:00:01Z", "2062-11-25"} {
		f := &Feed{Kind: Cases, Issued: issued, Format: CSV, Content: []byte("id_number,since\n" + id + "," + since + "\n")}
		if _, err := ParseListings(f, pseudo); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "line 2: since") {
			t.Errorf("a listing since %s in a feed issued %v: %v", since, issued, err)
		}
	}
	f = &Feed{Kind: Cases, Issued: issued, Format: CSV, Content: []byte("id_number,since\n" + id + ",2026-11-25T12:00:00Z\n")}
	if _, err := ParseListings(f, pseudo); err != nil {
		t.Errorf("a listing since the very second of the feed: %v", err)
	}
	f = &Feed{Kind: RiskAreas, Issued: issued, Format: CSV, Content: []byte("region,from,to\n440300,2026-11-20,\n440304003000,2026-11-20,\n")}
	areas, err := ParseAreas(f)
	if err != nil || len(areas) != 2 || areas[0].Region != "4403" || areas[1].Region != "440304003" {
		t.Errorf("areas written with trailing zeros: %+v %v", areas, err)
	}
	f = &Feed{Kind: RiskAreas, Issued: issued, Format: CSV, Content: []byte("region,from,to\n440,2026-11-20,\n")}
	if _, err := ParseAreas(f); !errors.Is(err, ErrMalformed) {
		t.Errorf("a region code of 3 digits: %v", err)
	}
}
