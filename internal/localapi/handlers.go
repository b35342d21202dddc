package localapi

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/checkpointd/checkpoint/internal/export"
	"github.com/checkpointd/checkpoint/store"
)

// Trailers and headers of an export.
const (
	// ManifestTrailer carries the signed manifest, base64, once the whole
	// file has gone out and the export is recorded in the log.
	ManifestTrailer = "Checkpoint-Manifest"
	// RowsTrailer is the number of rows exported.
	RowsTrailer = "Checkpoint-Rows"
	// ErrorTrailer says why an export stopped; no manifest comes then.
	ErrorTrailer = "Checkpoint-Error"
	// EncryptedHeader says the file is encrypted to the account's key.
	EncryptedHeader = "Checkpoint-Encrypted"
)

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}

// answer records the audit event of a reading, then gives the answer; a
// reading that cannot be recorded is not given.
func (s *Server) answer(w http.ResponseWriter, r *http.Request, rec store.AuditRecord, v any) {
	c := callerOf(r)
	rec.Who, rec.User = c.who, c.user
	if err := s.audit(r.Context(), rec); err != nil {
		writeError(w, http.StatusServiceUnavailable, "the reading could not be recorded in the log, so it is not given: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) failed(w http.ResponseWriter, err error) {
	s.log.Error("request failed", "err", err)
	writeError(w, http.StatusInternalServerError, err.Error())
}

// noParams refuses query parameters other than those named.
func noParams(q url.Values, allowed ...string) error {
	for k := range q {
		ok := false
		for _, a := range allowed {
			ok = ok || k == a
		}
		if !ok {
			return fmt.Errorf("unknown parameter %q", k)
		}
	}
	return nil
}

func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) {
	if err := noParams(r.URL.Query()); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	st, err := s.status()
	if err != nil {
		s.failed(w, err)
		return
	}
	s.answer(w, r, store.AuditRecord{Action: "status"}, st)
}

// status gathers the box's status: what the store holds, then what the
// running checkpoint adds.
func (s *Server) status() (Status, error) {
	now := s.backend.Now()
	st := Status{Checkpoint: s.cfg.Checkpoint, DeviceKey: deviceKeyHex(s.cfg.DeviceKey), Time: now.Time,
		Fingerprint: s.cfg.Fingerprint, ReadOnly: s.box.ReadOnly(), Lanes: []Lane{}}
	st.Clock.UncertaintyMS = -1
	if now.Uncertainty >= 0 {
		st.Clock.UncertaintyMS = now.Uncertainty.Milliseconds()
	}
	dev, ok, err := s.box.Device()
	if err != nil {
		return st, err
	}
	if ok {
		st.Device = dev.ID
	}
	st.Recorded = s.box.LastSeq()
	if st.Unsent, err = s.box.Unsent(); err != nil {
		return st, err
	}
	last, err := s.box.LastSync()
	if err != nil {
		return st, err
	}
	if !last.At.IsZero() {
		st.LastSync = &last
		if !last.LastOK.IsZero() {
			off := last.Offset.Milliseconds()
			st.Clock.OffsetMS = &off
		}
	}
	v, expires, set := s.box.RevocationVersion()
	st.Revocations = List{Version: v, Expires: expires, Entries: set.Count, Stale: expires.IsZero() || now.Time.After(expires)}
	st.Disk = s.box.Disk()
	page, err := s.box.Query(store.Filter{Kind: "passage", Limit: 1})
	if err != nil {
		return st, err
	}
	if len(page.Events) > 0 {
		e := page.Events[0]
		st.LastPassage = &Passage{Seq: e.Seq, Time: e.Time, Lane: e.Lane, Outcome: e.Decision}
	}
	s.backend.Describe(&st)
	return st, nil
}

func (s *Server) handleLogs(w http.ResponseWriter, r *http.Request) {
	f, err := store.ParseFilter(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	page, err := s.box.Query(f)
	if err != nil {
		s.failed(w, err)
		return
	}
	out := Page{Events: make([]Event, 0, len(page.Events)), Next: page.Next, Unreadable: page.Unreadable, Sealed: page.Sealed}
	for _, e := range page.Events {
		out.Events = append(out.Events, EventOf(e))
	}
	s.answer(w, r, store.AuditRecord{Action: "logs", Query: f.Values().Encode(), Rows: len(out.Events)}, out)
}

// parseStats reads stats' parameters: from and to (RFC 3339; the periods
// start at whole hours or midnights in from's time zone), step.
func parseStats(q url.Values) (from, to time.Time, step store.Step, err error) {
	if err := noParams(q, "from", "to", "step"); err != nil {
		return from, to, step, err
	}
	if from, err = time.Parse(time.RFC3339, q.Get("from")); err != nil {
		return from, to, step, fmt.Errorf("from: want an RFC 3339 time: %w", err)
	}
	if to, err = time.Parse(time.RFC3339, q.Get("to")); err != nil {
		return from, to, step, fmt.Errorf("to: want an RFC 3339 time: %w", err)
	}
	step = store.Step(q.Get("step"))
	if step == "" {
		step = store.Day
	}
	if step != store.Hour && step != store.Day {
		return from, to, step, fmt.Errorf("step %q: hour or day", step)
	}
	return from, to, step, nil
}

func (s *Server) handleStats(w http.ResponseWriter, r *http.Request) {
	from, to, step, err := parseStats(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	st, err := s.box.Stats(from, to, step)
	if errors.Is(err, store.ErrFilter) {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err != nil {
		s.failed(w, err)
		return
	}
	q := url.Values{"from": {from.Format(time.RFC3339)}, "to": {to.Format(time.RFC3339)}, "step": {string(step)}}
	s.answer(w, r, store.AuditRecord{Action: "stats", Query: q.Encode(), Rows: len(st.Periods)}, st)
}

func (s *Server) handleVerifyLog(w http.ResponseWriter, r *http.Request) {
	if err := noParams(r.URL.Query()); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	lc, err := s.box.VerifyLog()
	if err != nil {
		s.failed(w, err)
		return
	}
	s.answer(w, r, store.AuditRecord{Action: "verify-log", Rows: lc.Checked}, lc)
}

// movingWriter gives the answer more time to go out as long as it keeps
// moving: a long export on a slow link goes on, a stalled client is
// dropped.
type movingWriter struct {
	w        io.Writer
	rc       *http.ResponseController
	extended time.Time
}

func (m *movingWriter) Write(p []byte) (int, error) {
	// A network deadline: real time, not the injected clock.
	if now := time.Now(); now.Sub(m.extended) > 5*time.Second {
		m.rc.SetWriteDeadline(now.Add(writeTimeout))
		m.extended = now
	}
	return m.w.Write(p)
}

func (s *Server) handleExport(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	format := export.CSV
	if v := q.Get("format"); v != "" {
		var err error
		if format, err = export.ParseFormat(v); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
	}
	q.Del("format")
	f, err := store.ParseFilter(q)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if s.cfg.DeviceKey == nil {
		writeError(w, http.StatusConflict, "no device key to sign the export's manifest with")
		return
	}
	c := callerOf(r)
	dev, _, err := s.box.Device()
	if err != nil {
		s.failed(w, err)
		return
	}
	var boxKey *[32]byte
	if c.account != nil {
		boxKey = c.account.BoxKey
	}
	h := w.Header()
	h.Set("Content-Type", "text/csv; charset=utf-8")
	if format == export.JSONL {
		h.Set("Content-Type", "application/jsonl")
	}
	h.Set("Cache-Control", "no-store")
	h.Set("Trailer", ManifestTrailer+", "+RowsTrailer+", "+ErrorTrailer)
	if boxKey != nil {
		h.Set("Content-Type", "application/octet-stream")
		h.Set(EncryptedHeader, "nacl-box")
	}
	w.WriteHeader(http.StatusOK)

	var out io.Writer = &movingWriter{w: w, rc: http.NewResponseController(w)}
	var sealer io.WriteCloser
	if boxKey != nil {
		if sealer, err = export.Encrypt(out, boxKey); err != nil {
			h.Set(ErrorTrailer, err.Error())
			return
		}
		out = sealer
	}
	ew, err := export.NewWriter(out, format)
	if err != nil {
		h.Set(ErrorTrailer, err.Error())
		return
	}
	n, err := s.box.Export(f, ew.Write)
	meta := export.Meta{Device: dev.ID, Checkpoint: s.cfg.Checkpoint, Filter: f.Values().Encode(), Who: c.who,
		Created: s.backend.Now().Time}
	m, ferr := ew.Finish(meta)
	if err == nil {
		err = ferr
	}
	if sealer != nil {
		if cerr := sealer.Close(); err == nil {
			err = cerr
		}
	}
	// The export is recorded whatever became of it: the rows that went
	// out went out.
	rec := store.AuditRecord{Who: c.who, User: c.user, Action: "export", Query: f.Values().Encode(), Rows: n}
	if format != export.CSV {
		rec.Query = withFormat(rec.Query, format)
	}
	if aerr := s.audit(r.Context(), rec); err == nil && aerr != nil {
		err = fmt.Errorf("the export could not be recorded in the log, so it is not signed: %w", aerr)
	}
	if err != nil {
		s.log.Warn("export stopped", "who", c.who, "rows", n, "err", err)
		h.Set(ErrorTrailer, err.Error())
		return
	}
	signed, err := export.Sign(m, s.cfg.DeviceKey)
	if err != nil {
		h.Set(ErrorTrailer, err.Error())
		return
	}
	h.Set(ManifestTrailer, base64.StdEncoding.EncodeToString(signed))
	h.Set(RowsTrailer, strconv.Itoa(n))
}

// withFormat adds the format to a filter's query, for the audit.
func withFormat(query string, f export.Format) string {
	q, _ := url.ParseQuery(query)
	q.Set("format", string(f))
	return q.Encode()
}

func (s *Server) handleSync(w http.ResponseWriter, r *http.Request) {
	if err := noParams(r.URL.Query()); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	// A network deadline: real time, not the injected clock.
	http.NewResponseController(w).SetWriteDeadline(time.Now().Add(syncTimeout))
	before, _ := s.box.Mark()
	st, err := s.backend.Sync(r.Context())
	if errors.Is(err, ErrNoSync) {
		writeError(w, http.StatusConflict, err.Error())
		return
	}
	res := SyncResult{OK: err == nil, Status: st}
	if err != nil {
		res.Error = err.Error()
	}
	c := callerOf(r)
	q := ""
	if !res.OK {
		q = "failed=1"
	}
	// Rows: the events the authority acknowledged in this sync.
	after, _ := s.box.Mark()
	s.audit(r.Context(), store.AuditRecord{Who: c.who, User: c.user, Action: "sync", Query: q, Rows: int(max(after, before) - before)})
	writeJSON(w, http.StatusOK, res)
}

func (s *Server) handlePurge(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if err := noParams(q, "unsent", "confirm"); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	forced := q.Get("unsent") == "1"
	if forced && q.Get("confirm") != "1" {
		writeError(w, http.StatusBadRequest, "a purge with unsent=1 deletes events the authority never received: add confirm=1")
		return
	}
	if s.box.ReadOnly() {
		writeError(w, http.StatusConflict, "the database is open read-only")
		return
	}
	var res store.PurgeResult
	var err error
	if forced {
		res, err = s.box.Purge(s.cfg.Retention)
	} else {
		res, err = s.box.Prune(s.cfg.Retention)
	}
	c := callerOf(r)
	rec := store.AuditRecord{Who: c.who, User: c.user, Action: "purge", Rows: res.Deleted, Purged: res.Forced}
	if forced {
		rec.Query = "confirm=1&unsent=1"
	}
	// Recorded even when it failed half-way: what went, went.
	s.audit(r.Context(), rec)
	if err != nil {
		s.failed(w, err)
		return
	}
	if res.Forced != nil {
		s.log.Warn("forced purge: events the authority never received were deleted", "who", c.who,
			"from", res.Forced.From, "to", res.Forced.To, "unsent", res.Unsent)
	}
	writeJSON(w, http.StatusOK, PurgeResult{PurgeResult: res, ForcedPurge: forced, RetentionS: int64(s.cfg.Retention / time.Second)})
}
