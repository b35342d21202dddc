package scene

import (
	"fmt"
	"image/color"
	"math/rand/v2"

	"github.com/checkpointd/checkpoint/internal/credential"
)

// Level is how hard a frame is, by the size of its modules: what limits
// reading most at a fixed camera is how many pixels a module gets.
type Level int

// The levels of the corpus.
const (
	Large  Level = iota // modules of 4 to 8 pixels: a phone held close
	Medium              // 2.5 to 4 pixels
	Small               // 2 to 2.5 pixels
	Tiny                // 1.5 to 2 pixels: at the limit of what can be read
	Empty               // no code at all
)

var levelNames = [...]string{"large", "medium", "small", "tiny", "empty"}

func (l Level) String() string { return levelNames[l] }

// moduleRange is each level's module size in pixels.
var moduleRange = [...][2]float64{Large: {4, 8}, Medium: {2.5, 4}, Small: {2, 2.5}, Tiny: {1.5, 2}, Empty: {2, 7}}

// Case is one frame of the corpus.
type Case struct {
	Name   string
	Level  Level
	Params Params
}

// Draw picks the parameters of a frame of the given level. Whatever the
// level, each frame gets what a camera at a gate sees: any rotation, a
// phone tilted by up to 35 degrees, and, each with its own chance, the
// degradations of real frames at the strengths a working installation
// produces: defocus (the camera is focused for the presentation distance,
// so at most 0.8 pixel and a third of a module), motion (a 10 ms exposure
// of a hand: at most 3 pixels and three quarters of a module), a glare
// spot, screen moire, a finger over the code's edge, dusk (the screen keeps
// its own light, the camera its gain, and its noise), and JPEG compression
// as a camera streams it.
func Draw(r *rand.Rand, level Level, text string) Params {
	u := func(lo, hi float64) float64 { return lo + (hi-lo)*r.Float64() }
	chance := func(p float64) bool { return r.Float64() < p }
	mr := moduleRange[level]
	p := Params{
		Text:        text,
		ModulePx:    u(mr[0], mr[1]),
		CenterX:     u(0.3, 0.7),
		CenterY:     u(0.35, 0.65),
		Rotation:    u(-180, 180),
		TiltX:       u(-35, 35),
		TiltY:       u(-35, 35),
		Ambient:     u(0.7, 1.1),
		Screen:      u(0.7, 1),
		Gamma:       u(0.85, 1.2),
		Noise:       u(1, 3),
		JPEGQuality: 70 + r.IntN(26),
		Background:  r.Uint64(),
		GlareX:      u(0.2, 0.8),
		GlareY:      u(0.2, 0.8),
		MotionAngle: u(0, 180),
	}
	// The whole code, quiet zone and all, must be in the frame: a camera
	// cannot be blamed for what it does not see.
	for i := 0; i < 100 && !InFrame(p); i++ {
		p.CenterX, p.CenterY = u(0.25, 0.75), u(0.25, 0.75)
		p.Rotation = u(-180, 180)
		p.TiltX, p.TiltY = u(-35, 35), u(-35, 35)
	}
	p.Defocus = u(0, min(0.8, p.ModulePx/3))
	if chance(0.3) {
		p.MotionBlur = u(1, max(1, min(3, 0.75*p.ModulePx)))
	}
	if chance(0.25) {
		p.Glare = u(0.2, 0.8)
	}
	if chance(0.25) {
		p.Moire = u(0.02, 0.12)
	}
	if chance(0.15) {
		p.Finger = u(0.04, 0.12)
	}
	if chance(0.3) { // dusk or a dark corner
		p.Ambient = u(0.15, 0.5)
		p.Screen = u(0.5, 1)
		p.Noise = min(8, u(2, 4)/p.Ambient)
		p.Gamma = u(0.7, 1.1)
	}
	if level == Empty {
		p.Text = ""
		p.NoPhone = chance(0.5)
	}
	// Health-code apps draw codes in their colour; most are black.
	if chance(0.25) {
		p.Ink = color.RGBA{0, uint8(90 + r.IntN(40)), uint8(40 + r.IntN(30)), 255}
	}
	return p
}

// InFrame reports whether the whole code of p, quiet zone included, is in
// the frame.
func InFrame(p Params) bool {
	for _, c := range CodeCorners(p) {
		if c[0] < 0 || c[1] < 0 || c[0] >= Width || c[1] >= Height {
			return false
		}
	}
	return true
}

// Corpus returns n frames of each level with a code, texts chosen by text(i),
// and empty frames, all drawn from seed.
func Corpus(seed uint64, n, empty int, text func(i int) string) []Case {
	r := rand.New(rand.NewPCG(seed, 0xc0de))
	var cases []Case
	for _, level := range []Level{Large, Medium, Small, Tiny} {
		for i := 0; i < n; i++ {
			cases = append(cases, Case{
				Name:   fmt.Sprintf("%s-%03d", level, i),
				Level:  level,
				Params: Draw(r, level, text(len(cases))),
			})
		}
	}
	for i := 0; i < empty; i++ {
		cases = append(cases, Case{Name: fmt.Sprintf("empty-%03d", i), Level: Empty, Params: Draw(r, Empty, "")})
	}
	return cases
}

// CodeText returns a text shaped like a presentation (the code prefix and
// the Base45 of 275 random bytes: QR version 12, as a presentation with a
// little more than a typical one's 263 bytes), different for each i.
func CodeText(i int) string {
	r := rand.New(rand.NewPCG(uint64(i), 0x7e47))
	raw := make([]byte, 275)
	for j := range raw {
		raw[j] = byte(r.UintN(256))
	}
	return credential.EncodeText(raw)
}
