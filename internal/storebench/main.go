// Command storebench measures the store and the sync and prints a
// Markdown report: durable events a second with group commit against one
// fsync per event, revocation lookups at one and ten million entries, the
// import of a million revocations, the upload of a million queued events
// to an authority over loopback, and the bytes a revocation takes on the
// wire and on disk. make bench-store runs it; the README quotes it.
package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	stdsync "sync"
	"time"

	"github.com/checkpointd/checkpoint/internal/authority"
	"github.com/checkpointd/checkpoint/internal/clock"
	"github.com/checkpointd/checkpoint/internal/credential/credentialtest"
	"github.com/checkpointd/checkpoint/internal/protocol"
	"github.com/checkpointd/checkpoint/internal/trust"
	"github.com/checkpointd/checkpoint/store"
	"github.com/checkpointd/checkpoint/sync"
)

func main() {
	big := flag.Int("big", 10_000_000, "entries of the large revocation set")
	uploads := flag.Int("upload", 1_000_000, "events queued for the upload")
	dir := flag.String("dir", "", "scratch directory (default a temporary one)")
	out := flag.String("out", "", "also write the report to this file")
	flag.Parse()
	if *dir == "" {
		d, err := os.MkdirTemp("", "storebench-")
		if err != nil {
			fail(err)
		}
		scratch = d
		defer os.RemoveAll(d)
		*dir = d
	}
	var w io.Writer = os.Stdout
	var f *os.File
	if *out != "" {
		var err error
		if f, err = os.Create(*out); err != nil {
			fail(err)
		}
		defer f.Close()
		w = io.MultiWriter(os.Stdout, f)
	}
	fmt.Fprintf(w, "## Store and sync\n\nMachine: %d CPUs, Go %s; the scratch files are on %s.\n\n", runtime.NumCPU(), runtime.Version(), *dir)
	events(w, *dir)
	revocations(w, *dir, *big)
	upload(w, *dir, *uploads)
}

// scratch is the temporary directory main made, if it made one.
var scratch string

// fail reports err and exits, removing the scratch files (gigabytes at ten
// million entries), which os.Exit would leave behind.
func fail(err error) {
	fmt.Fprintln(os.Stderr, "storebench:", err)
	if scratch != "" {
		os.RemoveAll(scratch)
	}
	os.Exit(1)
}

func progress(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }

func ev(i int) store.Event {
	return store.Event{Time: time.Now(), Kind: "scan", Decision: "pass", Status: "green",
		Subject: []byte(fmt.Sprintf("s%09d", i)), CredentialID: []byte("cred0001"), Gate: "gate-3"}
}

// recordRate records n events from writers goroutines and returns the rate.
func recordRate(path string, n, writers int, noGroup bool) float64 {
	b, err := store.OpenBox(path, store.Options{NoGroupCommit: noGroup})
	if err != nil {
		fail(err)
	}
	defer b.Close()
	return recordInto(b, n, writers)
}

func events(w io.Writer, dir string) {
	progress("recording events...")
	fmt.Fprintf(w, "### Durable events\n\nEach event counts as recorded only after the commit holding it is fsynced.\n\n")
	fmt.Fprintf(w, "| writers | one fsync per event | group commit | ratio |\n|---|---|---|---|\n")
	for _, writers := range []int{1, 16, 64} {
		single := recordRate(filepath.Join(dir, fmt.Sprintf("single-%d.db", writers)), 2000, writers, true)
		group := recordRate(filepath.Join(dir, fmt.Sprintf("group-%d.db", writers)), 20000, writers, false)
		fmt.Fprintf(w, "| %d | %.0f events/s | %.0f events/s | %.1f |\n", writers, single, group, group/single)
	}
	fmt.Fprintln(w)
}

func subject(i uint64) [store.SubjectSize]byte {
	h := sha256.Sum256(binary.BigEndian.AppendUint64(nil, i))
	return [store.SubjectSize]byte(h[:store.SubjectSize])
}

// importSet puts n revocations into a box as one snapshot and returns the
// time it took and the bytes of the chunks on the wire.
func importSet(b *store.Box, version uint64, n int) (time.Duration, int) {
	const chunk = 50000
	now := time.Now().Unix()
	var set store.SetDigest
	all := make([]store.RevEntry, n)
	for j := range all {
		all[j] = store.RevEntry{Subject: subject(uint64(j)), Before: now - int64(j%86400), DropAfter: now + 30*86400}
		set.Add(all[j])
	}
	// The authority sends a snapshot in subject order.
	slices.SortFunc(all, func(a, b store.RevEntry) int { return bytes.Compare(a.Subject[:], b.Subject[:]) })
	var entries [][]store.RevEntry
	wire := 0
	for i := 0; i < n; i += chunk {
		es := all[i:min(n, i+chunk)]
		raw, err := protocol.EncodeChunk(es)
		if err != nil {
			fail(err)
		}
		wire += len(raw)
		entries = append(entries, es)
	}
	start := time.Now()
	if err := b.BeginRevocations(store.Staging{Version: version, Snapshot: true, Chunks: len(entries), Manifest: []byte("bench")}); err != nil {
		fail(err)
	}
	for i, es := range entries {
		if err := b.ApplyChunk(version, i, es); err != nil {
			fail(err)
		}
	}
	if err := b.CommitRevocations(set, time.Now().Add(time.Hour)); err != nil {
		fail(err)
	}
	return time.Since(start), wire
}

func lookups(b *store.Box, n int) (p50, p99 time.Duration) {
	r := rand.New(rand.NewPCG(1, 2))
	issued := time.Now().Add(-48 * time.Hour)
	times := make([]time.Duration, 0, 200000)
	hits := 0
	for i := 0; i < 200000; i++ {
		var s [store.SubjectSize]byte
		if i%2 == 0 {
			s = subject(uint64(r.IntN(n)))
		} else {
			s = subject(uint64(n + r.IntN(n))) // not revoked
		}
		t0 := time.Now()
		if b.Revoked(s[:], issued) {
			hits++
		}
		times = append(times, time.Since(t0))
	}
	if hits != 100000 {
		fail(fmt.Errorf("lookups: %d hits, want 100000", hits))
	}
	slices.Sort(times)
	return times[len(times)/2], times[len(times)*99/100]
}

func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

func revocations(w io.Writer, dir string, big int) {
	fmt.Fprintf(w, "### Revocations\n\n")
	fmt.Fprintf(w, "| entries | import | lookup p50 | lookup p99 | bytes per entry on the wire | on disk |\n|---|---|---|---|---|---|\n")
	for _, n := range []int{1_000_000, big} {
		progress("importing %d revocations...", n)
		path := filepath.Join(dir, fmt.Sprintf("revs-%d.db", n))
		b, err := store.OpenBox(path, store.Options{})
		if err != nil {
			fail(err)
		}
		before := fileSize(path)
		took, wire := importSet(b, 1, n)
		if _, err := b.Compact(); err != nil {
			fail(err)
		}
		progress("looking up...")
		lookups(b, n) // a first pass maps the file's pages in, as a running checkpoint has
		p50, p99 := lookups(b, n)
		b.Close()
		disk := fileSize(path) - before
		fmt.Fprintf(w, "| %d | %.1f s | %.1f µs | %.1f µs | %.1f | %.1f |\n", n, took.Seconds(),
			float64(p50.Nanoseconds())/1000, float64(p99.Nanoseconds())/1000, float64(wire)/float64(n), float64(disk)/float64(n))
		os.Remove(path)
	}
	fmt.Fprintf(w, "\nLookups are 200,000 random subjects, half revoked, each a read transaction of its own, measured\n")
	fmt.Fprintf(w, "after a first pass has mapped the file in. The import is one snapshot in chunks of 50,000 in\n")
	fmt.Fprintf(w, "subject order, each chunk a transaction, with the count and digest check at the end.\n\n")
}

func upload(w io.Writer, dir string, n int) {
	progress("queueing %d events...", n)
	f := credentialtest.New()
	list := credentialtest.Key("list")
	l := *f.Trust
	l.ListKeys = []trust.ListKey{{PublicKey: list.Public().(ed25519.PublicKey), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}}
	rawTrust, err := trust.Sign(&l, f.Root)
	if err != nil {
		fail(err)
	}
	a, err := store.OpenAuthority(filepath.Join(dir, "authority.db"))
	if err != nil {
		fail(err)
	}
	defer a.Close()
	if err := a.SetTrustList(rawTrust); err != nil {
		fail(err)
	}
	if err := a.AddToken("t", "bench", time.Now().Add(time.Hour)); err != nil {
		fail(err)
	}
	srv := httptest.NewServer(authority.New(a, authority.Keys{Issuer: f.Issuer, IssuerCode: "GD", List: list, Pseudonym: f.PseudonymKey},
		authority.Options{}).Handler())
	defer srv.Close()

	box, err := store.OpenBox(filepath.Join(dir, "upload.db"), store.Options{MaxBatch: 4096})
	if err != nil {
		fail(err)
	}
	defer box.Close()
	rate := recordInto(box, n, 256)
	progress("recorded at %.0f events/s; uploading...", rate)
	est, err := sync.NewEstimator(clock.System{}, box, -1, nil)
	if err != nil {
		fail(err)
	}
	s, err := sync.New(sync.Config{Authority: srv.URL, Name: "bench", EnrollToken: "t", DeviceKey: credentialtest.Key("dev"),
		Root: f.Root.Public().(ed25519.PublicKey), Batch: 10000}, box, est, clock.System{}, nil, nil)
	if err != nil {
		fail(err)
	}
	start := time.Now()
	if err := s.SyncOnce(context.Background()); err != nil {
		fail(err)
	}
	took := time.Since(start)
	devs, _ := a.Devices()
	if len(devs) != 1 || devs[0].Mark != uint64(n) {
		fail(fmt.Errorf("the authority holds %v", devs))
	}
	fmt.Fprintf(w, "### Catching up\n\n%d queued events uploaded to an authority over loopback in %.1f s (%.0f events/s),\n",
		n, took.Seconds(), float64(n)/took.Seconds())
	fmt.Fprintf(w, "in signed batches of 10,000, each stored by the authority in one transaction and acknowledged with its mark.\n")
	fmt.Fprintf(w, "(Queueing them took %.0f events/s with 256 writers.)\n", rate)
}

// recordInto records n events into b from writers goroutines and returns the rate.
func recordInto(b *store.Box, n, writers int) float64 {
	var wg stdsync.WaitGroup
	start := time.Now()
	for g := 0; g < writers; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := g; i < n; i += writers {
				if _, err := b.Record(context.Background(), ev(i)); err != nil {
					fail(err)
				}
			}
		}(g)
	}
	wg.Wait()
	return float64(n) / time.Since(start).Seconds()
}
