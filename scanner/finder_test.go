package scanner

import (
	"bytes"
	"image"
	"math/rand/v2"
	"testing"

	"gocv.io/x/gocv"

	"github.com/checkpointd/checkpoint/internal/scene"
)

// findFindersByRuns is the finder search as first written: each row cut
// into runs with bytes.IndexByte, then every window of five runs starting
// dark tested. findFinders must find exactly what it finds.
func findFindersByRuns(b binImage) []finder {
	var found []finder
	var starts, lens []int
	for y := 0; y < b.h; y++ {
		row := b.pix[y*b.w : (y+1)*b.w]
		starts, lens = starts[:0], lens[:0]
		for x := 0; x < len(row); {
			var next int
			if row[x] == 0 {
				next = bytes.IndexByte(row[x:], 255)
			} else {
				next = bytes.IndexByte(row[x:], 0)
			}
			if next < 0 {
				next = len(row) - x
			}
			starts, lens = append(starts, x), append(lens, next)
			x += next
		}
		i := 0
		if row[0] != 0 {
			i = 1
		}
		for ; i+4 < len(lens); i += 2 {
			s := [5]int{lens[i], lens[i+1], lens[i+2], lens[i+3], lens[i+4]}
			if !ratioOK(&s) {
				continue
			}
			if f, ok := b.confirm(&s, y, starts[i+4]+lens[i+4]); ok {
				found = merge(found, f)
				i += 2
			}
		}
	}
	return found
}

func TestFindFinders(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	noise := func(w, h, run int) binImage {
		pix := make([]byte, w*h)
		v := byte(0)
		for i := range pix {
			if r.IntN(run) == 0 {
				v = 255 - v
			}
			pix[i] = v
		}
		return binImage{pix, w, h}
	}
	frame := func(seed uint64) binImage {
		c := scene.Corpus(seed, 1, 0, scene.CodeText)[0]
		m, _, err := scene.Render(c.Params)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		g, bin := gocv.NewMat(), gocv.NewMat()
		defer g.Close()
		defer bin.Close()
		gocv.CvtColor(m, &g, gocv.ColorBGRToGray)
		gocv.AdaptiveThreshold(g, &bin, 255, gocv.AdaptiveThresholdMean, gocv.ThresholdBinary, 11, thresholdC)
		return binImage{append([]byte(nil), pixels(bin)...), bin.Cols(), bin.Rows()}
	}
	for _, tc := range []struct {
		name string
		img  binImage
	}{
		{"rendered frame", frame(5)},
		{"another frame", frame(6)},
		{"short runs", noise(203, 57, 2)},
		{"long runs", noise(640, 120, 6)},
		{"narrow", noise(9, 200, 3)},
		{"all dark", binImage{make([]byte, 64*64), 64, 64}},
		{"all light", binImage{bytes.Repeat([]byte{255}, 64*64), 64, 64}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := findFindersByRuns(tc.img)
			got := findFinders(tc.img, nil, image.Point{})
			if len(got) != len(want) {
				t.Fatalf("%d candidates, want %d", len(got), len(want))
			}
			for i := range want {
				if got[i] != want[i] {
					t.Errorf("candidate %d: %+v, want %+v", i, got[i], want[i])
				}
			}
			// A gate marking everything is no gate.
			w, h := (tc.img.w+3)/4, (tc.img.h+3)/4
			all := &gate{pix: bytes.Repeat([]byte{255}, w*h), w: w, h: h, shift: 2}
			if gated := findFinders(tc.img, all, image.Point{}); len(gated) != len(want) {
				t.Errorf("through an open gate: %d candidates, want %d", len(gated), len(want))
			}
		})
	}
}

func TestGateBoundsAndClear(t *testing.T) {
	g := &gate{pix: make([]byte, 10*8), w: 10, h: 8, shift: 2}
	if b := g.bounds(40, 32); !b.Empty() {
		t.Fatalf("bounds of a flat gate: %v, want empty", b)
	}
	for _, c := range [][2]int{{2, 1}, {6, 5}, {9, 7}} {
		g.pix[c[1]*g.w+c[0]] = 255
	}
	for _, tc := range []struct {
		name string
		w, h int
		want image.Rectangle
	}{
		{"exact size", 40, 32, image.Rect(8, 4, 40, 32)},
		{"last cells cover the rest", 43, 34, image.Rect(8, 4, 43, 34)},
	} {
		if got := g.bounds(tc.w, tc.h); got != tc.want {
			t.Errorf("%s: bounds %v, want %v", tc.name, got, tc.want)
		}
	}
	// Clearing a code's quadrilateral (pixels 20 to 32 square) flattens
	// the cells whose centres it holds, and no others.
	g.clear([4]image.Point{{20, 16}, {32, 16}, {32, 28}, {20, 28}}, 0)
	if g.pix[5*g.w+6] != 0 {
		t.Error("the cell inside the code is still marked")
	}
	if g.pix[1*g.w+2] != 255 || g.pix[7*g.w+9] != 255 {
		t.Error("a cell outside the code was cleared")
	}
	var nilGate *gate
	nilGate.clear([4]image.Point{}, 1) // no gate: nothing to do
	if b := nilGate.bounds(7, 5); b != image.Rect(0, 0, 7, 5) {
		t.Errorf("bounds without a gate: %v, want the whole image", b)
	}
}

// FuzzFindFinders: any binary image, searched with or without a gate,
// yields candidates inside it, and never a panic.
func FuzzFindFinders(f *testing.F) {
	f.Add([]byte{0, 255, 0, 0, 0, 255, 0}, uint8(7), uint8(0))
	f.Add(bytes.Repeat([]byte{0, 0, 255, 0, 0, 0, 0, 0, 0, 255, 0, 0}, 40), uint8(12), uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, width, gated uint8) {
		w := int(width)%64 + 1
		h := len(data) / w
		if h == 0 {
			return
		}
		pix := make([]byte, w*h)
		for i := range pix {
			pix[i] = 255 * (data[i] & 1)
		}
		var g *gate
		if gated&1 == 1 {
			gw, gh := (w+3)/4, (h+3)/4
			g = &gate{pix: make([]byte, gw*gh), w: gw, h: gh, shift: 2}
			for i := range g.pix {
				g.pix[i] = 255 * (data[i%len(data)] >> 1 & 1)
			}
		}
		for _, c := range findFinders(binImage{pix, w, h}, g, image.Point{}) {
			if c.x < 0 || c.y < 0 || c.x > float64(w) || c.y > float64(h) || c.module <= 0 {
				t.Fatalf("candidate %+v outside a %dx%d image", c, w, h)
			}
		}
	})
}
