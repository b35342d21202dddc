package localapi

import (
	"crypto/ed25519"
	"encoding/hex"
	"slices"
	"time"

	"github.com/checkpointd/checkpoint/store"
	"github.com/checkpointd/checkpoint/sync"
)

// What the API answers, as JSON. Times are RFC 3339; durations are in
// milliseconds where the name says so.

// Status is the box at a glance.
type Status struct {
	Checkpoint string `json:"checkpoint"`
	Device     string `json:"device,omitempty"`     // the enrolment ID
	DeviceKey  string `json:"device_key,omitempty"` // the Ed25519 public key that signs exports, hex
	// Time is the checkpoint's estimate of the time.
	Time  time.Time `json:"time"`
	Clock Clock     `json:"clock"`
	Lanes []Lane    `json:"lanes"`
	// LastPassage is when the last passage was decided, and how.
	LastPassage *Passage `json:"last_passage,omitempty"`
	Recorded    uint64   `json:"recorded"` // the last event's sequence number
	Unsent      uint64   `json:"unsent"`   // events the authority has not acknowledged
	// Sync is how syncing fares; nil without an authority. LastSync is
	// the last sync as the store recorded it.
	Sync        *sync.Status       `json:"sync,omitempty"`
	LastSync    *store.SyncOutcome `json:"last_sync,omitempty"`
	Trust       *List              `json:"trust_list,omitempty"`
	Revocations List               `json:"revocations"`
	Disk        store.DiskStatus   `json:"disk"`
	// Fingerprint is the HTTPS certificate's, to pin; empty: no HTTPS.
	Fingerprint string `json:"https_fingerprint,omitempty"`
	// ReadOnly: the database is open read-only (checkpointctl --db).
	ReadOnly bool `json:"read_only"`
}

// Clock is how sure the checkpoint is of the time.
type Clock struct {
	// UncertaintyMS is how far Status.Time may be off; -1: not trusted.
	UncertaintyMS int64 `json:"uncertainty_ms"`
	// OffsetMS is the authority's clock minus the box's at the last good
	// sync; nil: never synced.
	OffsetMS *int64 `json:"offset_ms,omitempty"`
	// StepMS is how far the wall clock was found stepped; 0: not.
	StepMS int64 `json:"step_ms,omitempty"`
}

// Lane is one lane's camera and devices.
type Lane struct {
	Name     string   `json:"name"`
	Camera   Camera   `json:"camera"`
	Devices  []Device `json:"devices,omitempty"`
	Passages uint64   `json:"passages"` // decided since checkpointd started
}

// Camera is a lane's camera.
type Camera struct {
	Device    string    `json:"device"`
	State     string    `json:"state"` // opening, running, failed, ended, stopped
	Since     time.Time `json:"since"`
	Error     string    `json:"error,omitempty"`
	Frames    uint64    `json:"frames"`
	Processed uint64    `json:"processed"`
	Dropped   uint64    `json:"dropped"`
}

// Device is a lane's thermometer, card reader, handheld scanner or gate.
type Device struct {
	Kind  string `json:"kind"`
	Up    bool   `json:"up"`
	Error string `json:"error,omitempty"`
}

// Passage is the last passage: no personal data.
type Passage struct {
	Seq     uint64    `json:"seq"`
	Time    time.Time `json:"time"`
	Lane    string    `json:"lane,omitempty"`
	Outcome string    `json:"outcome"`
}

// List is a signed list the checkpoint holds: its version, when it was
// issued (trust list) and until when it holds.
type List struct {
	Version  uint64    `json:"version"`
	IssuedAt time.Time `json:"issued_at,omitzero"`
	// AgeS is the list's age in seconds at Status.Time (trust list).
	AgeS    int64     `json:"age_s,omitempty"`
	Expires time.Time `json:"expires,omitzero"`
	Entries uint64    `json:"entries,omitempty"`
	Stale   bool      `json:"stale"` // expired, or none
}

// Page is a page of the log, newest first.
type Page struct {
	Events []Event `json:"events"`
	// Next is the before= of the next page; 0: no more.
	Next uint64 `json:"next,omitempty"`
	// Unreadable counts events passed over because they do not decode
	// (verify-log names them); Sealed those whose masked names did not
	// open with the box's key.
	Unreadable int `json:"unreadable,omitempty"`
	Sealed     int `json:"sealed,omitempty"`
}

// Event is an event of the log as a supervisor reads it, masked names
// opened.
type Event struct {
	Seq  uint64    `json:"seq"`
	Time time.Time `json:"time"`
	// ClockUncertaintyMS: how far Time may be off; -1: unknown.
	ClockUncertaintyMS int64    `json:"clock_uncertainty_ms"`
	Kind               string   `json:"kind"`
	Checkpoint         string   `json:"checkpoint,omitempty"`
	Lane               string   `json:"lane,omitempty"`
	Outcome            string   `json:"outcome,omitempty"`
	Reasons            []string `json:"reasons,omitempty"`
	Colour             string   `json:"colour,omitempty"`
	MaskedName         string   `json:"masked_name,omitempty"`
	IDCheck            string   `json:"id_check,omitempty"`
	IDMasked           string   `json:"id_masked,omitempty"`
	// Temperature is what the decision rests on, °C; nil: none taken.
	Temperature *float64  `json:"temperature,omitempty"`
	Readings    []Reading `json:"readings,omitempty"`
	OpenedBy    string    `json:"opened_by,omitempty"`
	Guards      []string  `json:"guards,omitempty"` // the guards who acted
	Actions     []Action  `json:"actions,omitempty"`
	GateAction  string    `json:"gate_action,omitempty"`
	Repeat      bool      `json:"repeat,omitempty"`
	Static      bool      `json:"static,omitempty"`
	Audit       *Audit    `json:"audit,omitempty"`
	Hash        string    `json:"hash"`
}

// Reading is a temperature reading, °C.
type Reading struct {
	Celsius float64   `json:"celsius"`
	Ambient *float64  `json:"ambient,omitempty"`
	Source  string    `json:"source"`
	At      time.Time `json:"at"`
}

// Action is a guard's action in a passage.
type Action struct {
	Kind    string    `json:"kind"`
	Guard   string    `json:"guard"`
	At      time.Time `json:"at"`
	Outcome string    `json:"outcome,omitempty"`
	Reason  string    `json:"reason,omitempty"`
}

// Audit is who read the log, how and what.
type Audit struct {
	Who    string             `json:"who"`
	User   string             `json:"user,omitempty"`
	Action string             `json:"action"`
	Query  string             `json:"query,omitempty"`
	Rows   int                `json:"rows,omitempty"`
	Purged *store.ForcedPurge `json:"purged,omitempty"`
}

// EventOf is e as the API shows it, its masked names as the store opened
// them (those kept in the clear before the encryption too).
func EventOf(e store.Event) Event {
	v := Event{Seq: e.Seq, Time: e.Time, ClockUncertaintyMS: -1, Kind: e.Kind, Checkpoint: e.Gate, Lane: e.Lane,
		Outcome: e.Decision, Reasons: e.Reasons, Colour: e.Status, MaskedName: e.MaskedName, OpenedBy: e.OpenedBy,
		GateAction: e.GateAction, Repeat: e.Repeat, Static: e.Static, Hash: hex.EncodeToString(e.Hash[:])}
	if e.ClockUncertainty >= 0 {
		v.ClockUncertaintyMS = e.ClockUncertainty.Milliseconds()
	}
	if e.ID != nil {
		v.IDCheck, v.IDMasked = e.ID.Check, e.ID.Masked
	}
	if e.Temperature != 0 {
		t := float64(e.Temperature) / 10
		v.Temperature = &t
	}
	for _, r := range e.Readings {
		rd := Reading{Celsius: float64(r.Body) / 100, Source: r.Source, At: r.At}
		if r.Ambient != nil {
			a := float64(*r.Ambient) / 100
			rd.Ambient = &a
		}
		v.Readings = append(v.Readings, rd)
	}
	for _, a := range e.Actions {
		v.Actions = append(v.Actions, Action{Kind: a.Kind, Guard: a.Guard, At: a.At, Outcome: a.Outcome, Reason: a.Reason})
		if !slices.Contains(v.Guards, a.Guard) {
			v.Guards = append(v.Guards, a.Guard)
		}
	}
	if a := e.Audit; a != nil {
		v.Audit = &Audit{Who: a.Who, User: a.User, Action: a.Action, Query: a.Query, Rows: a.Rows, Purged: a.Purged}
	}
	return v
}

// SyncResult is what a sync now did.
type SyncResult struct {
	OK     bool        `json:"ok"`
	Error  string      `json:"error,omitempty"`
	Status sync.Status `json:"status"`
}

// PurgeResult is what a purge removed.
type PurgeResult struct {
	store.PurgeResult
	// Forced: the purge also removed events older than the retention
	// that the authority had not acknowledged.
	ForcedPurge bool `json:"forced_purge"`
	// RetentionS is the retention applied, in seconds.
	RetentionS int64 `json:"retention_s"`
}

// deviceKeyHex is a device key's public half, hex.
func deviceKeyHex(k ed25519.PrivateKey) string {
	if k == nil {
		return ""
	}
	return hex.EncodeToString(k.Public().(ed25519.PublicKey))
}
