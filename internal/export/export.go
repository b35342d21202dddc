// Package export writes a checkpoint's events as CSV or JSON Lines for a
// supervisor, with a manifest signed by the checkpoint's device key (the
// range, the count, the first and last hashes of the chain, the file's
// SHA-256), so that the authority, or anyone holding the box's public key,
// can check where an export came from and that it is whole; and it
// encrypts an export to a supervisor's X25519 key with nacl/box, in
// chunks, so that a USB stick that goes missing gives nothing away.
//
// The local API (internal/localapi) writes exports, checkpointctl checks
// and decrypts them; docs/store.md describes the files.
package export

import (
	"bufio"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/checkpointd/checkpoint/store"
)

// Format is an export's file format.
type Format string

// Formats.
const (
	CSV   Format = "csv"
	JSONL Format = "jsonl"
)

// ParseFormat reads a format's name.
func ParseFormat(s string) (Format, error) {
	switch f := Format(s); f {
	case CSV, JSONL:
		return f, nil
	}
	return "", fmt.Errorf("export: format %q (csv or jsonl)", s)
}

// Row is one event as an export shows it: what a supervisor reads, and
// the sequence number and hashes that tie it to the chain. Times are
// RFC 3339 in UTC; temperatures in degrees Celsius.
type Row struct {
	Seq          uint64   `json:"seq"`
	Time         string   `json:"time"`
	Uncertainty  int64    `json:"clock_uncertainty_ms"` // -1: unknown
	Kind         string   `json:"kind"`
	Checkpoint   string   `json:"checkpoint,omitempty"`
	Lane         string   `json:"lane,omitempty"`
	Outcome      string   `json:"outcome,omitempty"`
	Reasons      []string `json:"reasons,omitempty"`
	Colour       string   `json:"colour,omitempty"`
	MaskedName   string   `json:"masked_name,omitempty"`
	IDCheck      string   `json:"id_check,omitempty"`
	IDMasked     string   `json:"id_masked,omitempty"`
	Temperature  string   `json:"temperature,omitempty"`
	Readings     []string `json:"readings,omitempty"` // "36.62 thermometer 2026-11-30T09:05:01.2Z"
	OpenedBy     string   `json:"opened_by,omitempty"`
	Actions      []string `json:"actions,omitempty"` // "override guard-1 pass queue"
	GateAction   string   `json:"gate_action,omitempty"`
	Repeat       bool     `json:"repeat,omitempty"`
	Static       bool     `json:"static,omitempty"`
	Subject      string   `json:"subject,omitempty"` // the pseudonym, hex
	CredentialID string   `json:"credential_id,omitempty"`
	Audit        string   `json:"audit,omitempty"` // "who user action rows query"
	Prev         string   `json:"prev"`
	Hash         string   `json:"hash"`
}

// columns is the CSV header, in Row's order.
var columns = []string{"seq", "time", "clock_uncertainty_ms", "kind", "checkpoint", "lane", "outcome", "reasons", "colour",
	"masked_name", "id_check", "id_masked", "temperature", "readings", "opened_by", "actions", "gate_action", "repeat", "static",
	"subject", "credential_id", "audit", "prev", "hash"}

const timeFormat = "2006-01-02T15:04:05.000Z07:00"

// RowOf is e as a row.
func RowOf(e store.Event) Row {
	r := Row{Seq: e.Seq, Time: e.Time.UTC().Format(timeFormat), Uncertainty: -1, Kind: e.Kind, Checkpoint: e.Gate,
		Lane: e.Lane, Outcome: e.Decision, Reasons: e.Reasons, Colour: e.Status, MaskedName: e.MaskedName,
		OpenedBy: e.OpenedBy, GateAction: e.GateAction, Repeat: e.Repeat, Static: e.Static,
		Subject: hex.EncodeToString(e.Subject), CredentialID: hex.EncodeToString(e.CredentialID),
		Prev: hex.EncodeToString(e.Prev[:]), Hash: hex.EncodeToString(e.Hash[:])}
	if e.ClockUncertainty >= 0 {
		r.Uncertainty = e.ClockUncertainty.Milliseconds()
	}
	if e.ID != nil {
		r.IDCheck, r.IDMasked = e.ID.Check, e.ID.Masked
	}
	if e.Temperature != 0 {
		r.Temperature = strconv.FormatFloat(float64(e.Temperature)/10, 'f', 1, 64)
	}
	for _, x := range e.Readings {
		r.Readings = append(r.Readings, fmt.Sprintf("%.2f %s %s", float64(x.Body)/100, x.Source, x.At.UTC().Format(timeFormat)))
	}
	for _, a := range e.Actions {
		s := a.Kind + " " + a.Guard
		if a.Outcome != "" {
			s += " " + a.Outcome
		}
		if a.Reason != "" {
			s += " " + a.Reason
		}
		r.Actions = append(r.Actions, s)
	}
	if a := e.Audit; a != nil {
		r.Audit = fmt.Sprintf("%s %s %s %d %s", a.Who, a.User, a.Action, a.Rows, a.Query)
	}
	return r
}

func (r Row) record() []string {
	b := func(v bool) string {
		if v {
			return "1"
		}
		return ""
	}
	return []string{strconv.FormatUint(r.Seq, 10), r.Time, strconv.FormatInt(r.Uncertainty, 10), r.Kind, r.Checkpoint,
		r.Lane, r.Outcome, strings.Join(r.Reasons, " "), r.Colour, r.MaskedName, r.IDCheck, r.IDMasked, r.Temperature,
		strings.Join(r.Readings, "; "), r.OpenedBy, strings.Join(r.Actions, "; "), r.GateAction, b(r.Repeat), b(r.Static),
		r.Subject, r.CredentialID, r.Audit, r.Prev, r.Hash}
}

// Writer writes events as rows, and keeps what the manifest needs.
type Writer struct {
	format Format
	buf    *bufio.Writer
	sum    hash.Hash
	csv    *csv.Writer
	enc    *json.Encoder
	m      Manifest
}

// NewWriter starts an export to w (the CSV header goes out first).
func NewWriter(w io.Writer, f Format) (*Writer, error) {
	if _, err := ParseFormat(string(f)); err != nil {
		return nil, err
	}
	ew := &Writer{format: f, sum: sha256.New()}
	ew.buf = bufio.NewWriterSize(io.MultiWriter(w, ew.sum), 64<<10)
	switch f {
	case CSV:
		ew.csv = csv.NewWriter(ew.buf)
		if err := ew.csv.Write(columns); err != nil {
			return nil, err
		}
	case JSONL:
		ew.enc = json.NewEncoder(ew.buf)
		ew.enc.SetEscapeHTML(false)
	}
	return ew, nil
}

// Write adds an event.
func (w *Writer) Write(e store.Event) error {
	r := RowOf(e)
	var err error
	if w.csv != nil {
		err = w.csv.Write(r.record())
	} else {
		err = w.enc.Encode(r)
	}
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if w.m.Count == 0 {
		w.m.FirstSeq, w.m.FirstHash = r.Seq, r.Hash
	}
	w.m.Count++
	w.m.LastSeq, w.m.LastHash = r.Seq, r.Hash
	return nil
}

// Finish flushes what is buffered and returns the export's manifest,
// unsigned.
func (w *Writer) Finish(meta Meta) (Manifest, error) {
	if w.csv != nil {
		w.csv.Flush()
		if err := w.csv.Error(); err != nil {
			return Manifest{}, fmt.Errorf("export: %w", err)
		}
	}
	if err := w.buf.Flush(); err != nil {
		return Manifest{}, fmt.Errorf("export: %w", err)
	}
	m := w.m
	m.Version, m.Format = 1, w.format
	m.Device, m.Checkpoint, m.Filter, m.Who, m.Created = meta.Device, meta.Checkpoint, meta.Filter, meta.Who, meta.Created.UTC()
	m.SHA256 = hex.EncodeToString(w.sum.Sum(nil))
	return m, nil
}

// Meta is what the manifest says of an export beyond its rows.
type Meta struct {
	Device     string    // the checkpoint's enrolment ID, if enrolled
	Checkpoint string    // its name
	Filter     string    // the filter, as URL query parameters; empty: the whole log kept
	Who        string    // the supervisor who asked
	Created    time.Time // when
}

// Manifest describes an export. Signed by the device key, it ties the
// file to the checkpoint and to its chain.
type Manifest struct {
	Version    int       `json:"version"`
	Device     string    `json:"device,omitempty"`
	Checkpoint string    `json:"checkpoint"`
	Format     Format    `json:"format"`
	Filter     string    `json:"filter,omitempty"`
	Who        string    `json:"who,omitempty"`
	Created    time.Time `json:"created"`
	Count      int       `json:"count"`
	FirstSeq   uint64    `json:"first_seq,omitempty"`
	LastSeq    uint64    `json:"last_seq,omitempty"`
	FirstHash  string    `json:"first_hash,omitempty"`
	LastHash   string    `json:"last_hash,omitempty"`
	SHA256     string    `json:"sha256"`     // of the file, before any encryption
	PublicKey  string    `json:"public_key"` // the device key that signed it, hex
}

// ErrCheck is an export that does not match its manifest, or a manifest
// that does not verify.
var ErrCheck = errors.New("export: does not verify")
