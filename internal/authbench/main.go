// Command authbench is the authority's load test: many checkpoints at
// once against a real authority on loopback. It builds cmd/authority into
// a temporary folder and runs `authority serve` as a process of its own,
// once on a bbolt file and once on a throwaway PostgreSQL (internal/pgtest:
// initdb and pg_ctl in a temporary folder, a Unix socket only, stopped and
// removed at the end), and drives it with simulated checkpoints that speak
// the real protocol (docs/sync.md): each enrols with a one-time token from
// the admin API, then syncs once, as sync.Syncer does: a signed status
// call, its day of hash-chained events uploaded in signed batches, and the
// revocation delta (manifest and chunks), every signed answer checked
// against the trust list's list key, every chunk against its hash in the
// manifest, and a snapshot against the set's signed count and digest.
//
// It reports, per backend, the events ingested a second (against the
// target of 50,000/s), the upload latency, the time to build and fetch a
// revocation delta and a snapshot at a million revoked subjects, the
// authority's peak memory (VmHWM, and its anonymous memory sampled), and
// where the CPU went during the uploads (the authority, PostgreSQL, the
// simulator, the rest of the machine), as Markdown. make bench-authority
// runs it; the README quotes it.
//
// It leaves nothing behind: the authority gets SIGTERM at the end of each
// backend's run and dies with this program however it ends (its
// parent-death signal); PostgreSQL is stopped and its folder removed, by
// pgtest's watchdog should this program be killed; the temporary folder
// is removed at the end, on Ctrl-C, and by a watchdog of its own after a
// SIGKILL.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// config is what the flags set.
type config struct {
	boxes       int
	events      int
	batch       int
	concurrency int
	backends    []string
	revocations int // revoked subjects the delta and snapshot are timed at
	apiRevokes  int // of them, revoked through the admin API
	bulkBatch   int // the others, loaded through the Storage in versions of this many
	rounds      int // timings of each revocation download
	bin         string
	perf        bool
}

func main() {
	var cfg config
	flag.IntVar(&cfg.boxes, "boxes", 10_000, "simulated checkpoints")
	flag.IntVar(&cfg.events, "events", 1_000, "events each checkpoint uploads (a day's)")
	flag.IntVar(&cfg.batch, "batch", 5_000, "most events an upload carries (the syncer's default)")
	flag.IntVar(&cfg.concurrency, "concurrency", 64, "checkpoints syncing at once")
	backends := flag.String("backends", "bbolt,postgres", "backends to run, comma-separated: bbolt, postgres")
	flag.IntVar(&cfg.revocations, "revocations", 1_000_000, "revoked subjects held while the revocation downloads are timed")
	flag.IntVar(&cfg.apiRevokes, "api-revocations", 1_000, "of them, how many are revoked through the admin API (the latest: the delta the checkpoints fetch)")
	flag.IntVar(&cfg.bulkBatch, "bulk-batch", 100_000, "the others are loaded through the Storage before the server starts, this many a version")
	flag.IntVar(&cfg.rounds, "rounds", 3, "timings of each revocation download (medians are reported)")
	flag.StringVar(&cfg.bin, "authority", "", "an authority binary to run (default: cmd/authority built into the temporary folder)")
	flag.BoolVar(&cfg.perf, "perf", false, "also profile the authority (and PostgreSQL) with perf during the uploads")
	out := flag.String("out", "", "also write the report to this file")
	flag.Parse()
	for _, b := range strings.Split(*backends, ",") {
		if b = strings.TrimSpace(b); b != "" {
			cfg.backends = append(cfg.backends, b)
		}
	}
	if err := cfg.check(); err != nil {
		fmt.Fprintln(os.Stderr, "authbench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, cfg, *out)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "authbench:", err)
		os.Exit(1)
	}
}

func (c config) check() error {
	switch {
	case c.boxes < 1, c.events < 1, c.batch < 1, c.concurrency < 1, c.rounds < 1:
		return errors.New("-boxes, -events, -batch, -concurrency and -rounds must be positive")
	case c.apiRevokes < 1 || c.apiRevokes >= c.revocations:
		return errors.New("-api-revocations must be at least 1 and fewer than -revocations")
	case c.bulkBatch < 1 || c.revocations-c.apiRevokes < 2*c.bulkBatch:
		return errors.New("the bulk revocations (-revocations minus -api-revocations) must make at least two versions of -bulk-batch")
	case len(c.backends) == 0:
		return errors.New("-backends names none")
	}
	for _, b := range c.backends {
		if b != "bbolt" && b != "postgres" {
			return fmt.Errorf("-backends: unknown backend %q (bbolt, postgres)", b)
		}
	}
	return nil
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05 ")+format+"\n", args...)
}

// run runs the benchmark on each backend and writes the report.
func run(ctx context.Context, cfg config, out string) error {
	tmp, err := os.MkdirTemp("", "authbench-")
	if err != nil {
		return fmt.Errorf("temporary folder: %w", err)
	}
	defer os.RemoveAll(tmp)
	defer removeWhenGone(tmp)()
	if cfg.bin == "" {
		cfg.bin = filepath.Join(tmp, "authority")
		progress("building cmd/authority...")
		build := exec.CommandContext(ctx, "go", "build", "-o", cfg.bin, "github.com/checkpointd/checkpoint/cmd/authority")
		if b, err := build.CombinedOutput(); err != nil {
			return fmt.Errorf("building cmd/authority: %w: %s", err, b)
		}
	}
	keys, err := makeKeys(ctx, cfg.bin, tmp)
	if err != nil {
		return err
	}
	started := time.Now()
	var results []*result
	for _, backend := range cfg.backends {
		progress("== %s", backend)
		r := runBackend(ctx, cfg, keys, filepath.Join(tmp, backend), backend)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		results = append(results, r)
	}
	var w io.Writer = os.Stdout
	if out != "" {
		f, err := os.Create(out)
		if err != nil {
			return fmt.Errorf("report: %w", err)
		}
		defer f.Close()
		w = io.MultiWriter(os.Stdout, f)
	}
	report(w, cfg, results, time.Since(started))
	return nil
}

// removeWhenGone starts a shell that removes dir once this program is
// gone, should it end without removing it itself (killed with SIGKILL: the
// authority dies with it by its parent-death signal, and pgtest's own
// watchdog stops PostgreSQL). It runs in a process group of its own, so
// that a Ctrl-C does not end it. The function returned ends it.
func removeWhenGone(dir string) func() {
	script := fmt.Sprintf("while [ -d /proc/%d ]; do sleep 1; done; rm -rf '%s'", os.Getpid(), strings.ReplaceAll(dir, "'", `'\''`))
	w := exec.Command("sh", "-c", script)
	w.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if w.Start() != nil {
		return func() {}
	}
	return func() {
		w.Process.Kill()
		w.Wait()
	}
}

// machine describes where the benchmark ran.
func machine() string {
	cpu, mem := "", ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = " (" + strings.Join(strings.Fields(v), " ") + ")"
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "MemTotal:"); ok {
				kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				mem = fmt.Sprintf(", %.0f GB of memory", float64(kb)/(1<<20))
			}
		}
	}
	return fmt.Sprintf("%d CPUs%s%s, Go %s", runtime.NumCPU(), cpu, mem, runtime.Version())
}
