package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/checkpointd/checkpoint/internal/keyfile"
	"github.com/checkpointd/checkpoint/internal/protocol"
)

// result is what a run on one backend measured.
type result struct {
	backend     string
	unavailable string // why the authority would not serve on it
	err         error  // why the run stopped before its end
	pgSettings  string

	boxes, events int
	bulkEntries   int
	bulkVersions  int
	bulk          time.Duration // loading them through the Storage
	apiRevokes    int
	api           time.Duration // revoking through the admin API
	enrol         time.Duration
	enrolled      int
	prepare       time.Duration
	uploadBytes   int64
	uploads       int

	sync         time.Duration // the timed phase
	rec          *recorder
	windowMedian float64
	held         uint64 // events the authority holds at the end, by its admin status
	devices      int

	cpuAuthority, cpuDB, cpuSim time.Duration
	machine                     machineCPU
	wal                         *walStats
	perf                        []string

	revs             []*revTiming
	hwmSync, hwmEnd  uint64 // kB
	anonPeak         uint64 // kB, sampled
	disk             int64
	logErrors        int
	logFirst         []string
	revocationsTotal uint64
}

// revTiming is one revocation download timed in each round.
type revTiming struct {
	what            string
	since           uint64
	manifest, total []time.Duration
	last            fetched
}

// ingest is the events ingested a second over the timed phase.
func (r *result) ingest() float64 {
	if r.sync <= 0 {
		return 0
	}
	return float64(r.rec.events.Load()) / r.sync.Seconds()
}

// runBackend runs the benchmark against an authority on backend
// ("bbolt" or "postgres"), in dir.
func runBackend(ctx context.Context, cfg config, k keys, dir, backend string) *result {
	res := &result{backend: backend, boxes: cfg.boxes, events: cfg.events, rec: newRecorder()}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		res.err = err
		return res
	}
	var db string
	var pg *pgServer
	if backend == "bbolt" {
		db = filepath.Join(dir, "authority.db")
	} else {
		progress("starting PostgreSQL...")
		var err error
		if pg, err = startPostgres(ctx); err != nil {
			res.unavailable = err.Error()
			return res
		}
		defer pg.stop()
		db = pg.url()
		res.pgSettings = pg.settings(ctx)
	}
	logPath := filepath.Join(dir, "authority.log")

	// Whether the authority serves on this backend at all, before loading
	// anything into it.
	progress("starting the authority on %s...", backend)
	p, err := startAuthority(ctx, cfg.bin, k, db, logPath)
	if errors.Is(err, errUnavailable) {
		res.unavailable = strings.TrimPrefix(err.Error(), errUnavailable.Error()+": ")
		progress("%s: not available: %s", backend, res.unavailable)
		return res
	}
	if err != nil {
		res.err = err
		return res
	}
	p.stop()

	now := time.Now()
	res.bulkEntries = cfg.revocations - cfg.apiRevokes
	batches := bulkEntries(res.bulkEntries, cfg.bulkBatch, now)
	res.bulkVersions = len(batches)
	progress("revoking %d subjects through the Storage, %d a version...", res.bulkEntries, cfg.bulkBatch)
	t0 := time.Now()
	vBulk, err := loadRevocations(ctx, backend, db, batches)
	if err != nil {
		res.err = err
		return res
	}
	res.bulk = time.Since(t0)
	batches = nil

	if p, err = startAuthority(ctx, cfg.bin, k, db, logPath); err != nil {
		res.err = fmt.Errorf("restarting the authority: %w", err)
		return res
	}
	defer p.stop()
	mem := sampleMemory(p.pid())
	defer func() { res.anonPeak = mem.end() }()
	token, err := keyfile.ReadToken(filepath.Join(k.dir, "admin.token"))
	if err != nil {
		res.err = fmt.Errorf("admin token: %w", err)
		return res
	}
	s := newSim(p.url, token, k.listKeys, cfg.concurrency)
	res.rec = s.rec

	progress("revoking %d subjects through the admin API...", cfg.apiRevokes)
	t0 = time.Now()
	if err := s.apiRevoke(ctx, 0, cfg.apiRevokes, cfg.concurrency, now); err != nil {
		res.err = err
		return res
	}
	res.api, res.apiRevokes = time.Since(t0), cfg.apiRevokes

	progress("enrolling %d checkpoints...", cfg.boxes)
	boxes := make([]*box, cfg.boxes)
	t0 = time.Now()
	forEach(ctx, cfg.boxes, cfg.concurrency, func(i int) {
		b := newBox(i)
		if err := s.enrol(ctx, b); err != nil {
			s.rec.fail(fmt.Errorf("box %d: %w", i, err))
			return
		}
		boxes[i] = b
	})
	res.enrol = time.Since(t0)
	if ctx.Err() != nil {
		res.err = ctx.Err()
		return res
	}

	progress("making their events (not timed)...")
	t0 = time.Now()
	day := now.Add(-24 * time.Hour).Truncate(time.Second)
	forEach(ctx, cfg.boxes, runtime.NumCPU(), func(i int) {
		if b := boxes[i]; b != nil {
			if err := b.prepare(cfg.events, cfg.batch, day); err != nil {
				s.rec.fail(fmt.Errorf("box %d: %w", i, err))
				boxes[i] = nil
			}
		}
	})
	for _, b := range boxes {
		if b != nil {
			res.enrolled++
			for _, u := range b.uploads {
				res.uploadBytes += int64(len(u.body))
				res.uploads++
			}
		}
	}
	res.prepare = time.Since(t0)
	progress("made %d uploads in %.1f s", res.uploads, res.prepare.Seconds())
	runtime.GC()

	progress("syncing %d checkpoints, %d at once (timed)...", res.enrolled, cfg.concurrency)
	authCPU, simCPU, mach := processCPU(p.pid()), selfCPU(), readMachineCPU()
	var dbCPU time.Duration
	var wal0 walStats
	pids := []int{p.pid()}
	if pg != nil {
		pm := pg.postmaster()
		dbCPU = treeCPU(pm)
		if wal0, err = pg.wal(ctx); err != nil {
			progress("%v", err)
		}
		pids = append(append(pids, pm), children(pm)...)
	}
	var prof *perfRun
	if cfg.perf {
		prof = startPerf(pids, filepath.Join(dir, "perf.data"))
	}
	s.rec.start = time.Now()
	forEach(ctx, cfg.boxes, cfg.concurrency, func(i int) {
		if b := boxes[i]; b != nil {
			if err := s.syncOnce(ctx, b, vBulk); err != nil {
				s.rec.fail(fmt.Errorf("box %d: %w", i, err))
			}
		}
	})
	res.sync = time.Since(s.rec.start)
	progress("%d events in %.1f s: %.0f/s; %d errors", s.rec.events.Load(), res.sync.Seconds(), res.ingest(), s.rec.errs)
	res.cpuAuthority, res.cpuSim = processCPU(p.pid())-authCPU, selfCPU()-simCPU
	res.machine = readMachineCPU().sub(mach)
	if pg != nil {
		res.cpuDB = treeCPU(pg.postmaster()) - dbCPU
		if w, err := pg.wal(ctx); err == nil {
			d := w.sub(wal0)
			res.wal = &d
		}
	}
	res.perf = prof.stop()
	res.windowMedian = s.rec.windowMedian(5*time.Second, res.sync)
	res.hwmSync = memKB(p.pid(), "VmHWM")
	boxes = nil
	if ctx.Err() != nil {
		res.err = ctx.Err()
		return res
	}

	// What the authority holds, by its own account.
	raw, _, err := s.do(ctx, s.adminHC, "admin status", http.MethodPost, protocol.PathAdminStatus, nil, authAdmin, nil, 4<<20)
	if err != nil {
		res.err = err
		return res
	}
	var as protocol.AdminStatus
	if err := protocol.Dec.Unmarshal(raw, &as); err != nil {
		res.err = fmt.Errorf("admin status: %w", err)
		return res
	}
	res.devices = len(as.Devices)
	for _, d := range as.Devices {
		res.held += d.Mark
	}

	// The revocation downloads at the full set: each round revokes one
	// more subject (a new version, so nothing is prepared yet), then
	// times a day's delta, a larger one, and the snapshot.
	progress("timing revocation downloads...")
	probe := newBox(cfg.boxes)
	if err := s.enrol(ctx, probe); err != nil {
		res.err = err
		return res
	}
	res.revs = []*revTiming{
		{what: "delta, the changes of the admin API", since: vBulk},
		{what: "delta, the last bulk version too", since: vBulk - 1},
		{what: "snapshot", since: 0},
	}
	for round := 0; round < cfg.rounds; round++ {
		if err := s.apiRevoke(ctx, cfg.apiRevokes+round, cfg.apiRevokes+round+1, 1, time.Now()); err != nil {
			res.err = err
			return res
		}
		hc, done := probe.client()
		for _, t := range res.revs {
			f, err := s.revocations(ctx, hc, probe, t.since, "timing manifest", "timing chunk")
			if err != nil {
				done()
				res.err = err
				return res
			}
			t.manifest, t.total, t.last = append(t.manifest, f.manifest), append(t.total, f.total), f
			res.revocationsTotal = f.set
		}
		done()
	}
	res.hwmEnd = memKB(p.pid(), "VmHWM")
	res.logErrors, res.logFirst = p.logged()
	if pg != nil {
		res.disk = pg.size(ctx)
	} else if st, err := os.Stat(db); err == nil {
		res.disk = st.Size()
	}
	return res
}
