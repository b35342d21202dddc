// Package feed is the health departments' risk data as the authority
// takes it (docs/authority.md): a signed, versioned feed of one kind (risk
// areas, cases, close contacts) holding a CSV or JSON table. It signs
// feeds, opens them against the configured feed keys, and parses their
// tables, turning every ID number into its subject pseudonym as it reads
// it. It keeps nothing. The authority's server (internal/authority)
// imports it, and cmd/authority, the demo's stand-in health department.
package feed

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/checkpointd/checkpoint/internal/credential"
	"github.com/checkpointd/checkpoint/internal/rules"
	"github.com/checkpointd/checkpoint/internal/trust"
)

// The kinds of feed.
const (
	RiskAreas     = "risk_areas"
	Cases         = "cases"
	CloseContacts = "close_contacts"
)

// Kinds are the kinds of feed.
var Kinds = []string{RiskAreas, Cases, CloseContacts}

// The formats of a feed's table.
const (
	CSV  = "csv"
	JSON = "json"
)

// TypeFeed is the COSE content type of a signed feed.
const TypeFeed = "application/cp-feed+cbor"

// MaxEntries bounds the rows of a feed.
const MaxEntries = 500_000

// Errors.
var (
	// ErrMalformed is a feed that does not decode, or a table that does
	// not parse (the message names the row, never its content).
	ErrMalformed = errors.New("feed: malformed")
	// ErrBadSignature is a feed signed by no configured feed key.
	ErrBadSignature = errors.New("feed: not signed by a configured feed key")
)

// Feed is a health department's feed.
type Feed struct {
	Kind    string    `cbor:"1,keyasint"`
	Version uint64    `cbor:"2,keyasint"`
	Issued  time.Time `cbor:"3,keyasint"`
	Format  string    `cbor:"4,keyasint"`
	Content []byte    `cbor:"5,keyasint"`
}

var (
	encMode cbor.EncMode
	decMode cbor.DecMode
)

func init() {
	var err error
	opts := cbor.CoreDetEncOptions()
	opts.Time = cbor.TimeUnix
	if encMode, err = opts.EncMode(); err != nil {
		panic(err)
	}
	decMode, err = cbor.DecOptions{
		DupMapKey: cbor.DupMapKeyEnforcedAPF, IndefLength: cbor.IndefLengthForbidden, TagsMd: cbor.TagsForbidden,
		MaxNestedLevels: 4, MaxMapPairs: 16, MaxArrayElements: 16, UTF8: cbor.UTF8RejectInvalid,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
	}.DecMode()
	if err != nil {
		panic(err)
	}
}

func (f *Feed) check() error {
	switch {
	case !slices.Contains(Kinds, f.Kind):
		return fmt.Errorf("%w: kind %q is not one of %v", ErrMalformed, f.Kind, Kinds)
	case f.Version == 0:
		return fmt.Errorf("%w: versions start at 1", ErrMalformed)
	case f.Issued.IsZero():
		return fmt.Errorf("%w: no issue time", ErrMalformed)
	case f.Format != CSV && f.Format != JSON:
		return fmt.Errorf("%w: format %q is not csv or json", ErrMalformed, f.Format)
	}
	return nil
}

// Sign signs f with a feed key.
func Sign(f Feed, key ed25519.PrivateKey) ([]byte, error) {
	f.Issued = f.Issued.Truncate(time.Second)
	if err := f.check(); err != nil {
		return nil, err
	}
	payload, err := encMode.Marshal(f)
	if err != nil {
		return nil, err
	}
	return trust.SignObject(TypeFeed, payload, key)
}

// Opened is a feed whose signature verified: the feed, its issuer (the
// hex key id of the feed key that signed it: versions count per kind and
// issuer) and its digest (SHA-256 of the signed payload: a version sent
// twice is the same feed only if the digests match).
type Opened struct {
	Feed
	Issuer string
	Digest [32]byte
}

// Open checks that data is a feed signed by one of keys and returns it.
func Open(data []byte, keys []ed25519.PublicKey) (*Opened, error) {
	var payload []byte
	var signer ed25519.PublicKey
	for _, k := range keys {
		p, err := trust.OpenObject(data, TypeFeed, k)
		if err == nil {
			payload, signer = p, k
			break
		}
		if !errors.Is(err, trust.ErrBadSignature) {
			return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
	}
	if signer == nil {
		if _, err := trust.OpenObject(data, TypeFeed); !errors.Is(err, trust.ErrBadSignature) {
			return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		return nil, ErrBadSignature
	}
	o := &Opened{Issuer: hex.EncodeToString(credential.KeyIDOf(signer)), Digest: sha256.Sum256(payload)}
	if err := decMode.Unmarshal(payload, &o.Feed); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if err := o.check(); err != nil {
		return nil, err
	}
	return o, nil
}

// Area is a row of a risk-area feed: a region code (GB/T 2260, any
// level), listed from From until To (excluded; zero: no end yet). In the
// table, "to" is the last listed day (a date) or an instant (RFC 3339),
// or empty.
type Area = rules.Area

// Listing is a row of a case or close-contact feed: the person's subject
// pseudonym, and since when they are a case or a contact (the exposure
// the quarantine counts from).
type Listing struct {
	Subject []byte
	Since   time.Time
}

// header returns the columns of a kind's table.
func header(kind string) []string {
	if kind == RiskAreas {
		return []string{"region", "from", "to"}
	}
	return []string{"id_number", "since"}
}

// bom is the byte order mark spreadsheets put before UTF-8 text.
var bom = []byte("\xef\xbb\xbf")

// rows reads the table of f as rows of its kind's columns, in order. A
// byte order mark before the table is skipped.
func rows(f *Feed) ([][]string, error) {
	cols := header(f.Kind)
	content := bytes.TrimPrefix(f.Content, bom)
	var out [][]string
	switch f.Format {
	case CSV:
		r := csv.NewReader(bytes.NewReader(content))
		r.FieldsPerRecord = len(cols)
		r.TrimLeadingSpace = true
		first, err := r.Read()
		if err != nil || !slices.Equal(first, cols) {
			return nil, fmt.Errorf("%w: the first line must be the header %q", ErrMalformed, strings.Join(cols, ","))
		}
		for {
			rec, err := r.Read()
			if err == io.EOF {
				break
			}
			if err != nil {
				var pe *csv.ParseError
				if errors.As(err, &pe) {
					return nil, fmt.Errorf("%w: line %d: %v", ErrMalformed, pe.Line, pe.Err)
				}
				return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
			}
			if len(out) == MaxEntries {
				return nil, fmt.Errorf("%w: more than %d rows", ErrMalformed, MaxEntries)
			}
			out = append(out, slices.Clone(rec))
		}
	case JSON:
		var objs []map[string]string
		dec := json.NewDecoder(bytes.NewReader(content))
		if err := dec.Decode(&objs); err != nil {
			return nil, fmt.Errorf("%w: want an array of objects with string fields %v", ErrMalformed, cols)
		}
		if _, err := dec.Token(); err != io.EOF {
			return nil, fmt.Errorf("%w: more than one JSON value", ErrMalformed)
		}
		if len(objs) > MaxEntries {
			return nil, fmt.Errorf("%w: more than %d rows", ErrMalformed, MaxEntries)
		}
		for i, o := range objs {
			rec := make([]string, len(cols))
			for j, c := range cols {
				rec[j] = o[c]
			}
			for k := range o {
				if !slices.Contains(cols, k) {
					return nil, fmt.Errorf("%w: row %d: unknown field %q", ErrMalformed, i+1, k)
				}
			}
			out = append(out, rec)
		}
	}
	return out, nil
}

// rowName names a data row in errors: its line in a CSV table (after the
// header), its position in a JSON array.
func rowName(f *Feed, i int) string {
	if f.Format == CSV {
		return fmt.Sprintf("line %d", i+2)
	}
	return fmt.Sprintf("row %d", i+1)
}

// ParseAreas reads a risk-area feed's table.
func ParseAreas(f *Feed) ([]Area, error) {
	if f.Kind != RiskAreas {
		return nil, fmt.Errorf("%w: a %s feed has no risk areas", ErrMalformed, f.Kind)
	}
	recs, err := rows(f)
	if err != nil {
		return nil, err
	}
	out := make([]Area, 0, len(recs))
	for i, rec := range recs {
		region, ok := rules.Region(rec[0])
		if !ok {
			return nil, fmt.Errorf("%w: %s: region must be a code of 2, 4, 6, 9 or 12 digits", ErrMalformed, rowName(f, i))
		}
		a := Area{Region: region}
		if a.From, err = rules.ParseTime(rec[1]); err != nil {
			return nil, fmt.Errorf("%w: %s: from must be YYYY-MM-DD or an RFC 3339 time", ErrMalformed, rowName(f, i))
		}
		if rec[2] != "" {
			if a.To, err = rules.ParseTime(rec[2]); err != nil {
				return nil, fmt.Errorf("%w: %s: to must be empty, YYYY-MM-DD or an RFC 3339 time", ErrMalformed, rowName(f, i))
			}
			if len(rec[2]) == len("2006-01-02") {
				a.To = a.To.AddDate(0, 0, 1) // the last listed day, whole
			}
			if !a.To.After(a.From) {
				return nil, fmt.Errorf("%w: %s: to is not after from", ErrMalformed, rowName(f, i))
			}
		}
		out = append(out, a)
	}
	return out, nil
}

// ParseListings reads a case or close-contact feed's table, turning each
// ID number into its subject with pseudonym as soon as it is read: the
// numbers go no further. A listing since after the feed was issued (when
// f.Issued is known) is refused: nobody is on a list from a time to come,
// and the quarantine would count from it.
func ParseListings(f *Feed, pseudonym func(idNumber string) []byte) ([]Listing, error) {
	if f.Kind != Cases && f.Kind != CloseContacts {
		return nil, fmt.Errorf("%w: a %s feed lists nobody", ErrMalformed, f.Kind)
	}
	recs, err := rows(f)
	if err != nil {
		return nil, err
	}
	out := make([]Listing, 0, len(recs))
	for i, rec := range recs {
		id, err := credential.ParseID(rec[0])
		if err != nil {
			return nil, fmt.Errorf("%w: %s: id_number: %v", ErrMalformed, rowName(f, i), err)
		}
		since, err := rules.ParseTime(rec[1])
		if err != nil {
			return nil, fmt.Errorf("%w: %s: since must be YYYY-MM-DD or an RFC 3339 time", ErrMalformed, rowName(f, i))
		}
		if !f.Issued.IsZero() && since.After(f.Issued) {
			return nil, fmt.Errorf("%w: %s: since is after the feed was issued", ErrMalformed, rowName(f, i))
		}
		out = append(out, Listing{Subject: pseudonym(id), Since: since})
		rec[0] = ""
	}
	return out, nil
}
