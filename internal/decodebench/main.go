// Command decodebench measures the scanner's decoder against zbar and
// zxing-cpp on the same images in the same run, and the whole pipeline on
// a 30 frames-a-second video, and prints a Markdown report. make
// bench-decode runs it; docs/scanner.md explains the sets and the README
// quotes the figures.
//
// The sets: the real photographs of ../shared/testdata/qr-photos (when
// present), and a corpus of camera frames the scene package renders,
// grouped by module size, plus frames with no code. Peers run as their
// Debian command-line tools (zbarimg, ZXingReader) on the same pixels,
// written as uncompressed PPM files. A peer's time per image is its decode
// time, without the process start: each image is read by one process that
// is given it once and by another given it 1+k times, and the difference
// of the two wall times over k is one more load of an uncompressed file
// plus one more decode. The decoder's own time excludes loading.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/makiuchi-d/gozxing"
	"github.com/makiuchi-d/gozxing/qrcode"
	"gocv.io/x/gocv"
	"golang.org/x/sys/unix"

	"github.com/checkpointd/checkpoint/internal/clock"
	"github.com/checkpointd/checkpoint/internal/scene"
	"github.com/checkpointd/checkpoint/scanner"
)

func main() {
	photos := flag.String("photos", "../shared/testdata/qr-photos", "folder of real photos (N.png with N.txt), in sub-folders")
	n := flag.Int("n", 100, "generated frames per module-size level")
	empty := flag.Int("empty", 100, "generated frames with no code")
	seed := flag.Uint64("seed", 2026, "seed of the generated corpus")
	video := flag.Duration("video", 30*time.Second, "length of the end-to-end video (0 skips the end-to-end runs)")
	out := flag.String("out", "", "also write the report to this file")
	keep := flag.String("keep", "", "write the generated frames to this folder and keep them, reusing frames already there (default a temporary folder)")
	peers := flag.Bool("peers", true, "run zbar and zxing-cpp (false: ours only, for a quick look)")
	reps := flag.Int("reps", 10, "k: extra copies of an image in a peer's timing run")
	budgets := flag.String("budgets", "5ms,10ms,15ms,25ms,60ms", "camera budgets to compare on the generated frames (empty skips)")
	cpus := flag.String("cpus", "one", `CPUs of the side-by-side measurements: "one" (the last CPU: time per frame per core, OpenCV's own threads included) or "all"`)
	misses := flag.Bool("misses", false, "list the images with a code that our decoder did not read (to standard error)")
	e2e := flag.String("e2e-video", "", "internal: play this video through the pipeline and report (run in a fresh process, so its memory is the pipeline's alone)")
	workers := flag.Int("e2e-workers", 0, "internal: decoder workers of the -e2e-video run")
	flag.Parse()

	if *e2e != "" {
		// The pipeline runs its workers on every CPU.
		if err := setAffinity(-1); err != nil {
			fmt.Fprintln(os.Stderr, "decodebench:", err)
			os.Exit(1)
		}
		if err := endToEnd(os.Stdout, *e2e, *workers); err != nil {
			fmt.Fprintln(os.Stderr, "decodebench:", err)
			os.Exit(1)
		}
		return
	}
	var bs []time.Duration
	for _, f := range strings.Split(*budgets, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		d, err := time.ParseDuration(f)
		if err != nil {
			fmt.Fprintln(os.Stderr, "decodebench: -budgets:", err)
			os.Exit(2)
		}
		bs = append(bs, d)
	}

	if *cpus == "one" {
		if err := setAffinity(runtime.NumCPU() - 1); err != nil {
			fmt.Fprintln(os.Stderr, "decodebench:", err)
			os.Exit(1)
		}
	}
	var report bytes.Buffer
	w := io.MultiWriter(os.Stdout, &report)
	cfg := config{keep: *keep, photos: *photos, n: *n, empty: *empty, seed: *seed, video: *video,
		peers: *peers, reps: max(1, *reps), budgets: bs, misses: *misses, oneCPU: *cpus == "one"}
	if err := run(w, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "decodebench:", err)
		os.Exit(1)
	}
	if *out != "" {
		if err := os.WriteFile(*out, report.Bytes(), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "decodebench:", err)
			os.Exit(1)
		}
	}
}

type config struct {
	keep, photos string
	n, empty     int
	seed         uint64
	video        time.Duration
	peers        bool
	reps         int
	budgets      []time.Duration
	misses       bool
	oneCPU       bool
}

// item is one image with the text it holds ("" for none).
type item struct {
	path string // what our decoder reads
	ppm  string // the same pixels, uncompressed, for the peers
	want string
}

type set struct {
	name  string
	items []item
	still bool // photos: the still-image decoder; frames: the live one
	total bool // a row that sums other sets
}

// outcome is what one decoder did on one set.
type outcome struct {
	read, falsePos int
	times          []time.Duration
	unread         []time.Duration // times of the images with a code it did not read
	missed         []string        // and their paths
	stages         map[string]int  // which cascade stage read each code
}

func run(w io.Writer, cfg config) error {
	var peers []peer
	if cfg.peers {
		peers = []peer{zbar, zxingCPP}
		for _, p := range peers {
			if _, err := exec.LookPath(p.cmd); err != nil {
				return fmt.Errorf("%s not installed (make bench-setup installs it): %w", p.cmd, err)
			}
		}
	}
	dir := cfg.keep
	if dir == "" {
		d, err := os.MkdirTemp("", "decodebench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}

	var sets []set
	if s, err := photoSets(cfg.photos, filepath.Join(dir, "photos")); err == nil {
		sets = append(sets, s...)
	} else {
		fmt.Fprintf(w, "(no photos: %v)\n\n", err)
	}
	fmt.Fprintf(os.Stderr, "rendering %d frames...\n", 4*cfg.n+cfg.empty)
	gen, err := corpusSets(dir, cfg.seed, cfg.n, cfg.empty)
	if err != nil {
		return err
	}
	sets = append(sets, gen...)

	fmt.Fprintf(w, "## Decode rate and time, side by side\n\n")
	fmt.Fprintf(w, "Machine: %d CPUs, %s, Go %s. Times are decoding only, in ms, median and p99 over the set's images,\n", runtime.NumCPU(), cpuModel(), runtime.Version())
	if cfg.oneCPU {
		fmt.Fprintf(w, "every decoder (ours with OpenCV's threads, gozxing, the peers' processes) held to one CPU: time per frame per core.\n")
	} else {
		fmt.Fprintf(w, "every decoder free to use all CPUs.\n")
	}
	fmt.Fprintf(w, "A peer's time is one more load of an uncompressed PPM plus one more decode in one process\n")
	fmt.Fprintf(w, "(the wall time of a run given the image 1+%d times, less that of a run given it once, over %d),\n", cfg.reps, cfg.reps)
	fmt.Fprintf(w, "so process start and PNG decoding are out. \"ours / zxing-cpp\" is the ratio of the medians:\n")
	fmt.Fprintf(w, "under 1 is faster. \"unread\" is our time on the images with a code that we did not read\n")
	fmt.Fprintf(w, "(every image of the set without a code).\n\n")
	fmt.Fprintf(w, "| set | images | ours | zbar | zxing-cpp | ours / best peer | ours p50 / p99 | zxing-cpp p50 / p99 | ours / zxing-cpp | zbar p50 | unread p50 / p99 | plain gozxing | its p50 |\n")
	fmt.Fprintf(w, "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	allStages := map[string]int{}
	var big, bigRead int
	// The generated frames with a code, summed into one row.
	sum := [3]outcome{}
	sumPlain := outcome{}
	sumN := 0
	for _, s := range sets {
		fmt.Fprintf(os.Stderr, "set %s...\n", s.name)
		ours := decodeOurs(s, 0)
		if cfg.misses {
			for _, m := range ours.missed {
				fmt.Fprintf(os.Stderr, "missed %s\n", m)
			}
		}
		plain := decodePlain(s)
		if !strings.HasSuffix(s.name, ": all") {
			for k, v := range ours.stages {
				allStages[s.name[:strings.Index(s.name+":", ":")]+": "+k] += v
			}
		}
		theirs := make([]outcome, 2)
		for i, p := range peers {
			theirs[i] = p.run(s, cfg.reps)
		}
		if strings.HasPrefix(s.name, "generated") && s.items[0].want != "" {
			if !strings.Contains(s.name, "tiny") {
				big += len(s.items)
				bigRead += ours.read
			}
			for i, o := range []outcome{ours, theirs[0], theirs[1]} {
				sum[i].read += o.read
				sum[i].times = append(sum[i].times, o.times...)
				sum[i].unread = append(sum[i].unread, o.unread...)
			}
			sumPlain.read += plain.read
			sumPlain.times = append(sumPlain.times, plain.times...)
			sumN += len(s.items)
		}
		row(w, s, len(s.items), ours, theirs, plain, cfg.peers)
		if s.name == "generated: tiny (1.5-2 px)" {
			row(w, set{name: "generated: all with a code", items: []item{{want: "x"}}, total: true}, sumN, sum[0], sum[1:], sumPlain, cfg.peers)
		}
	}
	fmt.Fprintf(w, "\nWhich cascade stage read the codes:\n\n| stage | codes |\n|---|---|\n")
	var keys []string
	for k := range allStages {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "| %s | %d |\n", k, allStages[k])
	}
	if big > 0 {
		fmt.Fprintf(w, "\nGenerated frames with modules of 2 pixels or more: %d of %d read (%.1f %%; target 98 %%).\n", bigRead, big, 100*float64(bigRead)/float64(big))
	}
	fmt.Fprintln(w)

	if len(cfg.budgets) > 0 {
		budgetSweep(w, sets, cfg.budgets)
	}
	if cfg.video > 0 {
		// The end-to-end runs play a rendered video, each in a fresh process.
		path := filepath.Join(dir, "lane.avi")
		fmt.Fprintf(os.Stderr, "rendering %v of video...\n", cfg.video)
		if err := scene.WriteVideo(path, 30, cfg.video, 77, lane(cfg.video)); err != nil {
			return err
		}
		fmt.Fprintf(w, "## End to end: a 1280x720, 30 fps video through the pipeline\n\n")
		fmt.Fprintf(w, "| decoder workers | frames captured | processed | dropped | frame latency p50 | p99 | people | read | code fully in view to event p50 | p99 | peak resident memory |\n")
		fmt.Fprintf(w, "|---|---|---|---|---|---|---|---|---|---|---|\n")
		for _, workers := range []int{1, 2} {
			cmd := exec.Command(os.Args[0], "-e2e-video", path, "-e2e-workers", fmt.Sprint(workers))
			cmd.Stdout, cmd.Stderr = w, os.Stderr
			if err := cmd.Run(); err != nil {
				return err
			}
		}
		fmt.Fprintf(w, "\nFrame latency is from capture to the end of decoding, over every frame processed (the\n")
		fmt.Fprintf(w, "last 1,024); the second latency runs from the first frame showing the whole code to its event.\n")
		fmt.Fprintf(w, "Frames are never queued: the slot holds one frame, and a frame not taken before the next\n")
		fmt.Fprintf(w, "arrives is dropped, so latency stays bounded.\n\n")
	}
	arm64(w)
	return nil
}

// row prints one line of the side-by-side table.
func row(w io.Writer, s set, images int, ours outcome, theirs []outcome, plain outcome, peers bool) {
	p50 := func(o outcome) string { return ms(pct(o.times, 50)) }
	both := func(o outcome) string { return p50(o) + " / " + ms(pct(o.times, 99)) }
	ratio, peerRead := "-", func(i int) string { return "-" }
	zx, zb := "-", "-"
	if peers {
		if z := pct(theirs[1].times, 50); z > 0 {
			ratio = fmt.Sprintf("**%.2f**", float64(pct(ours.times, 50))/float64(z))
		}
		zx, zb = both(theirs[1]), p50(theirs[0])
		peerRead = func(i int) string { return fmt.Sprint(theirs[i].read) }
	}
	if s.items[0].want == "" {
		fp := func(i int) string {
			if !peers {
				return "-"
			}
			return fmt.Sprintf("%d false", theirs[i].falsePos)
		}
		fmt.Fprintf(w, "| %s | %d | %d false | %s | %s | - | %s | %s | %s | %s | %s | %d false | %s |\n", s.name, images,
			ours.falsePos, fp(0), fp(1), both(ours), zx, ratio, zb, both(ours), plain.falsePos, p50(plain))
		return
	}
	best := "-"
	if peers {
		if b := max(theirs[0].read, theirs[1].read); b > 0 {
			best = fmt.Sprintf("%.2f", float64(ours.read)/float64(b))
		}
	}
	unread := "-"
	if len(ours.unread) > 0 {
		unread = ms(pct(ours.unread, 50)) + " / " + ms(pct(ours.unread, 99))
	}
	name := s.name
	if s.total {
		name = "**" + name + "**"
	}
	fmt.Fprintf(w, "| %s | %d | %d | %s | %s | %s | %s | %s | %s | %s | %s | %d | %s |\n", name, images,
		ours.read, peerRead(0), peerRead(1), best, both(ours), zx, ratio, zb, unread, plain.read, p50(plain))
}

// budgetSweep decodes the generated frames again under each camera budget:
// what a shorter budget loses in reads against what it saves in the tail.
func budgetSweep(w io.Writer, sets []set, budgets []time.Duration) {
	var gen []set
	for _, s := range sets {
		if strings.HasPrefix(s.name, "generated") {
			gen = append(gen, s)
		}
	}
	fmt.Fprintf(w, "## The camera budget: reads against the tail\n\n")
	fmt.Fprintf(w, "Each budget decodes the generated frames again (one run each, same machine).\n\n| budget |")
	for _, s := range gen {
		if s.items[0].want != "" {
			fmt.Fprintf(w, " %s |", strings.TrimPrefix(s.name, "generated: "))
		}
	}
	fmt.Fprintf(w, " read | frames with a code, p99 | unread frames with a code, p50 / p99 | empty frames, p50 / p99 |\n|---|")
	for _, s := range gen {
		if s.items[0].want != "" {
			fmt.Fprintf(w, "---|")
		}
	}
	fmt.Fprintf(w, "---|---|---|---|\n")
	for _, b := range budgets {
		fmt.Fprintf(os.Stderr, "budget %v...\n", b)
		fmt.Fprintf(w, "| %v |", b)
		var read int
		var coded, unread, empty []time.Duration
		for _, s := range gen {
			o := decodeOurs(s, b)
			if s.items[0].want == "" {
				empty = append(empty, o.times...)
				continue
			}
			fmt.Fprintf(w, " %d |", o.read)
			read += o.read
			coded = append(coded, o.times...)
			unread = append(unread, o.unread...)
		}
		fmt.Fprintf(w, " %d | %s | %s / %s | %s / %s |\n", read, ms(pct(coded, 99)), ms(pct(unread, 50)), ms(pct(unread, 99)),
			ms(pct(empty, 50)), ms(pct(empty, 99)))
	}
	fmt.Fprintln(w)
}

// lane is people presenting codes at a station lane, one every two
// seconds, each holding the phone up for one and a half.
func lane(length time.Duration) []scene.Appearance {
	pose := scene.Params{ModulePx: 3, CenterX: 0.5, CenterY: 0.5, Rotation: 10, TiltX: 15, TiltY: -10,
		Ambient: 0.9, Screen: 0.9, Gamma: 1, Noise: 3, JPEGQuality: 85}
	var people []scene.Appearance
	for t, i := 500*time.Millisecond, 0; t+2*time.Second <= length; t, i = t+2*time.Second, i+1 {
		people = append(people, scene.Appearance{Text: scene.CodeText(5000 + i), Start: t, End: t + 1500*time.Millisecond, Pose: pose})
	}
	return people
}

// photoSets lists the photos by sub-folder, and writes each as a PPM in
// ppmDir for the peers.
func photoSets(root, ppmDir string) ([]set, error) {
	subs, err := os.ReadDir(root)
	if err != nil {
		return nil, err
	}
	var sets []set
	all := set{name: "photos: all", still: true}
	for _, sub := range subs {
		if !sub.IsDir() {
			continue
		}
		files, _ := filepath.Glob(filepath.Join(root, sub.Name(), "*.png"))
		sort.Strings(files)
		s := set{name: "photos: " + sub.Name(), still: true}
		for _, f := range files {
			want, err := os.ReadFile(strings.TrimSuffix(f, ".png") + ".txt")
			if err != nil {
				continue
			}
			ppm := filepath.Join(ppmDir, sub.Name(), strings.TrimSuffix(filepath.Base(f), ".png")+".ppm")
			if err := toPPM(f, ppm); err != nil {
				return nil, err
			}
			s.items = append(s.items, item{path: f, ppm: ppm, want: string(want)})
		}
		if len(s.items) > 0 {
			sets = append(sets, s)
			all.items = append(all.items, s.items...)
		}
	}
	if len(all.items) == 0 {
		return nil, errors.New("no photos with expected texts")
	}
	return append(sets, all), nil
}

func toPPM(src, dst string) error {
	if _, err := os.Stat(dst); err == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	m := gocv.IMRead(src, gocv.IMReadColor)
	defer m.Close()
	if m.Empty() || !gocv.IMWrite(dst, m) {
		return fmt.Errorf("cannot convert %s to %s", src, dst)
	}
	return nil
}

// corpusSets renders the generated frames as PPM files in dir (frames
// already there are reused: the corpus is deterministic).
func corpusSets(dir string, seed uint64, n, empty int) ([]set, error) {
	byLevel := map[scene.Level]*set{}
	order := []scene.Level{scene.Large, scene.Medium, scene.Small, scene.Tiny, scene.Empty}
	for _, l := range order {
		byLevel[l] = &set{name: fmt.Sprintf("generated: %s", l)}
	}
	byLevel[scene.Large].name += " (modules 4-8 px)"
	byLevel[scene.Medium].name += " (2.5-4 px)"
	byLevel[scene.Small].name += " (2-2.5 px)"
	byLevel[scene.Tiny].name += " (1.5-2 px)"
	byLevel[scene.Empty].name += " (no code, busy backgrounds)"
	for _, c := range scene.Corpus(seed, n, empty, scene.CodeText) {
		path := filepath.Join(dir, fmt.Sprintf("%d-%s.ppm", seed, c.Name))
		if _, err := os.Stat(path); err != nil {
			m, _, err := scene.Render(c.Params)
			if err != nil {
				return nil, err
			}
			ok := gocv.IMWrite(path, m)
			m.Close()
			if !ok {
				return nil, fmt.Errorf("cannot write %s", path)
			}
		}
		byLevel[c.Level].items = append(byLevel[c.Level].items, item{path: path, ppm: path, want: c.Params.Text})
	}
	var sets []set
	for _, l := range order {
		if len(byLevel[l].items) > 0 {
			sets = append(sets, *byLevel[l])
		}
	}
	return sets, nil
}

// decodeOurs decodes the set with the scanner's decoder; budget 0 is the
// decoder's default.
func decodeOurs(s set, budget time.Duration) outcome {
	d := scanner.NewDecoder(scanner.DecoderOptions{Still: s.still, Budget: budget})
	defer d.Close()
	o := outcome{stages: map[string]int{}}
	for _, it := range s.items {
		img := gocv.IMRead(it.path, gocv.IMReadColor)
		if s.still {
			// As checkpointctl loads an image.
			g := gocv.NewMat()
			gocv.CvtColor(img, &g, gocv.ColorBGRToGray)
			img.Close()
			img = g
		}
		start := time.Now()
		rs := d.Decode(img)
		took := time.Since(start)
		o.times = append(o.times, took)
		img.Close()
		before := o.read
		score(&o, it.want, texts(rs))
		if o.read > before {
			for _, r := range rs {
				if same(r.Text, it.want) {
					o.stages[r.Stage]++
					break
				}
			}
		} else if it.want != "" {
			o.unread = append(o.unread, took)
			o.missed = append(o.missed, it.path)
		}
	}
	return o
}

// decodePlain is gozxing alone on the whole grey image, with TRY_HARDER:
// the baseline the cascade builds on.
func decodePlain(s set) outcome {
	var o outcome
	hints := map[gozxing.DecodeHintType]any{gozxing.DecodeHintType_TRY_HARDER: true}
	for _, it := range s.items {
		img := gocv.IMRead(it.path, gocv.IMReadGrayScale)
		pix := img.ToBytes()
		start := time.Now()
		var got []string
		if src, err := gozxing.NewPlanarYUVLuminanceSource(pix, img.Cols(), img.Rows(), 0, 0, img.Cols(), img.Rows(), false); err == nil {
			if bmp, err := gozxing.NewBinaryBitmap(gozxing.NewHybridBinarizer(src)); err == nil {
				if r, err := qrcode.NewQRCodeReader().Decode(bmp, hints); err == nil {
					got = []string{r.GetText()}
				}
			}
		}
		o.times = append(o.times, time.Since(start))
		img.Close()
		score(&o, it.want, got)
	}
	return o
}

func texts(rs []scanner.Result) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Text)
	}
	return out
}

func same(got, want string) bool {
	return got == want || strings.TrimRight(got, "\r\n") == strings.TrimRight(want, "\r\n")
}

func score(o *outcome, want string, got []string) {
	if want == "" {
		if len(got) > 0 {
			o.falsePos++
		}
		return
	}
	for _, g := range got {
		if same(g, want) {
			o.read++
			return
		}
	}
}

// peer is a command-line decoder.
type peer struct {
	cmd   string
	args  []string // before the files
	parse func(out []byte) []string
	// slow divides k for this peer: zbar's time is shown for reference
	// only, and its runs are long.
	slow int
}

var zbar = peer{
	cmd:  "zbarimg",
	args: []string{"-q", "--raw", "-Sdisable", "-Sqrcode.enable"},
	slow: 4,
	parse: func(out []byte) []string {
		s := strings.TrimSuffix(string(out), "\n")
		if s == "" {
			return nil
		}
		return []string{s}
	},
}

var zxingCPP = peer{
	cmd:  "ZXingReader",
	args: []string{"-format", "QRCode", "-bytes"},
	parse: func(out []byte) []string {
		if len(out) == 0 {
			return nil
		}
		return []string{string(out)}
	},
}

// run reads each image of s once for the outcome, and times it by
// difference (see the package comment).
func (p peer) run(s set, k int) outcome {
	if p.slow > 1 {
		k = max(1, k/p.slow)
	}
	var o outcome
	exe := func(copies int, path string) ([]byte, time.Duration) {
		args := append([]string(nil), p.args...)
		for i := 0; i < copies; i++ {
			args = append(args, path)
		}
		start := time.Now()
		out, _ := exec.Command(p.cmd, args...).Output()
		return out, time.Since(start)
	}
	for _, it := range s.items {
		out, one := exe(1, it.ppm)
		_, many := exe(1+k, it.ppm)
		// A second pair when the first is implausible (a process start
		// delayed by the machine's other work).
		if many <= one {
			_, one = exe(1, it.ppm)
			_, many = exe(1+k, it.ppm)
		}
		o.times = append(o.times, max(0, many-one)/time.Duration(k))
		score(&o, it.want, p.parse(out))
	}
	return o
}

func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, len(s)*p/100)]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d.Microseconds())/1000) }

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "model name") {
			if i := strings.Index(line, ":"); i >= 0 {
				return strings.TrimSpace(line[i+1:])
			}
		}
	}
	return runtime.GOARCH
}

// arm64 says whether the scanner cross-compiles for the ARM boards gate
// boxes often are; with cgo and OpenCV it needs an aarch64 C toolchain and
// OpenCV built for it, so on a plain x86 machine it does not, and the ARM
// figures are not measured here.
func arm64(w io.Writer) {
	cmd := exec.Command("go", "build", "-o", os.DevNull, "github.com/checkpointd/checkpoint/scanner")
	cmd.Env = append(os.Environ(), "GOARCH=arm64", "CGO_ENABLED=1")
	out, err := cmd.CombinedOutput()
	if err == nil {
		fmt.Fprintf(w, "arm64: the scanner cross-compiles (GOARCH=arm64, cgo); run this benchmark on the board for its figures.\n")
		return
	}
	// The package that failed and its first error say why.
	why := err.Error()
	pkg := ""
	for _, line := range strings.Split(string(out), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "# ") && pkg == "" {
			pkg = strings.TrimPrefix(line, "# ") + ": "
		} else if strings.Contains(strings.ToLower(line), "error") || strings.Contains(line, "undefined") {
			why = pkg + line
			break
		}
	}
	fmt.Fprintf(w, "arm64: not measured. GOARCH=arm64 with cgo (OpenCV) does not cross-compile here: no arm64 C toolchain\n")
	fmt.Fprintf(w, "or OpenCV for arm64 on this machine (%s). Run make bench-decode on the board itself.\n", strings.ReplaceAll(why, "|", "/"))
}

// endToEnd plays the video at path through the whole pipeline in real
// time, 30 frames a second, as a camera would deliver it, with the given
// number of decoder workers, and prints a row of the end-to-end table.
func endToEnd(w io.Writer, path string, workers int) error {
	vc, err := gocv.VideoCaptureFile(path)
	if err != nil {
		return err
	}
	length := time.Duration(vc.Get(gocv.VideoCaptureFrameCount) / 30 * float64(time.Second))
	vc.Close()
	people := lane(length)
	p := scanner.NewPipeline(scanner.Config{Source: scanner.SourceConfig{Device: path}, Pace: 30, Workers: workers}, clock.System{}, nil, nil)
	events := make(chan scanner.ScanEvent, 256)
	var fromVisible []time.Duration
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- p.Run(context.Background(), events); close(events) }()
	seen := map[string]bool{}
	var peakRSS int
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
loop:
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				break loop
			}
			for _, a := range people {
				if a.Text == ev.Text && !seen[a.Text] {
					seen[a.Text] = true
					fromVisible = append(fromVisible, ev.Decoded.Sub(start.Add(firstVisible(a, people))))
				}
			}
		case <-tick.C:
			peakRSS = max(peakRSS, rssKB())
		}
	}
	if err := <-done; err != nil {
		return err
	}
	peakRSS = max(peakRSS, rssKB())
	st := p.Stats()
	fmt.Fprintf(w, "| %d | %d | %d | %d | %s ms | %s ms | %d | %d | %s ms | %s ms | %d MB |\n",
		workers, st.Captured, st.Processed, st.Dropped, ms(st.LatencyP50), ms(st.LatencyP99), len(people), len(seen),
		ms(pct(fromVisible, 50)), ms(pct(fromVisible, 99)), peakRSS/1024)
	return nil
}

// firstVisible is when the first frame that shows a's whole code was
// captured, relative to the start of the video.
func firstVisible(a scene.Appearance, people []scene.Appearance) time.Duration {
	for i := 0; ; i++ {
		t := time.Duration(float64(i) / 30 * float64(time.Second))
		if t >= a.End {
			return a.Start
		}
		if t >= a.Start && scene.InFrame(scene.FrameAt(t, 77, people, i)) {
			return t
		}
	}
}

// setAffinity holds this process, and the threads and processes it starts
// from now on, to CPU cpu, or (cpu < 0) lets it use them all. Linux only.
func setAffinity(cpu int) error {
	var set unix.CPUSet
	if cpu < 0 {
		for i := 0; i < runtime.NumCPU(); i++ {
			set.Set(i)
		}
	} else {
		set.Set(cpu)
	}
	// Every thread the Go runtime has: a thread's affinity is its own, and
	// the threads it starts inherit it.
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := unix.SchedSetaffinity(tid, &set); err != nil {
			return fmt.Errorf("sched_setaffinity: %w", err)
		}
	}
	return nil
}

func rssKB() int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			var kb int
			fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(line, "VmRSS:")), "%d", &kb)
			return kb
		}
	}
	return 0
}
