package scanner

import (
	"fmt"
	"image"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/checkpointd/checkpoint/internal/clock/clocktest"
	"github.com/checkpointd/checkpoint/internal/scene"
)

// untimed returns o with a clock that stands still, so that the budget is
// never spent: what a test reads must not depend on how busy the machine
// is (the race detector alone makes decoding several times slower).
// TestBudget checks the budget itself.
func untimed(o DecoderOptions) DecoderOptions {
	o.Clock = clocktest.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	return o
}

// TestDecodeConditions reads one frame of each hard condition the corpus
// has, each chosen at its strongest, and checks the corners it reports.
func TestDecodeConditions(t *testing.T) {
	base := scene.Params{
		Text: scene.CodeText(1), ModulePx: 3, CenterX: 0.5, CenterY: 0.5, Rotation: 20,
		Ambient: 1, Screen: 1, Gamma: 1, Noise: 2, JPEGQuality: 85, Background: 7,
	}
	cases := map[string]func(*scene.Params){
		"plain":           func(p *scene.Params) {},
		"upside down":     func(p *scene.Params) { p.Rotation = 180 },
		"tilted":          func(p *scene.Params) { p.TiltX, p.TiltY = 30, -30 },
		"small modules":   func(p *scene.Params) { p.ModulePx = 2 },
		"large modules":   func(p *scene.Params) { p.ModulePx = 8; p.Rotation = 5 },
		"defocus":         func(p *scene.Params) { p.Defocus = 0.8 },
		"motion":          func(p *scene.Params) { p.MotionBlur, p.MotionAngle = 2.2, 30 },
		"glare":           func(p *scene.Params) { p.Glare, p.GlareX, p.GlareY = 0.8, 0.5, 0.5 },
		"moire":           func(p *scene.Params) { p.Moire = 0.12 },
		"finger":          func(p *scene.Params) { p.Finger = 0.12 },
		"dusk":            func(p *scene.Params) { p.Ambient, p.Screen, p.Noise, p.Gamma = 0.15, 0.5, 8, 0.8 },
		"green ink":       func(p *scene.Params) { p.Ink.G, p.Ink.B, p.Ink.A = 110, 50, 255 },
		"heavy jpeg":      func(p *scene.Params) { p.JPEGQuality = 60 },
		"no phone border": func(p *scene.Params) { p.CenterX = 0.3 },
	}
	d := NewDecoder(untimed(DecoderOptions{}))
	defer d.Close()
	for name, edit := range cases {
		t.Run(name, func(t *testing.T) {
			p := base
			edit(&p)
			frame, truth, err := scene.Render(p)
			if err != nil {
				t.Fatal(err)
			}
			defer frame.Close()
			rs := d.Decode(frame)
			if len(rs) != 1 || rs[0].Text != truth.Text {
				t.Fatalf("decoded %d codes, want the frame's one", len(rs))
			}
			// The reported corners are the code's: four modules inside the
			// quiet zone's corners that the renderer reports, give or take
			// two modules (perspective bends the straight-line estimate).
			q := truth.Corners
			k := 4.0 / 73 // quiet zone over the width of a version-12 code with it
			for i, c := range rs[0].Corners {
				a, b := q[(i+1)%4], q[(i+3)%4] // the two neighbours of corner i
				wx := float64(q[i].X) + k*float64(a.X-q[i].X) + k*float64(b.X-q[i].X)
				wy := float64(q[i].Y) + k*float64(a.Y-q[i].Y) + k*float64(b.Y-q[i].Y)
				if d := math.Hypot(float64(c.X)-wx, float64(c.Y)-wy); d > 2*p.ModulePx+2 {
					t.Errorf("corner %d at %v, %.1f pixels from where it is (%.0f, %.0f)", i, c, d, wx, wy)
				}
			}
			if m := rs[0].Module; m < 0.5*p.ModulePx || m > 2*p.ModulePx {
				t.Errorf("module estimate %.1f for a module of %.1f pixels", m, p.ModulePx)
			}
		})
	}
}

// TestNoFalsePositives: frames without a code yield nothing, busy or not.
func TestNoFalsePositives(t *testing.T) {
	d := NewDecoder(untimed(DecoderOptions{}))
	defer d.Close()
	for _, c := range scene.Corpus(3, 0, 20, scene.CodeText) {
		frame, _, err := scene.Render(c.Params)
		if err != nil {
			t.Fatal(err)
		}
		if rs := d.Decode(frame); len(rs) != 0 {
			t.Errorf("%s: read %q from a frame with no code", c.Name, rs[0].Text)
		}
		frame.Close()
	}
}

// TestTwoCodes: two phones in one frame are both read. What a lane needs
// is an event for each within a few frames, not both from one frame: a
// camera decoder stops at the first code read on most frames, and searches
// a whole frame every fullEvery frames in a row, so fullEvery consecutive
// frames read both. A still image, read once, yields both at once.
func TestTwoCodes(t *testing.T) {
	a, _, err := scene.Render(scene.Params{Text: scene.CodeText(1), ModulePx: 3, CenterX: 0.3, CenterY: 0.5,
		Ambient: 1, Screen: 1, Background: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, _, err := scene.Render(scene.Params{Text: scene.CodeText(2), ModulePx: 3, CenterX: 0.3, CenterY: 0.5,
		Ambient: 1, Screen: 1, Background: 1, Rotation: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	both := gocv.NewMat()
	defer both.Close()
	left, right := a.Region(image.Rect(0, 0, 640, 720)), b.Region(image.Rect(0, 0, 640, 720))
	defer left.Close()
	defer right.Close()
	gocv.Hconcat(left, right, &both)
	want := []string{scene.CodeText(1), scene.CodeText(2)}
	t.Run("camera", func(t *testing.T) {
		d := NewDecoder(untimed(DecoderOptions{}))
		defer d.Close()
		// The phones stay in view over 2*fullEvery frames; whichever
		// frame they come into view on, the fullEvery frames from there
		// read both, and no frame reads neither.
		frames := make([]map[string]bool, 2*fullEvery)
		for i := range frames {
			frames[i] = map[string]bool{}
			for _, r := range d.Decode(both) {
				frames[i][r.Text] = true
			}
			if len(frames[i]) == 0 {
				t.Errorf("frame %d: no code read", i)
			}
		}
		for first := 0; first <= fullEvery; first++ {
			for k, w := range want {
				read := false
				for _, f := range frames[first : first+fullEvery] {
					read = read || f[w]
				}
				if !read {
					t.Errorf("frames %d to %d: code %d not read", first, first+fullEvery-1, k+1)
				}
			}
		}
	})
	t.Run("still image", func(t *testing.T) {
		d := NewDecoder(untimed(DecoderOptions{Still: true}))
		defer d.Close()
		got := map[string]bool{}
		for _, r := range d.Decode(both) {
			got[r.Text] = true
		}
		if len(got) != 2 || !got[want[0]] || !got[want[1]] {
			t.Fatalf("read %d different codes, want both", len(got))
		}
	})
}

// TestBudget: once the budget is spent the cascade stops, the still-image
// passes included. A clock that jumps an hour at each reading spends the
// budget before the first triple is tried, and a frame the decoder reads
// otherwise yields nothing.
func TestBudget(t *testing.T) {
	frame, truth, err := scene.Render(scene.Params{Text: scene.CodeText(4), ModulePx: 3, CenterX: 0.5, CenterY: 0.5,
		Ambient: 1, Screen: 1, Gamma: 1, Background: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer frame.Close()
	for _, still := range []bool{false, true} {
		for _, tc := range []struct {
			name string
			step time.Duration
			read bool
		}{
			{"clock standing still", 0, true},
			{"budget spent at once", time.Hour, false},
		} {
			t.Run(fmt.Sprintf("still %v, %s", still, tc.name), func(t *testing.T) {
				clk := jumping{clocktest.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)), tc.step}
				d := NewDecoder(DecoderOptions{Still: still, Clock: clk})
				defer d.Close()
				if got := seen(d.Decode(frame), truth.Text); got != tc.read {
					t.Errorf("read %v, want %v", got, tc.read)
				}
			})
		}
	}
}

// jumping is a fake clock that moves by step at each reading.
type jumping struct {
	*clocktest.Fake
	step time.Duration
}

func (j jumping) Now() time.Time {
	j.Advance(j.step)
	return j.Fake.Now()
}

// TestRealPhotos reads the real photographs of the shared test set, when
// the machine has it: every one of them.
func TestRealPhotos(t *testing.T) {
	files, _ := filepath.Glob("../../shared/testdata/qr-photos/*/*.png")
	if len(files) == 0 {
		t.Skip("no ../shared/testdata/qr-photos on this machine")
	}
	d := NewDecoder(untimed(DecoderOptions{Still: true}))
	defer d.Close()
	var missed []string
	for _, f := range files {
		want, err := os.ReadFile(strings.TrimSuffix(f, ".png") + ".txt")
		if err != nil {
			t.Fatal(err)
		}
		img := gocv.IMRead(f, gocv.IMReadGrayScale)
		hit := false
		for _, r := range d.Decode(img) {
			hit = hit || r.Text == string(want)
		}
		img.Close()
		if !hit {
			missed = append(missed, filepath.Base(filepath.Dir(f))+"/"+filepath.Base(f))
		}
	}
	if len(missed) > 0 {
		t.Errorf("missed %d of %d photos: %v", len(missed), len(files), missed)
	}
}

// TestHardCases reads frames of make bench-decode's corpus that the
// cascade used to miss: small modules at an angle and blurred, a third
// finder pattern lost to perspective, a strongly tilted code.
func TestHardCases(t *testing.T) {
	want := map[string]string{
		"tiny-021":  "two finder patterns found; the third searched for in the region, enlarged",
		"tiny-088":  "the same, 1.5 pixels a module",
		"tiny-084":  "found at full resolution with the half-resolution mean",
		"large-007": "modules from 4.7 to 8.9 pixels across the code: the first alignment patterns further than the finder patterns put them",
		"large-065": "the same",
	}
	d := NewDecoder(untimed(DecoderOptions{}))
	defer d.Close()
	for _, c := range scene.Corpus(2026, 100, 0, scene.CodeText) {
		why, ok := want[c.Name]
		if !ok {
			continue
		}
		t.Run(c.Name, func(t *testing.T) {
			frame, truth, err := scene.Render(c.Params)
			if err != nil {
				t.Fatal(err)
			}
			defer frame.Close()
			for i := 0; i < fullEvery; i++ { // a frame searched whole
				d.Decode(frame)
			}
			if !seen(d.Decode(frame), truth.Text) {
				t.Errorf("not read (%s)", why)
			}
		})
	}
}

// FuzzDecode: any small grey image, camera or still, decodes without a
// panic, and every Mat the decoder makes is its own to close.
func FuzzDecode(f *testing.F) {
	f.Add([]byte{0, 255, 0, 255, 0, 0, 0, 255}, uint8(40))
	f.Add(make([]byte, 64*64), uint8(64))
	f.Fuzz(func(t *testing.T, data []byte, width uint8) {
		w := int(width)%120 + 1
		h := len(data) / w
		if h == 0 || h > 200 {
			return
		}
		m, err := gocv.NewMatFromBytes(h, w, gocv.MatTypeCV8U, data[:w*h])
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		for _, still := range []bool{false, true} {
			d := NewDecoder(untimed(DecoderOptions{Still: still}))
			d.Decode(m)
			d.Close()
		}
	})
}

// TestImagesOfAnySize: one still decoder reads images of different sizes
// in turn, tiny ones included, each on its own (nothing of the previous
// image's pyramid is searched again).
func TestImagesOfAnySize(t *testing.T) {
	frame, truth, err := scene.Render(scene.Params{Text: scene.CodeText(3), ModulePx: 4, CenterX: 0.5, CenterY: 0.5,
		Ambient: 1, Screen: 1, Gamma: 1, Background: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer frame.Close()
	d := NewDecoder(untimed(DecoderOptions{Still: true}))
	defer d.Close()
	for _, tc := range []struct {
		name string
		w, h int
		want bool
	}{
		{"the frame", 1280, 720, true},
		{"a corner without the code", 30, 20, false},
		{"a sliver", 1280, 3, false},
		{"one pixel", 1, 1, false},
		{"the frame again", 1280, 720, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			part := frame.Region(image.Rect(0, 0, tc.w, tc.h))
			defer part.Close()
			if got := seen(d.Decode(part), truth.Text); got != tc.want {
				t.Errorf("read %v, want %v", got, tc.want)
			}
		})
	}
}
