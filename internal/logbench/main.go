// Command logbench measures what a supervisor asks of a checkpoint's event
// log at a million events and prints a Markdown report: a page of a
// filtered query, a query that has to scan the whole log, an export of
// every event to CSV, the verification of the hash chain, and a month of
// figures per day. Each operation runs several times and the median is
// reported against its target.
//
// The database (a million passages, scans and audits over 30 days, on
// four lanes, with guards, refusals, fevers and masked names sealed with
// a key) takes a minute or two to record: events go through Box.Record
// from many goroutines, so that group commit batches them. It is kept
// (by default in the system's temporary directory) and reused by the next
// run; -fresh records it anew.
//
// The export goes through export.Writer in CSV, as the local API's does.
//
// make bench-logs runs it.
package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/checkpointd/checkpoint/internal/export"
	"github.com/checkpointd/checkpoint/store"
)

// The month the events cover, in China's time zone (fixed, so that no
// time zone database is needed).
var (
	cst   = time.FixedZone("CST", 8*3600)
	start = time.Date(2026, 10, 1, 0, 0, 0, 0, cst)
	days  = 30
)

func main() {
	n := flag.Int("events", 1_000_000, "events in the log")
	db := flag.String("db", "", "the database, kept between runs (default logbench-EVENTS.db in the temporary directory)")
	fresh := flag.Bool("fresh", false, "record the database anew even if one is there")
	runs := flag.Int("runs", 5, "times each operation runs; the median is reported")
	out := flag.String("out", "", "also write the report to this file")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the measurements to this file")
	flag.Parse()
	if *db == "" {
		*db = filepath.Join(os.TempDir(), fmt.Sprintf("logbench-%d.db", *n))
	}
	var w io.Writer = os.Stdout
	if *out != "" {
		f, err := os.Create(*out)
		if err != nil {
			fail(err)
		}
		defer f.Close()
		w = io.MultiWriter(os.Stdout, f)
	}

	built, err := prepare(*db, *n, *fresh)
	if err != nil {
		fail(err)
	}
	clk := fixedClock{start.AddDate(0, 0, days).Add(9 * time.Hour)}
	b, err := store.OpenBox(*db, store.Options{Clock: clk, Key: benchKey()})
	if err != nil {
		fail(err)
	}
	defer b.Close()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fail(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fail(err)
		}
		defer pprof.StopCPUProfile()
	}

	fmt.Fprintf(w, "## The event log at %s events\n\n", thousands(*n))
	size := int64(0)
	if st, err := os.Stat(*db); err == nil {
		size = st.Size()
	}
	fmt.Fprintf(w, "Machine: %d CPUs, Go %s. The database: %s events over %d days (passages on four lanes, scans, audits; 3%% refused, masked names sealed), %d MiB, %s.\n",
		runtime.NumCPU(), runtime.Version(), thousands(*n), days, size>>20, built)
	fmt.Fprintf(w, "Each operation ran %d times; the median is reported. The export writes CSV through export.Writer, to a file.\n\n", *runs)
	fmt.Fprintf(w, "| operation | median | target | |\n|---|---|---|---|\n")

	row := func(name string, target time.Duration, op func() (string, error)) {
		progress("%s...", name)
		var times []time.Duration
		var note string
		for i := 0; i < *runs; i++ {
			t := time.Now()
			s, err := op()
			times = append(times, time.Since(t))
			if err != nil {
				fail(fmt.Errorf("%s: %w", name, err))
			}
			note = s
		}
		slices.Sort(times)
		med := times[len(times)/2]
		verdict := "pass"
		if med > target {
			verdict = "**fail**"
		}
		fmt.Fprintf(w, "| %s (%s) | %s | %s | %s |\n", name, note, round(med), target, verdict)
	}

	page := func(f store.Filter) func() (string, error) {
		return func() (string, error) {
			p, err := b.Query(f)
			if err == nil && p.Unreadable+p.Sealed > 0 {
				err = fmt.Errorf("%d unreadable, %d sealed", p.Unreadable, p.Sealed)
			}
			return fmt.Sprintf("%d events", len(p.Events)), err
		}
	}
	row("Query: refusals for fever on lane 2, first page", 200*time.Millisecond,
		page(store.Filter{Outcome: "refuse", Reason: "fever", Lane: "lane-2", Limit: 50}))
	row("Query: one day's passages guards decided, first page", 200*time.Millisecond,
		page(store.Filter{From: start.AddDate(0, 0, 12), To: start.AddDate(0, 0, 13), Reason: "guard_override", Limit: 50}))
	row("Query: refusals one guard decided, rare: scans the whole log", 200*time.Millisecond,
		page(store.Filter{Outcome: "refuse", Guard: "g-yang", Limit: 50}))
	row("Query: a lane no event has, scans the whole log", 200*time.Millisecond,
		page(store.Filter{Lane: "lane-9", Limit: 50}))
	row("Export: every event to CSV", 10*time.Second, func() (string, error) {
		return exportCSV(b, filepath.Join(filepath.Dir(*db), "logbench-export.csv"))
	})
	row("VerifyLog: the whole hash chain", 5*time.Second, func() (string, error) {
		lc, err := b.VerifyLog()
		if err == nil && (!lc.OK || lc.Checked != *n) {
			err = fmt.Errorf("the log does not verify: %+v", lc)
		}
		return fmt.Sprintf("%s events", thousands(lc.Checked)), err
	})
	row("Stats: the month per day", time.Second, func() (string, error) {
		st, err := b.Stats(start, start.AddDate(0, 0, days), store.Day)
		t := st.Total
		if err == nil && t.Passes+t.Referrals+t.Refusals+t.FireAlarms+t.Audits != *n {
			err = fmt.Errorf("the figures count %d events, not %d", t.Passes+t.Referrals+t.Refusals+t.FireAlarms+t.Audits, *n)
		}
		return fmt.Sprintf("%d days, %s refusals", len(st.Periods), thousands(t.Refusals)), err
	})
	row("Stats: the month per hour", time.Second, func() (string, error) {
		st, err := b.Stats(start, start.AddDate(0, 0, days), store.Hour)
		return fmt.Sprintf("%d hours", len(st.Periods)), err
	})
	fmt.Fprintln(w)
}

// fixedClock is the box's clock during the measurements: the morning
// after the month.
type fixedClock struct{ t time.Time }

func (c fixedClock) Now() time.Time                         { return c.t }
func (c fixedClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

func benchKey() *[32]byte {
	k := sha256.Sum256([]byte("logbench: the key of the private fields"))
	return &k
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "logbench:", err)
	os.Exit(1)
}

func progress(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }

func round(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond))
	}
}

func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// prepare makes sure the database at path holds the n events, recording
// them when it does not, and says how it came to be.
func prepare(path string, n int, fresh bool) (string, error) {
	if !fresh {
		if b, err := store.OpenBoxReadOnly(path, store.Options{}); err == nil {
			last := b.LastSeq()
			b.Close()
			if last == uint64(n) {
				return "recorded by an earlier run", nil
			}
		}
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	progress("recording %d events in %s...", n, path)
	took, err := build(path, n)
	if err != nil {
		os.Remove(path)
		return "", err
	}
	return fmt.Sprintf("recorded in %.0f s (%.0f events/s, 512 goroutines calling Record)", took.Seconds(), float64(n)/took.Seconds()), nil
}

// build records n events through Box.Record from 512 goroutines: the
// events are made in time order and taken in turn, so that the log stays
// nearly in time order, as a checkpoint's is.
func build(path string, n int) (time.Duration, error) {
	clk := fixedClock{start}
	b, err := store.OpenBox(path, store.Options{Clock: clk, Key: benchKey(), MaxBatch: 1024})
	if err != nil {
		return 0, err
	}
	began := time.Now()
	evs := make(chan store.Event, 4096)
	go generate(n, evs)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	var done int
	for g := 0; g < 512; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for e := range evs {
				if _, err := b.Record(context.Background(), e); err != nil {
					mu.Lock()
					firstErr = errors.Join(firstErr, err)
					mu.Unlock()
					return
				}
				mu.Lock()
				if done++; done%100_000 == 0 {
					progress("  %d events, %.0f s", done, time.Since(began).Seconds())
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if err := b.Close(); err != nil {
		return 0, err
	}
	if firstErr != nil {
		return 0, firstErr
	}
	return time.Since(began), nil
}

var (
	lanes  = []string{"lane-1", "lane-2", "lane-3", "lane-4"}
	guards = []string{"g-wang", "g-li", "g-zhang", "g-liu", "g-chen", "g-yang"}
	names  = []string{"张*丰", "李*明", "王*芳", "刘*", "陈*华", "杨*伟", "赵*敏", "黄*"}
	refuse = []string{"fever", "fever", "fever", "expired", "revoked", "status_red", "id_mismatch", "replayed", "presentation_stale"}
)

// generate sends n events, in time order, spread over the month from
// start: mostly passages at four lanes from six in the morning to ten at
// night, some scans, audits and a few fire alarms.
func generate(n int, out chan<- store.Event) {
	defer close(out)
	r := rand.New(rand.NewPCG(2026, 10))
	pick := func(xs []string) string { return xs[r.IntN(len(xs))] }
	open := 16 * time.Hour // six to ten
	step := time.Duration(int64(open) * int64(days) / int64(n))
	day, within := 0, time.Duration(0)
	for i := 0; i < n; i++ {
		within += time.Duration(r.Int64N(int64(2 * step)))
		if within >= open {
			day, within = day+1, within-open
		}
		at := start.AddDate(0, 0, min(day, days-1)).Add(6*time.Hour + min(within, open-time.Second))
		e := store.Event{Time: at, ClockUncertainty: 50 * time.Millisecond, Gate: "east-gate",
			Subject: binaryID(r), CredentialID: binaryID(r), KeyID: []byte("k2026")}
		switch x := r.IntN(1000); {
		case x < 920:
			passage(r, &e, pick)
		case x < 960:
			e.Kind, e.Decision, e.Status = "scan", "pass", "green"
			if r.IntN(20) == 0 {
				e.Decision, e.Status, e.Reasons = "refuse", "red", []string{"status_red"}
			}
		case x < 999:
			e.Kind = "audit"
			e.Audit = &store.AuditRecord{Who: "supervisor-1", User: "uid 1000", Action: "logs", Query: "outcome=refuse", Rows: r.IntN(50)}
		default:
			e.Kind = "fire_alarm"
		}
		out <- e
	}
}

func passage(r *rand.Rand, e *store.Event, pick func([]string) string) {
	e.Kind, e.Lane, e.OpenedBy, e.GateAction = "passage", pick(lanes), "code", "pulse"
	e.Gathered = time.Duration(800+r.IntN(1500)) * time.Millisecond
	body := int32(3620 + r.IntN(80))
	e.MaskedName = pick(names)
	e.Decision, e.Status = "pass", "green"
	switch x := r.IntN(1000); {
	case x < 30: // 3% refused
		e.Decision, e.GateAction = "refuse", "closed"
		e.Reasons = []string{pick(refuse)}
		if e.Reasons[0] == "fever" {
			body = int32(3760 + r.IntN(150))
		} else {
			e.Status = "red"
		}
	case x < 80:
		e.Decision, e.Status, e.Reasons = "refer", "yellow", []string{"status_yellow"}
	case x < 120:
		e.OpenedBy, e.Status, e.Reasons = "id", "", []string{"id_only"}
		e.ID = &store.IDRecord{Check: "only", Source: "reader", Masked: e.MaskedName + " …" + strconv.Itoa(1000+r.IntN(9000))}
	}
	e.Temperature = int16(body / 10)
	e.Readings = []store.ReadingRecord{{Body: body, Source: "thermal", At: e.Time.Add(-e.Gathered / 2)}}
	if r.IntN(100) == 0 { // a guard decides: 1%
		g := pick(guards)
		e.Actions = []store.ActionRecord{{Kind: "override", Guard: g, At: e.Time, Outcome: e.Decision, Reason: "escorted"}}
		e.Reasons = append(e.Reasons, "guard_override")
	}
}

func binaryID(r *rand.Rand) []byte {
	b := make([]byte, 16)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// exportCSV exports every event to a CSV file as the local API does
// (export.Writer: the rows, the SHA-256 and the chain's ends for the
// manifest), and removes the file afterwards.
func exportCSV(b *store.Box, path string) (string, error) {
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	defer os.Remove(path)
	defer f.Close()
	ew, err := export.NewWriter(f, export.CSV)
	if err != nil {
		return "", err
	}
	n, err := b.Export(store.Filter{}, ew.Write)
	if err != nil {
		return "", err
	}
	m, err := ew.Finish(export.Meta{Checkpoint: "logbench", Created: time.Now()})
	if err != nil {
		return "", err
	}
	if m.Count != n {
		return "", fmt.Errorf("the manifest counts %d events, Export %d", m.Count, n)
	}
	st, err := f.Stat()
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s rows, %d MiB", thousands(n), st.Size()>>20), nil
}
