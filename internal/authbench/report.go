package main

import (
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"time"
)

// target is the goal for events ingested a second on PostgreSQL.
const target = 50_000

func report(w io.Writer, cfg config, results []*result, took time.Duration) {
	fmt.Fprintf(w, "## The authority under load\n\n")
	fmt.Fprintf(w, "Machine: %s (what else ran on it shows in each backend's CPU table). Everything ran on it, sharing its\n", machine())
	fmt.Fprintf(w, "%d CPUs: `authority serve` as a process of its own on loopback, PostgreSQL beside it (for that\n", runtime.NumCPU())
	fmt.Fprintf(w, "backend), and the simulator; %s simulated checkpoints, %d at once, each connecting from a loopback\n",
		num(cfg.boxes), cfg.concurrency)
	fmt.Fprintf(w, "address of its own,\n")
	fmt.Fprintf(w, "each enrolled with a one-time token from the admin API and then synced once as the syncer does: a\n")
	fmt.Fprintf(w, "signed status call, %s hash-chained events (a day's) uploaded in signed batches of up to %s, and the\n",
		num(cfg.events), num(cfg.batch))
	fmt.Fprintf(w, "revocation delta of the day (signed manifest, chunks checked against it). Every signed answer was\n")
	fmt.Fprintf(w, "checked with the trust list's list key (status and acknowledgements: the request's nonce, the device,\n")
	fmt.Fprintf(w, "the mark; manifests: the version asked for and a fresh expiry; snapshots: the signed count and digest of\n")
	fmt.Fprintf(w, "the set). The whole run took %s.\n\n", took.Round(time.Second))
	fmt.Fprintf(w, "**Timed:** the sync phase, from the first status call to the last chunk, wall clock; the events\n")
	fmt.Fprintf(w, "ingested a second are the events acknowledged over it (status calls and delta downloads included).\n")
	fmt.Fprintf(w, "Latencies are per HTTP request, from sending it to the last byte of the answer, signing included.\n")
	fmt.Fprintf(w, "**Not timed:** making and hash-chaining the events and encoding the batches (the simulator's work,\n")
	fmt.Fprintf(w, "done before, while the authority is idle); enrolment and the revocations are timed on their own.\n")
	fmt.Fprintf(w, "Signing each request (Ed25519 over the headers, SHA-256 of the body) happens as it is sent, as a\n")
	fmt.Fprintf(w, "checkpoint's does, since the signature dates the request. %s of the revoked subjects are loaded\n",
		num(cfg.revocations-cfg.apiRevokes))
	fmt.Fprintf(w, "through the Storage directly before the server starts (the admin API takes one ID number a request);\n")
	fmt.Fprintf(w, "the last %s through the admin API: they are the delta the checkpoints fetch. Each download at the\n", num(cfg.apiRevokes))
	fmt.Fprintf(w, "full set is timed %d times after one more revocation (a new version, so nothing is prepared yet):\n", cfg.rounds)
	fmt.Fprintf(w, "the manifest's answer includes preparing the download; medians are reported. The authority's peak\n")
	fmt.Fprintf(w, "memory is its VmHWM (the most it had resident, which on bbolt includes the pages of the memory-mapped\n")
	fmt.Fprintf(w, "database file it touched), and the most anonymous memory (RssAnon) sampled every 250 ms.\n\n")
	for _, r := range results {
		backendReport(w, r)
	}
}

func backendReport(w io.Writer, r *result) {
	title := map[string]string{"bbolt": "bbolt (`--db FILE`)", "postgres": "PostgreSQL (`--db postgres://…`)"}[r.backend]
	fmt.Fprintf(w, "### %s\n\n", title)
	if r.unavailable != "" {
		name := map[string]string{"bbolt": "bbolt", "postgres": "PostgreSQL"}[r.backend]
		fmt.Fprintf(w, "| measure | value |\n|---|---|\n| %s | not available: %s |\n\n", name, mdEscape(r.unavailable))
		return
	}
	if r.pgSettings != "" {
		fmt.Fprintf(w, "A throwaway PostgreSQL on a Unix socket on the same machine (internal/pgtest): %s;\n", r.pgSettings)
		fmt.Fprintf(w, "the authority's default pool (`pool_max_conns`: the cores, at least 4).\n\n")
	}
	if r.err != nil {
		fmt.Fprintf(w, "**The run stopped early:** %s\n\n", mdEscape(r.err.Error()))
	}
	rec := r.rec
	events := rec.events.Load()
	fmt.Fprintf(w, "| measure | value |\n|---|---|\n")
	fmt.Fprintf(w, "| checkpoints × events | %s × %s; %s uploads of %s kB on average |\n", num(r.enrolled), num(r.events),
		num(r.uploads), kB(r.uploadBytes, r.uploads))
	if r.sync > 0 {
		ing := r.ingest()
		windows := ""
		if r.windowMedian > 0 {
			windows = fmt.Sprintf("; median of its 5-s windows %s/s", num(int(r.windowMedian)))
		}
		fmt.Fprintf(w, "| **events ingested** | **%s/s** (%s in %.1f s), %.2f× the target of 50,000/s%s |\n",
			num(int(ing)), num(int(events)), r.sync.Seconds(), ing/target, windows)
		fmt.Fprintf(w, "| upload latency p50 / p99 | %s |\n", p50p99(rec.lat["upload"]))
		fmt.Fprintf(w, "| status, delta manifest, chunk p50 / p99 | %s; %s; %s |\n", p50p99(rec.lat["status"]),
			p50p99(rec.lat["manifest"]), p50p99(rec.lat["chunk"]))
		fmt.Fprintf(w, "| events held at the end (admin status) | %s, %s checkpoints |\n", num(int(r.held)), num(r.devices))
	}
	if r.enrol > 0 {
		fmt.Fprintf(w, "| enrolment (admin token, then enrolment) | %s in %.1f s: %s checkpoints/s; p99 %s |\n", num(r.enrolled),
			r.enrol.Seconds(), num(int(float64(r.enrolled)/r.enrol.Seconds())), ms(pct(rec.lat["enrol"], 99)))
	}
	if r.bulk > 0 {
		fmt.Fprintf(w, "| revocations loaded | %s through the Storage in %d versions, %.1f s; %s through the admin API, %s/s |\n",
			num(r.bulkEntries), r.bulkVersions, r.bulk.Seconds(), num(r.apiRevokes), num(int(float64(r.apiRevokes)/r.api.Seconds())))
	}
	for _, t := range r.revs {
		if len(t.total) == 0 {
			continue
		}
		what := fmt.Sprintf("%s: %s entries", t.what, num(t.last.entries))
		if t.last.snapshot {
			what = fmt.Sprintf("snapshot: %s entries", num(t.last.entries))
		}
		fmt.Fprintf(w, "| %s, at %s revoked | prepared and signed (manifest) %s, whole download %s (%d chunks, %.1f MB) |\n",
			what, num(int(t.last.set)), ms(median(t.manifest)), ms(median(t.total)), t.last.chunks, float64(t.last.bytes)/1e6)
	}
	if r.hwmSync > 0 {
		fmt.Fprintf(w, "| authority peak RSS (VmHWM) | %.0f MB after the sync phase, %.0f MB at the end; its anonymous memory (heap, stacks) at most %.0f MB |\n",
			float64(r.hwmSync)/1024, float64(r.hwmEnd)/1024, float64(r.anonPeak)/1024)
	}
	fmt.Fprintf(w, "| errors | %d; retried after 429/503 with Retry-After: %s; authority log errors: %d |\n",
		rec.errs, retried(rec), r.logErrors)
	if r.disk > 0 && events > 0 {
		fmt.Fprintf(w, "| on disk | %.2f GB, %.0f bytes an event (the revocations included) |\n",
			float64(r.disk)/1e9, float64(r.disk)/float64(events))
	}
	fmt.Fprintln(w)
	for _, m := range rec.msgs {
		fmt.Fprintf(w, "- error: %s\n", mdEscape(m))
	}
	for _, l := range r.logFirst {
		fmt.Fprintf(w, "- authority log: %s\n", mdEscape(l))
	}
	if len(rec.msgs)+len(r.logFirst) > 0 {
		fmt.Fprintln(w)
	}
	if r.sync > 0 {
		cpuReport(w, r)
	}
}

// cpuReport says where the machine's CPU went during the sync phase.
func cpuReport(w io.Writer, r *result) {
	m := r.machine
	total := m.busy + m.idle + m.iowait + m.steal
	if total <= 0 {
		return
	}
	share := func(d time.Duration) string { return fmt.Sprintf("%.0f%%", 100*d.Seconds()/total.Seconds()) }
	events := float64(r.rec.events.Load())
	per := func(d time.Duration) string {
		if events == 0 {
			return ""
		}
		return fmt.Sprintf("%.1f µs", d.Seconds()/events*1e6)
	}
	fmt.Fprintf(w, "Where the machine's CPU went during the sync phase (%.0f CPU-seconds: %.1f s × the CPUs):\n\n",
		total.Seconds(), r.sync.Seconds())
	fmt.Fprintf(w, "| | CPU-s | share | per event |\n|---|---|---|---|\n")
	fmt.Fprintf(w, "| authority | %.1f | %s | %s |\n", r.cpuAuthority.Seconds(), share(r.cpuAuthority), per(r.cpuAuthority))
	if r.backend == "postgres" {
		fmt.Fprintf(w, "| PostgreSQL (all its processes) | %.1f | %s | %s |\n", r.cpuDB.Seconds(), share(r.cpuDB), per(r.cpuDB))
	}
	fmt.Fprintf(w, "| simulator (signing, checking answers, HTTP) | %.1f | %s | %s |\n", r.cpuSim.Seconds(), share(r.cpuSim), per(r.cpuSim))
	other := max(0, m.busy-r.cpuAuthority-r.cpuDB-r.cpuSim)
	fmt.Fprintf(w, "| other processes and the kernel | %.1f | %s | |\n", other.Seconds(), share(other))
	fmt.Fprintf(w, "| idle | %.1f | %s | |\n", m.idle.Seconds(), share(m.idle))
	fmt.Fprintf(w, "| iowait (idle, waiting for the disk) | %.1f | %s | |\n", m.iowait.Seconds(), share(m.iowait))
	if m.steal > 0 {
		fmt.Fprintf(w, "| steal (the hypervisor's) | %.1f | %s | |\n", m.steal.Seconds(), share(m.steal))
	}
	fmt.Fprintln(w)
	if wl := r.wal; wl != nil && wl.syncs > 0 {
		fmt.Fprintf(w, "PostgreSQL's WAL during the sync phase: %.2f GB (%.0f bytes an event, %s full-page images), %s writes\n",
			float64(wl.bytes)/1e9, float64(wl.bytes)/max(events, 1), num(int(wl.fpi)), num(int(wl.writes)))
		fmt.Fprintf(w, "taking %.1f s in all, %s fsyncs taking %.1f s in all (%.2f ms each).\n\n",
			wl.writeMS/1000, num(int(wl.syncs)), wl.syncMS/1000, wl.syncMS/float64(wl.syncs))
	}
	if len(r.perf) > 0 {
		fmt.Fprintf(w, "Where the CPU of the authority%s went (perf, self time, symbols above 1.5%%):\n\n```\n%s\n```\n\n",
			map[bool]string{true: " and PostgreSQL", false: ""}[r.backend == "postgres"], strings.Join(r.perf, "\n"))
	}
}

func retried(r *recorder) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.retried) == 0 {
		return "0"
	}
	var parts []string
	for k, n := range r.retried {
		parts = append(parts, fmt.Sprintf("%d (%s)", n, k))
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}

func median(ds []time.Duration) time.Duration { return pct(ds, 50) }

func p50p99(ds []time.Duration) string {
	if len(ds) == 0 {
		return "-"
	}
	return fmt.Sprintf("%s / %s", ms(pct(ds, 50)), ms(pct(ds, 99)))
}

func ms(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return fmt.Sprintf("%.1f s", d.Seconds())
	case d >= 100*time.Millisecond:
		return fmt.Sprintf("%.0f ms", float64(d)/1e6)
	default:
		return fmt.Sprintf("%.1f ms", float64(d)/1e6)
	}
}

func kB(total int64, n int) string {
	if n == 0 {
		return "0"
	}
	return fmt.Sprintf("%.0f", float64(total)/float64(n)/1000)
}

// num formats n with thousands separators.
func num(n int) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	if neg {
		return "-" + s
	}
	return s
}

func mdEscape(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "|", `\|`), "\n", " ")
}
