package scanner

import (
	"image"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gocv.io/x/gocv"

	"github.com/checkpointd/checkpoint/internal/scene"
)

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
	d := NewDecoder(DecoderOptions{})
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
	d := NewDecoder(DecoderOptions{})
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

// TestTwoCodes: two phones in one frame are two results.
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
	gocv.Hconcat(a.Region(image.Rect(0, 0, 640, 720)), b.Region(image.Rect(0, 0, 640, 720)), &both)
	d := NewDecoder(DecoderOptions{})
	defer d.Close()
	rs := d.Decode(both)
	got := map[string]bool{}
	for _, r := range rs {
		got[r.Text] = true
	}
	if len(rs) != 2 || !got[scene.CodeText(1)] || !got[scene.CodeText(2)] {
		t.Fatalf("read %d codes, want both", len(rs))
	}
}

// TestRealPhotos reads the real photographs of the shared test set, when
// the machine has it: every one of them.
func TestRealPhotos(t *testing.T) {
	files, _ := filepath.Glob("../../shared/testdata/qr-photos/*/*.png")
	if len(files) == 0 {
		t.Skip("no ../shared/testdata/qr-photos on this machine")
	}
	d := NewDecoder(DecoderOptions{Still: true})
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
