package export

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
)

// signedManifest is the manifest file: the manifest, and the Ed25519
// signature over its compact JSON (the file shows it indented; the
// signature is checked over json.Compact of what is there).
type signedManifest struct {
	Manifest  json.RawMessage `json:"manifest"`
	Signature []byte          `json:"signature"`
}

// Sign signs m with the device key and returns the manifest file's
// bytes.
func Sign(m Manifest, key ed25519.PrivateKey) ([]byte, error) {
	m.PublicKey = hex.EncodeToString(key.Public().(ed25519.PublicKey))
	raw, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	out, err := json.MarshalIndent(signedManifest{Manifest: raw, Signature: ed25519.Sign(key, raw)}, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

// OpenManifest checks a manifest file's signature against the box's
// public key and returns the manifest.
func OpenManifest(signed []byte, pub ed25519.PublicKey) (Manifest, error) {
	var sm signedManifest
	if err := json.Unmarshal(signed, &sm); err != nil {
		return Manifest{}, fmt.Errorf("%w: the manifest does not parse: %v", ErrCheck, err)
	}
	if len(pub) != ed25519.PublicKeySize {
		return Manifest{}, fmt.Errorf("%w: no device public key to check the signature with", ErrCheck)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, sm.Manifest); err != nil {
		return Manifest{}, fmt.Errorf("%w: the manifest does not parse: %v", ErrCheck, err)
	}
	if !ed25519.Verify(pub, compact.Bytes(), sm.Signature) {
		return Manifest{}, fmt.Errorf("%w: the manifest's signature is not this box's", ErrCheck)
	}
	var m Manifest
	if err := json.Unmarshal(sm.Manifest, &m); err != nil {
		return Manifest{}, fmt.Errorf("%w: the manifest does not parse: %v", ErrCheck, err)
	}
	if m.Version != 1 {
		return m, fmt.Errorf("%w: manifest version %d", ErrCheck, m.Version)
	}
	return m, nil
}

// Check verifies an export (its plain bytes) against its signed manifest:
// the signature, then every row (sequence numbers rising; for an export
// of the whole log, none missing and each linked to the one before), the
// count, the first and last hashes, and the file's SHA-256. The error
// names the first thing that failed.
func Check(data io.Reader, signed []byte, pub ed25519.PublicKey) (Manifest, error) {
	m, err := OpenManifest(signed, pub)
	if err != nil {
		return m, err
	}
	sum := sha256.New()
	in := bufio.NewReaderSize(io.TeeReader(data, sum), 64<<10)
	var (
		n           int
		first, last Row
		prevSeq     uint64
		prevHash    string
		whole       = m.Filter == ""
		next        func() (Row, error)
		lineOf      = func() int { return n + 1 }
		errRow      = func(format string, args ...any) error {
			return fmt.Errorf("%w: row %d: "+format, append([]any{ErrCheck, lineOf()}, args...)...)
		}
		seqCol, prevCol, hc = 0, len(columns) - 2, len(columns) - 1
	)
	switch m.Format {
	case CSV:
		r := csv.NewReader(in)
		r.ReuseRecord = true
		head, err := r.Read()
		if err != nil || !slices.Equal(head, columns) {
			return m, fmt.Errorf("%w: the CSV header is not an export's", ErrCheck)
		}
		next = func() (Row, error) {
			rec, err := r.Read()
			if err != nil {
				return Row{}, err
			}
			if len(rec) != len(columns) {
				return Row{}, errRow("%d columns", len(rec))
			}
			seq, err := strconv.ParseUint(rec[seqCol], 10, 64)
			if err != nil {
				return Row{}, errRow("sequence number %q", rec[seqCol])
			}
			return Row{Seq: seq, Prev: rec[prevCol], Hash: rec[hc]}, nil
		}
	case JSONL:
		dec := json.NewDecoder(in)
		next = func() (Row, error) {
			var row Row
			if err := dec.Decode(&row); err != nil {
				if err == io.EOF {
					return row, err
				}
				return row, errRow("%v", err)
			}
			return row, nil
		}
	default:
		return m, fmt.Errorf("%w: format %q", ErrCheck, m.Format)
	}
	for {
		row, err := next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return m, fmt.Errorf("%w: row %d: %v", ErrCheck, n+1, err)
		}
		if n > 0 {
			switch {
			case row.Seq <= prevSeq:
				return m, errRow("event %d after event %d", row.Seq, prevSeq)
			case whole && row.Seq != prevSeq+1:
				return m, errRow("events %d to %d are missing", prevSeq+1, row.Seq-1)
			case whole && row.Prev != prevHash:
				return m, errRow("event %d does not link to event %d", row.Seq, prevSeq)
			}
		} else {
			first = row
		}
		last, prevSeq, prevHash = row, row.Seq, row.Hash
		n++
	}
	switch {
	case n != m.Count:
		return m, fmt.Errorf("%w: %d rows, the manifest says %d", ErrCheck, n, m.Count)
	case n > 0 && (first.Seq != m.FirstSeq || first.Hash != m.FirstHash):
		return m, fmt.Errorf("%w: the first row is not event %d as signed", ErrCheck, m.FirstSeq)
	case n > 0 && (last.Seq != m.LastSeq || last.Hash != m.LastHash):
		return m, fmt.Errorf("%w: the last row is not event %d as signed", ErrCheck, m.LastSeq)
	}
	if _, err := io.Copy(io.Discard, in); err != nil {
		return m, err
	}
	if got := hex.EncodeToString(sum.Sum(nil)); got != m.SHA256 {
		return m, fmt.Errorf("%w: the file's contents differ from those signed (SHA-256)", ErrCheck)
	}
	return m, nil
}
