package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"
)

// What supervisors read: events chosen by a filter, newest first, a page
// at a time; the same in order for an export; and figures per hour or day.

// Filter chooses events. Empty fields choose everything.
type Filter struct {
	From, To time.Time // events with From <= Time < To
	Kind     string    // passage, scan, fire_alarm, audit
	Outcome  string    // pass, refer, refuse
	Reason   string    // a reason code (verify.Reason)
	Colour   string    // the code's colour: green, yellow, red
	Lane     string
	Guard    string // a guard who acted in the passage
	// Before pages Query: only events with a lower sequence number; 0:
	// from the newest. After starts Export: only events with a higher one.
	Before, After uint64
	// Limit bounds Query's page (0: 50, at most MaxPage) and Export (0:
	// no bound).
	Limit int
}

// MaxPage is the largest page Query returns.
const MaxPage = 1000

// Match reports whether e is chosen by f (Before, After and Limit aside).
// Times compare to the microsecond, as events are stored.
func (f Filter) Match(e Event) bool {
	switch {
	case !f.From.IsZero() && eventMicros(e.Time) < f.From.UnixMicro(),
		!f.To.IsZero() && eventMicros(e.Time) >= f.To.UnixMicro(),
		f.Kind != "" && e.Kind != f.Kind,
		f.Outcome != "" && e.Decision != f.Outcome,
		f.Reason != "" && !slices.Contains(e.Reasons, f.Reason),
		f.Colour != "" && e.Status != f.Colour,
		f.Lane != "" && e.Lane != f.Lane:
		return false
	}
	if f.Guard != "" {
		return slices.ContainsFunc(e.Actions, func(a ActionRecord) bool { return a.Guard == f.Guard })
	}
	return true
}

// Values is the filter as URL query parameters: how the local API carries
// it, and how an audit event records what was asked.
func (f Filter) Values() url.Values {
	v := url.Values{}
	set := func(k, s string) {
		if s != "" {
			v.Set(k, s)
		}
	}
	if !f.From.IsZero() {
		v.Set("from", f.From.Format(time.RFC3339Nano))
	}
	if !f.To.IsZero() {
		v.Set("to", f.To.Format(time.RFC3339Nano))
	}
	set("kind", f.Kind)
	set("outcome", f.Outcome)
	set("reason", f.Reason)
	set("colour", f.Colour)
	set("lane", f.Lane)
	set("guard", f.Guard)
	if f.Before != 0 {
		v.Set("before", strconv.FormatUint(f.Before, 10))
	}
	if f.After != 0 {
		v.Set("after", strconv.FormatUint(f.After, 10))
	}
	if f.Limit != 0 {
		v.Set("limit", strconv.Itoa(f.Limit))
	}
	return v
}

// ErrFilter is a filter that does not parse.
var ErrFilter = errors.New("store: bad filter")

// ParseFilter reads a filter from URL query parameters (Values' form).
// Times are RFC 3339.
func ParseFilter(v url.Values) (Filter, error) {
	var f Filter
	var err error
	for k := range v {
		switch k {
		case "from", "to", "kind", "outcome", "reason", "colour", "lane", "guard", "before", "after", "limit":
		default:
			return f, fmt.Errorf("%w: unknown parameter %q", ErrFilter, k)
		}
	}
	parseTime := func(k string) time.Time {
		s := v.Get(k)
		if s == "" || err != nil {
			return time.Time{}
		}
		t, e := time.Parse(time.RFC3339, s)
		if e != nil {
			err = fmt.Errorf("%w: %s: %v", ErrFilter, k, e)
		}
		return t
	}
	parseUint := func(k string) uint64 {
		s := v.Get(k)
		if s == "" || err != nil {
			return 0
		}
		n, e := strconv.ParseUint(s, 10, 64)
		if e != nil {
			err = fmt.Errorf("%w: %s: %v", ErrFilter, k, e)
		}
		return n
	}
	f.From, f.To = parseTime("from"), parseTime("to")
	f.Kind, f.Outcome, f.Reason = v.Get("kind"), v.Get("outcome"), v.Get("reason")
	f.Colour, f.Lane, f.Guard = v.Get("colour"), v.Get("lane"), v.Get("guard")
	f.Before, f.After = parseUint("before"), parseUint("after")
	if l := parseUint("limit"); l > 1<<30 {
		err = fmt.Errorf("%w: limit %d", ErrFilter, l)
	} else {
		f.Limit = int(l)
	}
	for _, s := range []string{f.Kind, f.Outcome, f.Reason, f.Colour, f.Lane, f.Guard} {
		if len(s) > 64 {
			err = fmt.Errorf("%w: a value longer than 64 bytes", ErrFilter)
		}
	}
	return f, err
}

// Page is one page of Query's answer.
type Page struct {
	Events []Event
	// Next is the Before of the next page; 0 when there is none.
	Next uint64
	// Unreadable counts the events passed over because they do not
	// decode; Sealed those whose private fields did not open.
	Unreadable, Sealed int
}

// Period is what happened at the checkpoint between Start and End.
type Period struct {
	Start      time.Time      `json:"start"`
	End        time.Time      `json:"end"`
	Passes     int            `json:"passes"`      // decided pass (codes and ID cards)
	Referrals  int            `json:"referrals"`   // sent to a second check
	Refusals   int            `json:"refusals"`    // refused
	RefusedFor map[string]int `json:"refused_for"` // refusals by reason (one refusal may have several)
	Fevers     int            `json:"fevers"`      // passages with a confirmed fever
	IDOnly     int            `json:"id_only"`     // passes on an ID card alone, without a code
	Overrides  int            `json:"overrides"`   // passages a guard decided
	FireAlarms int            `json:"fire_alarms"`
	Audits     int            `json:"audits"`  // readings of the log by supervisors
	Offline    time.Duration  `json:"offline"` // time without a link to the authority (nanoseconds)
}

// Step is a Stats period: an hour or a day.
type Step string

// Steps.
const (
	Hour Step = "hour"
	Day  Step = "day"
)

// matcher is a Filter in the index's small numbers: a prefilter that
// never drops an event the filter chooses.
type matcher struct {
	from, to                     int64 // Unix microseconds, [from, to)
	kind, decision, status, lane int   // -1: any
	reason                       int   // bit; -1: any; reasonOther: only "other" entries
	guard                        int   // 0: any; other16: only "other" entries
}

func (b *Box) matcher(f Filter) matcher {
	m := matcher{from: math.MinInt64, to: math.MaxInt64, kind: -1, decision: -1, status: -1, lane: -1, reason: -1}
	if !f.From.IsZero() {
		m.from = f.From.UnixMicro()
	}
	if !f.To.IsZero() {
		m.to = f.To.UnixMicro()
	}
	ds := b.dicts
	ds.mu.RLock()
	defer ds.mu.RUnlock()
	small := func(d *dict, v string) int {
		if v == "" {
			return -1
		}
		if id, ok := d.lookup(v); ok {
			return id
		}
		return other8
	}
	m.kind, m.decision, m.status, m.lane = small(ds.kind, f.Kind), small(ds.decision, f.Outcome), small(ds.status, f.Colour), small(ds.lane, f.Lane)
	if f.Reason != "" {
		m.reason = reasonOther
		if id, ok := ds.reason.lookup(f.Reason); ok {
			m.reason = id
		}
	}
	if f.Guard != "" {
		m.guard = other16
		if id, ok := ds.guard.lookup(f.Guard); ok {
			m.guard = id
		}
	}
	return m
}

func (m *matcher) match(s summary) bool {
	small := func(want int, got uint8) bool { return want < 0 || int(got) == want || got == other8 }
	switch {
	case s.micros < m.from || s.micros >= m.to,
		!small(m.kind, s.kind), !small(m.decision, s.decision), !small(m.status, s.status), !small(m.lane, s.lane),
		m.reason >= 0 && s.reasons&(1<<uint(m.reason)|1<<reasonOther) == 0:
		return false
	}
	if m.guard != 0 {
		g := uint16(m.guard)
		return s.guard1 == g || s.guard2 == g || s.guard1 == other16 || s.guard2 == other16
	}
	return true
}

// span returns the sequence numbers that can hold the events f chooses:
// those of its time range (all of them without one, from the hour index
// with one), within its Before and After. ok is false when none can.
func (b *Box) span(tx *bolt.Tx, f Filter) (lo, hi uint64, ok bool) {
	last := b.LastSeq()
	lo, hi = 1, last
	if k, _ := tx.Bucket(bucketEvents).Cursor().First(); k != nil {
		lo = binary.BigEndian.Uint64(k)
	}
	if f.Before != 0 {
		hi = min(hi, f.Before-1)
	}
	if f.After != 0 {
		if f.After == math.MaxUint64 {
			return lo, hi, false
		}
		lo = max(lo, f.After+1)
	}
	hours := tx.Bucket(bucketHours)
	if f.From.IsZero() && f.To.IsZero() || hours == nil {
		return lo, hi, lo <= hi
	}
	// The unindexed tail (a read-only copy from before the index) is
	// always scanned.
	indexed := indexedThrough(tx)
	from, to := int64(math.MinInt64), int64(math.MaxInt64)
	if !f.From.IsZero() {
		from = f.From.UnixMicro()
	}
	if !f.To.IsZero() {
		to = f.To.UnixMicro() - 1
	}
	first, lastHour := hourKey(from), hourKey(to)
	var slo, shi uint64 = math.MaxUint64, 0
	c := hours.Cursor()
	for k, v := c.Seek(first); k != nil && bytes.Compare(k, lastHour) <= 0; k, v = c.Next() {
		if len(v) == 16 {
			slo = min(slo, binary.BigEndian.Uint64(v))
			shi = max(shi, binary.BigEndian.Uint64(v[8:]))
		}
	}
	if indexed < last {
		slo, shi = min(slo, indexed+1), last
	}
	lo, hi = max(lo, slo), min(hi, shi)
	return lo, hi, lo <= hi
}

// visitFunc sees one event: its sequence number, its summary (nil for
// an event the index lacks) and a way to decode it, both good only until
// it returns. It stops the visit by returning true.
type visitFunc func(seq uint64, s *summary, get func() (Event, error)) (stop bool, err error)

// visit calls fn for the events from seq from towards bound (down, or up
// when up), both included, in one read transaction, for at most n events.
// It returns the last sequence number visited, and done when it reached
// bound or fn stopped it (not when it ran out of n).
func visit(tx *bolt.Tx, from, bound uint64, up bool, n int, fn visitFunc) (last uint64, done bool, err error) {
	indexed := indexedThrough(tx)
	events := tx.Bucket(bucketEvents)
	count := 0
	// One decoder and one summary serve every event, rather than one of
	// each per event: a scan of a million summaries allocates nothing.
	var (
		curSeq uint64
		curRaw []byte
		cur    summary
	)
	get := func() (Event, error) {
		raw := curRaw
		if raw == nil {
			raw = events.Get(u64(curSeq))
		}
		if raw == nil {
			return Event{}, fmt.Errorf("event %d: %w: missing", curSeq, ErrCorrupt)
		}
		e, err := DecodeEvent(raw)
		if err != nil {
			return e, fmt.Errorf("event %d: %w", curSeq, err)
		}
		return e, nil
	}
	step := func(k, v []byte, s *summary) (bool, error) {
		seq := binary.BigEndian.Uint64(k)
		if up && seq > bound || !up && seq < bound {
			return true, nil
		}
		curSeq, curRaw = seq, nil
		if s == nil {
			curRaw = v
		}
		stop, err := fn(seq, s, get)
		last, count = seq, count+1
		return stop, err
	}
	// The summaries, for the indexed events.
	indexedPart := func() (bool, error) {
		sums := tx.Bucket(bucketSummaries)
		if sums == nil { // a read-only copy from before the index
			return false, nil
		}
		c := sums.Cursor()
		move := c.Prev
		var k, v []byte
		if up {
			move = c.Next
			k, v = c.Seek(u64(from))
		} else {
			start := min(from, indexed)
			if k, v = c.Seek(u64(start)); k == nil || binary.BigEndian.Uint64(k) > start {
				k, v = c.Prev()
			}
		}
		for ; k != nil && count < n; k, v = move() {
			seq := binary.BigEndian.Uint64(k)
			if seq > indexed {
				return false, nil
			}
			var ok bool
			cur, ok = decodeSummary(v)
			sp := &cur
			if !ok {
				sp = nil
			}
			if stop, err := step(k, nil, sp); stop || err != nil {
				return true, err
			}
		}
		return false, nil
	}
	// The events the index lacks, decoded.
	tail := func() (bool, error) {
		c := events.Cursor()
		move := c.Prev
		var k, v []byte
		if up {
			move = c.Next
			k, v = c.Seek(u64(max(from, indexed+1)))
		} else if from > indexed {
			if k, v = c.Seek(u64(from)); k == nil || binary.BigEndian.Uint64(k) > from {
				k, v = c.Prev()
			}
		}
		for ; k != nil && count < n && binary.BigEndian.Uint64(k) > indexed; k, v = move() {
			if stop, err := step(k, v, nil); stop || err != nil {
				return true, err
			}
		}
		return false, nil
	}
	first, second := tail, indexedPart
	if up {
		first, second = indexedPart, tail
	}
	stopped, err := first()
	if !stopped && err == nil && count < n {
		stopped, err = second()
	}
	return last, stopped || count < n || err != nil, err
}

// Query returns a page of the events f chooses, newest first. Page.Next
// pages on. An event that does not decode (see VerifyLog) is counted in
// Page.Unreadable and left out; one whose private fields do not open with
// the box's key is returned without them.
func (b *Box) Query(f Filter) (Page, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = 50
	}
	limit = min(limit, MaxPage)
	m := b.matcher(f)
	var page Page
	err := b.db.View(func(tx *bolt.Tx) error {
		lo, hi, ok := b.span(tx, f)
		if !ok {
			return nil
		}
		_, _, err := visit(tx, hi, lo, false, math.MaxInt, func(seq uint64, s *summary, get func() (Event, error)) (bool, error) {
			if s != nil && !m.match(*s) {
				return false, nil
			}
			e, err := get()
			if err != nil {
				page.Unreadable++
				return false, nil
			}
			if !f.Match(e) {
				return false, nil
			}
			if len(page.Events) == limit {
				page.Next = page.Events[limit-1].Seq
				return true, nil
			}
			page.Events = append(page.Events, e)
			return false, nil
		})
		return err
	})
	for i := range page.Events {
		if openPrivate(&page.Events[i], b.opts.Key) != nil {
			page.Sealed++
		}
	}
	return page, err
}

// Export calls fn with each event f chooses, oldest first (from f.After
// on, at most f.Limit when set), reading in short transactions so that a
// long export does not hold the writer back; fn runs outside them. It
// returns how many events fn saw.
func (b *Box) Export(f Filter, fn func(Event) error) (int, error) {
	m := b.matcher(f)
	var lo, hi uint64
	var ok bool
	err := b.db.View(func(tx *bolt.Tx) error {
		lo, hi, ok = b.span(tx, f)
		return nil
	})
	if err != nil || !ok {
		return 0, err
	}
	n := 0
	for lo <= hi {
		var batch []Event
		var last uint64
		var done bool
		err := b.db.View(func(tx *bolt.Tx) error {
			var err error
			last, done, err = visit(tx, lo, hi, true, 1<<16, func(seq uint64, s *summary, get func() (Event, error)) (bool, error) {
				if s != nil && !m.match(*s) {
					return false, nil
				}
				e, err := get()
				if err != nil {
					return true, err
				}
				if f.Match(e) {
					batch = append(batch, e)
				}
				return len(batch) >= 1024, nil
			})
			return err
		})
		if err != nil {
			return n, err
		}
		for i := range batch {
			if f.Limit > 0 && n >= f.Limit {
				return n, nil
			}
			openPrivate(&batch[i], b.opts.Key) // without the key: without those fields
			if err := fn(batch[i]); err != nil {
				return n, err
			}
			n++
		}
		if last == 0 || done && len(batch) < 1024 {
			break
		}
		lo = last + 1
	}
	return n, nil
}

// Stats is Period figures over a time range, per hour or per day.
type Stats struct {
	Step    Step     `json:"step"`
	Periods []Period `json:"periods"`
	Total   Period   `json:"total"`
}

// maxPeriods bounds a Stats answer: a year of hours.
const maxPeriods = 366 * 24

// Stats counts what happened from from to to, per step, the periods
// starting at whole hours or midnights in from's time zone.
func (b *Box) Stats(from, to time.Time, step Step) (Stats, error) {
	st := Stats{Step: step}
	if !to.After(from) {
		return st, fmt.Errorf("%w: the range ends before it starts", ErrFilter)
	}
	loc := from.Location()
	y, mo, d := from.Date()
	var start time.Time
	var next func(time.Time) time.Time
	switch step {
	case Hour:
		start = time.Date(y, mo, d, from.Hour(), 0, 0, 0, loc)
		next = func(t time.Time) time.Time { return t.Add(time.Hour) }
	case Day:
		start = time.Date(y, mo, d, 0, 0, 0, 0, loc)
		next = func(t time.Time) time.Time { return t.AddDate(0, 0, 1) }
	default:
		return st, fmt.Errorf("%w: step %q (hour or day)", ErrFilter, step)
	}
	var starts []int64
	for t := start; t.Before(to); t = next(t) {
		if len(starts) == maxPeriods {
			return st, fmt.Errorf("%w: more than %d periods", ErrFilter, maxPeriods)
		}
		starts = append(starts, t.UnixMicro())
		st.Periods = append(st.Periods, Period{Start: t, End: next(t), RefusedFor: map[string]int{}})
	}
	st.Periods[0].Start, st.Periods[len(st.Periods)-1].End = from, to
	at := func(micros int64) *Period {
		i := sort.Search(len(starts), func(i int) bool { return starts[i] > micros }) - 1
		return &st.Periods[max(i, 0)]
	}

	// The dictionaries' names, as they stand.
	ds := b.dicts
	ds.mu.RLock()
	kinds, decisions, reasons := slices.Clone(ds.kind.names), slices.Clone(ds.decision.names), slices.Clone(ds.reason.names)
	ds.mu.RUnlock()
	name := func(names []string, i uint8) string {
		if int(i) < len(names) {
			return names[i]
		}
		return ""
	}
	var rs []string
	count := func(p *Period, kind, decision string, rs []string) {
		switch kind {
		case "fire_alarm":
			p.FireAlarms++
		case "audit":
			p.Audits++
		}
		switch decision {
		case "pass":
			p.Passes++
			if slices.Contains(rs, "id_only") {
				p.IDOnly++
			}
		case "refer":
			p.Referrals++
		case "refuse":
			p.Refusals++
			for _, r := range rs {
				p.RefusedFor[r]++
			}
		}
		if slices.Contains(rs, "fever") {
			p.Fevers++
		}
		if slices.Contains(rs, "guard_override") {
			p.Overrides++
		}
	}

	f := Filter{From: from, To: to}
	m := b.matcher(f)
	var lo, hi uint64
	var ok bool
	err := b.db.View(func(tx *bolt.Tx) error {
		lo, hi, ok = b.span(tx, f)
		return nil
	})
	for ok && err == nil && lo <= hi {
		var last uint64
		var done bool
		err = b.db.View(func(tx *bolt.Tx) error {
			var err error
			last, done, err = visit(tx, lo, hi, true, 1<<18, func(seq uint64, s *summary, get func() (Event, error)) (bool, error) {
				if s != nil && s.exact() {
					if !m.match(*s) {
						return false, nil
					}
					rs = rs[:0]
					for mask := s.reasons; mask != 0; mask &= mask - 1 {
						if i := bits.TrailingZeros64(mask); i < len(reasons) {
							rs = append(rs, reasons[i])
						}
					}
					count(at(s.micros), name(kinds, s.kind), name(decisions, s.decision), rs)
					return false, nil
				}
				e, err := get()
				if err != nil || !f.Match(e) {
					return false, nil // VerifyLog names what does not decode
				}
				count(at(eventMicros(e.Time)), e.Kind, e.Decision, e.Reasons)
				return false, nil
			})
			return err
		})
		if done || last == 0 {
			break
		}
		lo = last + 1
	}
	if err != nil {
		return st, err
	}
	if err := b.offline(&st, from, to, at); err != nil {
		return st, err
	}
	st.Total = Period{Start: from, End: to, RefusedFor: map[string]int{}}
	for _, p := range st.Periods {
		t := &st.Total
		t.Passes += p.Passes
		t.Referrals += p.Referrals
		t.Refusals += p.Refusals
		t.Fevers += p.Fevers
		t.IDOnly += p.IDOnly
		t.Overrides += p.Overrides
		t.FireAlarms += p.FireAlarms
		t.Audits += p.Audits
		t.Offline += p.Offline
		for r, n := range p.RefusedFor {
			t.RefusedFor[r] += n
		}
	}
	return st, nil
}

// offline adds to the periods the time the link to the authority was
// down (SetLink): from a "down" to the next "up", and not past now.
func (b *Box) offline(st *Stats, from, to time.Time, at func(int64) *Period) error {
	end := min(to.UnixMicro(), b.clock.Now().UnixMicro())
	return b.db.View(func(tx *bolt.Tx) error {
		links := tx.Bucket(bucketLinks)
		if links == nil {
			return nil
		}
		c := links.Cursor()
		start := u64(uint64(from.UnixMicro()) ^ 1<<63)
		// The state at from: the last change before it.
		var pv []byte
		if k, _ := c.Seek(start); k == nil {
			_, pv = c.Last()
		} else {
			_, pv = c.Prev()
		}
		down := len(pv) == 1 && pv[0] == 'd'
		k, v := c.Seek(start)
		since := from.UnixMicro()
		addDown := func(a, z int64) {
			for a < z {
				p := at(a)
				stop := min(z, p.End.UnixMicro())
				if stop <= a {
					return
				}
				p.Offline += time.Duration(stop-a) * time.Microsecond
				a = stop
			}
		}
		for ; k != nil; k, v = c.Next() {
			t := int64(binary.BigEndian.Uint64(k) ^ 1<<63)
			if t >= end {
				break
			}
			isDown := len(v) == 1 && v[0] == 'd'
			if down && !isDown {
				addDown(since, t)
			}
			if !down && isDown {
				since = t
			}
			down = isDown
		}
		if down {
			addDown(since, end)
		}
		return nil
	})
}
