// Command decodebench measures the scanner's decoder against zbar and
// zxing-cpp on the same images in the same run, and the whole pipeline on
// a 30 frames-a-second video, and prints a Markdown report. make
// bench-decode runs it; docs/scanner.md explains the sets and the README
// quotes the figures.
//
// The sets: the real photographs of ../shared/testdata/qr-photos (when
// present), and a corpus of camera frames the scene package renders,
// grouped by module size, plus frames with no code. Peers run as their
// Debian command-line tools (zbarimg, ZXingReader) on the same files, one
// process per file; their times therefore include starting the process and
// loading the image, and are shown for reference only. The decoder's own
// time excludes loading.
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
	"strings"
	"time"

	"github.com/makiuchi-d/gozxing"
	"github.com/makiuchi-d/gozxing/qrcode"
	"gocv.io/x/gocv"

	"github.com/checkpointd/checkpoint/internal/clock"
	"github.com/checkpointd/checkpoint/internal/scene"
	"github.com/checkpointd/checkpoint/scanner"
)

func main() {
	photos := flag.String("photos", "../shared/testdata/qr-photos", "folder of real photos (N.png with N.txt), in sub-folders")
	n := flag.Int("n", 100, "generated frames per module-size level")
	empty := flag.Int("empty", 100, "generated frames with no code")
	seed := flag.Uint64("seed", 2026, "seed of the generated corpus")
	video := flag.Duration("video", 30*time.Second, "length of the end-to-end video")
	out := flag.String("out", "", "also write the report to this file")
	keep := flag.String("keep", "", "write the generated frames to this folder and keep them (default a temporary one)")
	e2e := flag.String("e2e-video", "", "internal: play this video through the pipeline and report (run in a fresh process, so its memory is the pipeline's alone)")
	flag.Parse()

	if *e2e != "" {
		if err := endToEnd(os.Stdout, *e2e); err != nil {
			fmt.Fprintln(os.Stderr, "decodebench:", err)
			os.Exit(1)
		}
		return
	}

	var report bytes.Buffer
	w := io.MultiWriter(os.Stdout, &report)
	if err := run(w, *keep, *photos, *n, *empty, *seed, *video); err != nil {
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

// item is one image with the text it holds ("" for none).
type item struct {
	path string
	want string
}

type set struct {
	name  string
	items []item
	still bool // photos: the still-image decoder; frames: the live one
}

// outcome is what one decoder did on one set.
type outcome struct {
	read, falsePos int
	times          []time.Duration
	stages         map[string]int // which cascade stage read each code
}

func run(w io.Writer, keep, photos string, n, empty int, seed uint64, video time.Duration) error {
	peers := []peer{zbar, zxingCPP}
	for _, p := range peers {
		if _, err := exec.LookPath(p.cmd); err != nil {
			return fmt.Errorf("%s not installed (make bench-setup installs it): %w", p.cmd, err)
		}
	}
	dir := keep
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
	if s, err := photoSets(photos); err == nil {
		sets = append(sets, s...)
	} else {
		fmt.Fprintf(w, "(no photos: %v)\n\n", err)
	}
	fmt.Fprintf(os.Stderr, "rendering %d frames...\n", 4*n+empty)
	gen, err := corpusSets(dir, seed, n, empty)
	if err != nil {
		return err
	}
	sets = append(sets, gen...)

	fmt.Fprintf(w, "## Decode rate, side by side\n\n")
	fmt.Fprintf(w, "Machine: %d CPUs, %s, Go %s. Our time is decoding only (median / p99);\n", runtime.NumCPU(), cpuModel(), runtime.Version())
	fmt.Fprintf(w, "peers' times are whole-process per image (start, load, decode) and only for reference.\n\n")
	fmt.Fprintf(w, "| set | images | ours | zbar | zxing-cpp | ours / best peer | our ms median | our ms p99 | zbar ms | zxing-cpp ms | plain gozxing | its ms median |\n")
	fmt.Fprintf(w, "|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	allStages := map[string]int{}
	var big, bigRead int
	for _, s := range sets {
		fmt.Fprintf(os.Stderr, "set %s...\n", s.name)
		ours := decodeOurs(s)
		plain := decodePlain(s)
		if !strings.HasSuffix(s.name, ": all") {
			for k, v := range ours.stages {
				allStages[s.name[:strings.Index(s.name+":", ":")]+": "+k] += v
			}
		}
		if strings.HasPrefix(s.name, "generated") && s.items[0].want != "" && !strings.Contains(s.name, "tiny") {
			big += len(s.items)
			bigRead += ours.read
		}
		var theirs []outcome
		for _, p := range peers {
			theirs = append(theirs, p.run(s))
		}
		best := max(theirs[0].read, theirs[1].read)
		ratio := "-"
		if best > 0 {
			ratio = fmt.Sprintf("%.2f", float64(ours.read)/float64(best))
		}
		if s.items[0].want == "" {
			fmt.Fprintf(w, "| %s | %d | %d false | %d false | %d false | - | %s | %s | %s | %s | %d false | %s |\n", s.name, len(s.items),
				ours.falsePos, theirs[0].falsePos, theirs[1].falsePos,
				ms(pct(ours.times, 50)), ms(pct(ours.times, 99)), ms(pct(theirs[0].times, 50)), ms(pct(theirs[1].times, 50)),
				plain.falsePos, ms(pct(plain.times, 50)))
			continue
		}
		fmt.Fprintf(w, "| %s | %d | %d | %d | %d | %s | %s | %s | %s | %s | %d | %s |\n", s.name, len(s.items),
			ours.read, theirs[0].read, theirs[1].read, ratio,
			ms(pct(ours.times, 50)), ms(pct(ours.times, 99)), ms(pct(theirs[0].times, 50)), ms(pct(theirs[1].times, 50)),
			plain.read, ms(pct(plain.times, 50)))
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

	// The end-to-end run plays a rendered video in a fresh process.
	path := filepath.Join(dir, "lane.avi")
	fmt.Fprintf(os.Stderr, "rendering %v of video...\n", video)
	if err := scene.WriteVideo(path, 30, video, 77, lane(video)); err != nil {
		return err
	}
	cmd := exec.Command(os.Args[0], "-e2e-video", path)
	cmd.Stdout, cmd.Stderr = w, os.Stderr
	return cmd.Run()
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

func photoSets(root string) ([]set, error) {
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
			s.items = append(s.items, item{f, string(want)})
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
		m, truth, err := scene.Render(c.Params)
		if err != nil {
			return nil, err
		}
		path := filepath.Join(dir, c.Name+".png")
		gocv.IMWrite(path, m)
		m.Close()
		byLevel[c.Level].items = append(byLevel[c.Level].items, item{path, truth.Text})
	}
	var sets []set
	for _, l := range order {
		if len(byLevel[l].items) > 0 {
			sets = append(sets, *byLevel[l])
		}
	}
	return sets, nil
}

func decodeOurs(s set) outcome {
	d := scanner.NewDecoder(scanner.DecoderOptions{Still: s.still})
	defer d.Close()
	o := outcome{stages: map[string]int{}}
	for _, it := range s.items {
		img := gocv.IMRead(it.path, gocv.IMReadColor)
		if s.still {
			g := gocv.NewMat()
			gocv.CvtColor(img, &g, gocv.ColorBGRToGray)
			img.Close()
			img = g
		}
		start := time.Now()
		rs := d.Decode(img)
		o.times = append(o.times, time.Since(start))
		img.Close()
		before := o.read
		score(&o, it.want, texts(rs))
		if o.read > before {
			for _, r := range rs {
				if r.Text == it.want || strings.TrimRight(r.Text, "\r\n") == strings.TrimRight(it.want, "\r\n") {
					o.stages[r.Stage]++
					break
				}
			}
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

func score(o *outcome, want string, got []string) {
	if want == "" {
		if len(got) > 0 {
			o.falsePos++
		}
		return
	}
	for _, g := range got {
		if g == want || strings.TrimRight(g, "\r\n") == strings.TrimRight(want, "\r\n") {
			o.read++
			return
		}
	}
}

// peer is a command-line decoder.
type peer struct {
	cmd   string
	args  func(path string) []string
	parse func(out []byte) []string
}

var zbar = peer{
	cmd:  "zbarimg",
	args: func(p string) []string { return []string{"-q", "--raw", "-Sdisable", "-Sqrcode.enable", p} },
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
	args: func(p string) []string { return []string{"-format", "QRCode", "-bytes", p} },
	parse: func(out []byte) []string {
		if len(out) == 0 {
			return nil
		}
		return []string{string(out)}
	},
}

func (p peer) run(s set) outcome {
	var o outcome
	for _, it := range s.items {
		start := time.Now()
		out, _ := exec.Command(p.cmd, p.args(it.path)...).Output()
		o.times = append(o.times, time.Since(start))
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

// endToEnd plays the video at path through the whole pipeline in real
// time, 30 frames a second, as a camera would deliver it.
func endToEnd(w io.Writer, path string) error {
	vc, err := gocv.VideoCaptureFile(path)
	if err != nil {
		return err
	}
	length := time.Duration(vc.Get(gocv.VideoCaptureFrameCount) / 30 * float64(time.Second))
	vc.Close()
	people := lane(length)
	p := scanner.NewPipeline(scanner.Config{Source: scanner.SourceConfig{Device: path}, Pace: 30}, clock.System{}, nil, nil)
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
	fmt.Fprintf(w, "## End to end: a 1280x720, 30 fps video through the pipeline\n\n")
	fmt.Fprintf(w, "| frames captured | processed | dropped | frame latency p50 | p99 | people | read | code fully in view to event p50 | p99 | peak resident memory |\n")
	fmt.Fprintf(w, "|---|---|---|---|---|---|---|---|---|---|\n")
	fmt.Fprintf(w, "| %d | %d | %d | %s ms | %s ms | %d | %d | %s ms | %s ms | %d MB |\n\n",
		st.Captured, st.Processed, st.Dropped, ms(st.LatencyP50), ms(st.LatencyP99), len(people), len(seen),
		ms(pct(fromVisible, 50)), ms(pct(fromVisible, 99)), peakRSS/1024)
	fmt.Fprintf(w, "Frame latency is from capture to the end of decoding, over every frame processed (the\n")
	fmt.Fprintf(w, "last 1,024); the second latency runs from the first frame showing the whole code to its event.\n")
	fmt.Fprintf(w, "\nFrames are never queued: the slot holds one frame, and a frame not taken before the next\n")
	fmt.Fprintf(w, "arrives is dropped (%d of %d here), so latency stays bounded.\n", st.Dropped, st.Captured)
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
