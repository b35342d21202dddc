package scanner

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"gocv.io/x/gocv"

	"github.com/checkpointd/checkpoint/internal/scene"
)

// benchFrames renders the benchmarks' frames once: per module-size level
// and without a code, from a seed of their own (not the seed of make
// bench-decode's corpus).
var benchFrames = sync.OnceValue(func() map[scene.Level][]gocv.Mat {
	out := map[scene.Level][]gocv.Mat{}
	for _, c := range scene.Corpus(99, 12, 12, scene.CodeText) {
		m, _, err := scene.Render(c.Params)
		if err != nil {
			panic(err)
		}
		out[c.Level] = append(out[c.Level], m)
	}
	return out
})

// benchDecode decodes frames in turn with d, one frame an iteration, and
// reports the frames read.
func benchDecode(b *testing.B, d *Decoder, frames []gocv.Mat) {
	b.ReportAllocs()
	read := 0
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if len(d.Decode(frames[i%len(frames)])) > 0 {
			read++
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/frame")
	b.ReportMetric(float64(read)/float64(b.N), "read/frame")
}

// BenchmarkDecodeCamera decodes 1280x720 camera frames as a lane's worker
// does: a quick look at the time and the allocation per frame between runs
// of make bench-decode, whose side-by-side medians are the targets (at or
// under zxing-cpp's, docs/scanner.md). Run it with -cpu 1.
func BenchmarkDecodeCamera(b *testing.B) {
	frames := benchFrames()
	for _, l := range []scene.Level{scene.Large, scene.Medium, scene.Small, scene.Tiny, scene.Empty} {
		b.Run(l.String(), func(b *testing.B) {
			d := NewDecoder(DecoderOptions{})
			defer d.Close()
			benchDecode(b, d, frames[l])
		})
	}
}

// BenchmarkDecodeStill decodes the real photographs of the shared test
// set, grey, as checkpointctl decode does (make bench-decode's target:
// within twice zxing-cpp's median on the same photos).
func BenchmarkDecodeStill(b *testing.B) {
	files, _ := filepath.Glob("../../shared/testdata/qr-photos/*/*.png")
	if len(files) == 0 {
		b.Skip("no ../shared/testdata/qr-photos on this machine")
	}
	var photos []gocv.Mat
	for _, f := range files {
		if _, err := os.Stat(strings.TrimSuffix(f, ".png") + ".txt"); err != nil {
			continue
		}
		photos = append(photos, gocv.IMRead(f, gocv.IMReadGrayScale))
	}
	defer func() {
		for _, p := range photos {
			p.Close()
		}
	}()
	d := NewDecoder(DecoderOptions{Still: true})
	defer d.Close()
	benchDecode(b, d, photos)
}
