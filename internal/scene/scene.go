// Package scene renders what a checkpoint camera sees: a phone showing a QR
// code, held up in a 1280x720 frame, with the things that make real frames
// hard to read (small codes, perspective, rotation, motion and defocus blur,
// screen glare and moire, low light, sensor noise, JPEG compression, a
// finger over the code) and frames with no code at all, over busy
// backgrounds. Everything is deterministic from a seed.
//
// The scanner's tests and benchmarks and the demo's video use it; it writes
// video files through gocv's VideoWriter. It is test equipment, not part of
// the checkpoint.
package scene

import (
	"fmt"
	"image"
	"image/color"
	"math"
	"math/rand/v2"
	"sync"

	"gocv.io/x/gocv"

	"github.com/checkpointd/checkpoint/internal/qrcode"
)

// Frame size of the cameras the checkpoint is built for.
const (
	Width  = 1280
	Height = 720
)

// Params describes one frame.
type Params struct {
	Text string // the code's text; "" for a frame without a code

	ModulePx    float64 // size of a QR module in the frame, pixels
	CenterX     float64 // code centre, as a fraction of the frame width
	CenterY     float64
	Rotation    float64 // in-plane rotation, degrees
	TiltX       float64 // out-of-plane tilt about the horizontal axis, degrees
	TiltY       float64 // and about the vertical axis
	Ink         color.RGBA
	MotionBlur  float64 // length of the motion streak, pixels
	MotionAngle float64 // degrees
	Defocus     float64 // Gaussian sigma, pixels
	Glare       float64 // strength of a specular spot on the screen, 0 to 1
	GlareX      float64 // its position on the screen, fractions of the screen
	GlareY      float64
	Moire       float64 // amplitude of screen moire, 0 to 1
	Ambient     float64 // light on the scene: 1 is daylight, 0.2 a dark evening
	Screen      float64 // the phone screen's own brightness, 0.4 to 1
	Gamma       float64 // the camera's tone curve
	Noise       float64 // sensor noise sigma, grey levels
	JPEGQuality int     // 0: no compression
	Finger      float64 // how far a finger reaches over the code, fraction of its width
	Background  uint64  // seed of the background clutter
	NoiseSeed   uint64  // seed of the sensor noise; 0: the background's
	NoPhone     bool    // with Text "": no phone in the frame at all
}

// Truth is what a decoder should find in a rendered frame.
type Truth struct {
	Text    string
	Corners [4]image.Point // the code's corners in the frame: top-left, top-right, bottom-right, bottom-left
}

// Render draws the frame described by p as a BGR Mat of Width x Height,
// which the caller must Close.
func Render(p Params) (gocv.Mat, Truth, error) {
	r := rand.New(rand.NewPCG(p.Background, 0x5ce7e))
	frame := background(r)
	scale(&frame, p.Ambient)
	truth := Truth{Text: p.Text}
	if p.Text == "" && p.NoPhone {
		if err := finish(&frame, p); err != nil {
			frame.Close()
			return gocv.Mat{}, truth, err
		}
		return frame, truth, nil
	}

	// The phone, drawn upright at an integer module size at least twice
	// the target, then warped into the frame.
	src, l, err := phone(p, r)
	if err != nil {
		frame.Close()
		return gocv.Mat{}, truth, err
	}
	defer src.Close()
	scale(&src, p.Screen)
	codeRect := l.code
	h := homography(p, l.w, l.h, codeRect, float64(l.module))
	hm := matrix(h)
	defer hm.Close()
	gocv.WarpPerspectiveWithParams(src, &frame, hm, image.Pt(Width, Height), gocv.InterpolationLinear, gocv.BorderTransparent, color.RGBA{})

	corners := [4][2]float64{
		{float64(codeRect.Min.X), float64(codeRect.Min.Y)},
		{float64(codeRect.Max.X), float64(codeRect.Min.Y)},
		{float64(codeRect.Max.X), float64(codeRect.Max.Y)},
		{float64(codeRect.Min.X), float64(codeRect.Max.Y)},
	}
	for i, c := range corners {
		x, y := apply(h, c[0], c[1])
		truth.Corners[i] = image.Pt(int(math.Round(x)), int(math.Round(y)))
	}
	if p.Text == "" {
		truth.Corners = [4]image.Point{}
	}

	screen := screenMask(src, h)
	defer screen.Close()
	if p.Moire > 0 {
		moire(&frame, screen, p.Moire, r)
	}
	if p.Glare > 0 {
		glare(&frame, src, h, p)
	}
	if p.Finger > 0 && p.Text != "" {
		finger(&frame, truth.Corners, p.Finger, r)
	}
	if err := finish(&frame, p); err != nil {
		frame.Close()
		return gocv.Mat{}, truth, err
	}
	return frame, truth, nil
}

// modulesOf returns the width of text's QR code in modules, quiet zone
// included, or a plausible width for a phone without a code.
func modulesOf(text string) int {
	if text == "" {
		return 73
	}
	v, err := qrcode.Version(text)
	if err != nil {
		return 73
	}
	return 17 + 4*v + 2*qrcode.QuietZone
}

// background draws clutter: a gradient, boxes, discs, lines and writing in
// random colours, as a station wall or a gate in a village looks to a
// camera.
func background(r *rand.Rand) gocv.Mat {
	m := gocv.NewMatWithSize(Height, Width, gocv.MatTypeCV8UC3)
	base := 60 + r.IntN(140)
	m.SetTo(gocv.NewScalar(float64(base), float64(base+r.IntN(30)), float64(base+r.IntN(30)), 0))
	rc := func() color.RGBA {
		return color.RGBA{uint8(r.IntN(256)), uint8(r.IntN(256)), uint8(r.IntN(256)), 255}
	}
	for i := 0; i < 6+r.IntN(20); i++ {
		x, y := r.IntN(Width), r.IntN(Height)
		gocv.Rectangle(&m, image.Rect(x, y, x+20+r.IntN(300), y+20+r.IntN(200)), rc(), -1)
	}
	for i := 0; i < 4+r.IntN(12); i++ {
		gocv.Circle(&m, image.Pt(r.IntN(Width), r.IntN(Height)), 5+r.IntN(80), rc(), -1)
	}
	for i := 0; i < 10+r.IntN(40); i++ {
		gocv.Line(&m, image.Pt(r.IntN(Width), r.IntN(Height)), image.Pt(r.IntN(Width), r.IntN(Height)), rc(), 1+r.IntN(4))
	}
	words := []string{"EXIT", "TICKET", "GATE 3", "HEALTH CHECK", "NO SMOKING", "PLATFORM 2", "WAIT HERE", "12:45"}
	for i := 0; i < 3+r.IntN(10); i++ {
		gocv.PutText(&m, words[r.IntN(len(words))], image.Pt(r.IntN(Width), r.IntN(Height)),
			gocv.HersheyFont(r.IntN(4)), 0.5+r.Float64()*2, rc(), 1+r.IntN(3))
	}
	// A checkerboard tile pattern somewhere: regular squares are what a QR
	// finder search trips over.
	if r.IntN(2) == 0 {
		x0, y0, s := r.IntN(Width-200), r.IntN(Height-200), 6+r.IntN(20)
		for y := 0; y < 200/s; y++ {
			for x := 0; x < 200/s; x++ {
				if (x+y)%2 == 0 {
					gocv.Rectangle(&m, image.Rect(x0+x*s, y0+y*s, x0+(x+1)*s, y0+(y+1)*s), color.RGBA{20, 20, 20, 255}, -1)
				}
			}
		}
	}
	return m
}

// layout is the geometry of the upright phone image: its size, the
// screen, the code's rectangle, and the pixels per module.
type layout struct {
	w, h   int
	screen image.Rectangle
	code   image.Rectangle
	module int
}

func layoutOf(p Params) layout {
	modules := modulesOf(p.Text)
	s := max(2, int(math.Ceil(2*p.ModulePx)))
	code := modules * s
	screenW := code + code/8
	screenH := code * 2
	bezel := code / 12
	l := layout{w: screenW + 2*bezel, h: screenH + 3*bezel, module: s}
	l.screen = image.Rect(bezel, bezel+bezel/2, bezel+screenW, bezel+bezel/2+screenH)
	top := l.screen.Min.Y + (screenH-code)/2
	left := l.screen.Min.X + (screenW-code)/2
	l.code = image.Rect(left, top, left+code, top+code)
	return l
}

// CodeCorners returns where the corners of the code (its quiet zone
// included) land in the frame for p, without rendering it.
func CodeCorners(p Params) [4][2]float64 {
	l := layoutOf(p)
	h := homography(p, l.w, l.h, l.code, float64(l.module))
	var out [4][2]float64
	for i, c := range [4]image.Point{l.code.Min, {l.code.Max.X, l.code.Min.Y}, l.code.Max, {l.code.Min.X, l.code.Max.Y}} {
		out[i][0], out[i][1] = apply(h, float64(c.X), float64(c.Y))
	}
	return out
}

// phone draws the phone upright: bezel, screen, a coloured header, and the
// code. It returns the image and its layout.
func phone(p Params, r *rand.Rand) (gocv.Mat, layout, error) {
	l := layoutOf(p)
	s, code := l.module, l.code.Dx()
	screenW, screenH := l.screen.Dx(), l.screen.Dy()
	w, h := l.w, l.h
	img := gocv.NewMatWithSize(h, w, gocv.MatTypeCV8UC3)
	img.SetTo(gocv.NewScalar(25, 25, 30, 0))
	screenRect := l.screen
	white := color.RGBA{uint8(235 + r.IntN(20)), uint8(235 + r.IntN(20)), uint8(235 + r.IntN(20)), 255}
	gocv.Rectangle(&img, screenRect, white, -1)
	header := image.Rect(screenRect.Min.X, screenRect.Min.Y, screenRect.Max.X, screenRect.Min.Y+screenH/8)
	gocv.Rectangle(&img, header, color.RGBA{40, 150, 70, 255}, -1)
	gocv.PutText(&img, "Health code", image.Pt(header.Min.X+screenW/10, header.Max.Y-screenH/40),
		gocv.FontHersheySimplex, float64(screenW)/400, color.RGBA{255, 255, 255, 255}, max(1, screenW/300))
	top, left := l.code.Min.Y, l.code.Min.X
	if p.Text == "" {
		// Something else on the screen: a photo-like patch.
		for i := 0; i < 40; i++ {
			x, y := left+r.IntN(code), top+r.IntN(code)
			gocv.Circle(&img, image.Pt(x, y), 3+r.IntN(code/6), color.RGBA{uint8(r.IntN(256)), uint8(r.IntN(256)), uint8(r.IntN(256)), 255}, -1)
		}
		return img, l, nil
	}
	q, err := qrcode.Image(p.Text, s)
	if err != nil {
		img.Close()
		return gocv.Mat{}, layout{}, fmt.Errorf("scene: %w", err)
	}
	ink := p.Ink
	if ink == (color.RGBA{}) {
		ink = color.RGBA{0, 0, 0, 255}
	}
	pix, err := img.DataPtrUint8()
	if err != nil {
		img.Close()
		return gocv.Mat{}, layout{}, fmt.Errorf("scene: %w", err)
	}
	for y := 0; y < q.Bounds().Dy(); y++ {
		for x := 0; x < q.Bounds().Dx(); x++ {
			c := white
			if q.GrayAt(x, y).Y < 128 {
				c = ink
			}
			i := ((top+y)*w + left + x) * 3
			pix[i], pix[i+1], pix[i+2] = c.B, c.G, c.R
		}
	}
	return img, l, nil
}

// homography maps phone-image coordinates to frame coordinates: the code's
// centre goes to the requested place, a module to ModulePx pixels, then the
// phone plane is rotated and tilted and seen through a pinhole camera.
func homography(p Params, w, h int, codeRect image.Rectangle, srcModule float64) [9]float64 {
	cx := float64(codeRect.Min.X+codeRect.Max.X) / 2
	cy := float64(codeRect.Min.Y+codeRect.Max.Y) / 2
	scale := p.ModulePx / srcModule
	rot := p.Rotation * math.Pi / 180
	ax, ay := p.TiltX*math.Pi/180, p.TiltY*math.Pi/180
	const focal = 1100.0
	project := func(x, y float64) (float64, float64) {
		// Into the phone plane, centred on the code, in frame pixels.
		x, y = (x-cx)*scale, (y-cy)*scale
		x, y = x*math.Cos(rot)-y*math.Sin(rot), x*math.Sin(rot)+y*math.Cos(rot)
		// Tilt about the horizontal axis, then the vertical one.
		y, z := y*math.Cos(ax), y*math.Sin(ax)
		x, z = x*math.Cos(ay)+z*math.Sin(ay), -x*math.Sin(ay)+z*math.Cos(ay)
		k := focal / (focal + z)
		return p.CenterX*Width + x*k, p.CenterY*Height + y*k
	}
	src := [4][2]float64{{0, 0}, {float64(w), 0}, {float64(w), float64(h)}, {0, float64(h)}}
	var dst [4][2]float64
	for i, s := range src {
		dst[i][0], dst[i][1] = project(s[0], s[1])
	}
	return solveHomography(src, dst)
}

// solveHomography finds H with H*src[i] ~ dst[i] for four point pairs.
func solveHomography(src, dst [4][2]float64) [9]float64 {
	var a [8][9]float64
	for i := 0; i < 4; i++ {
		x, y, u, v := src[i][0], src[i][1], dst[i][0], dst[i][1]
		a[2*i] = [9]float64{x, y, 1, 0, 0, 0, -u * x, -u * y, u}
		a[2*i+1] = [9]float64{0, 0, 0, x, y, 1, -v * x, -v * y, v}
	}
	// Gaussian elimination with partial pivoting on the 8x8 system.
	for c := 0; c < 8; c++ {
		p := c
		for r := c + 1; r < 8; r++ {
			if math.Abs(a[r][c]) > math.Abs(a[p][c]) {
				p = r
			}
		}
		a[c], a[p] = a[p], a[c]
		for r := 0; r < 8; r++ {
			if r == c || a[c][c] == 0 {
				continue
			}
			f := a[r][c] / a[c][c]
			for k := c; k < 9; k++ {
				a[r][k] -= f * a[c][k]
			}
		}
	}
	var h [9]float64
	for i := 0; i < 8; i++ {
		h[i] = a[i][8] / a[i][i]
	}
	h[8] = 1
	return h
}

func apply(h [9]float64, x, y float64) (float64, float64) {
	w := h[6]*x + h[7]*y + h[8]
	return (h[0]*x + h[1]*y + h[2]) / w, (h[3]*x + h[4]*y + h[5]) / w
}

func matrix(h [9]float64) gocv.Mat {
	m := gocv.NewMatWithSize(3, 3, gocv.MatTypeCV64F)
	for i, v := range h {
		m.SetDoubleAt(i/3, i%3, v)
	}
	return m
}

// screenMask is 255 where the phone's screen lands in the frame.
func screenMask(src gocv.Mat, h [9]float64) gocv.Mat {
	white := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(255, 0, 0, 0), src.Rows(), src.Cols(), gocv.MatTypeCV8UC1)
	defer white.Close()
	hm := matrix(h)
	defer hm.Close()
	mask := gocv.NewMatWithSize(Height, Width, gocv.MatTypeCV8UC1)
	gocv.WarpPerspectiveWithParams(white, &mask, hm, image.Pt(Width, Height), gocv.InterpolationNearestNeighbor, gocv.BorderConstant, color.RGBA{})
	return mask
}

// moire lays the beat of two fine gratings over the screen: the banding a
// camera sees when its pixel grid and the screen's almost line up.
func moire(frame *gocv.Mat, screen gocv.Mat, amp float64, r *rand.Rand) {
	f1 := 0.9 + 0.2*r.Float64()
	a1 := r.Float64() * math.Pi
	a2 := a1 + 0.05 + 0.2*r.Float64()
	pix, _ := frame.DataPtrUint8()
	mask, _ := screen.DataPtrUint8()
	for y := 0; y < Height; y++ {
		for x := 0; x < Width; x++ {
			if mask[y*Width+x] == 0 {
				continue
			}
			fx, fy := float64(x), float64(y)
			g := math.Cos(f1*(fx*math.Cos(a1)+fy*math.Sin(a1))) * math.Cos(f1*(fx*math.Cos(a2)+fy*math.Sin(a2)))
			k := 1 + amp*g
			for c := 0; c < 3; c++ {
				i := (y*Width+x)*3 + c
				pix[i] = clamp(float64(pix[i]) * k)
			}
		}
	}
}

// glare adds a bright, soft, saturating spot on the screen.
func glare(frame *gocv.Mat, src gocv.Mat, h [9]float64, p Params) {
	gx, gy := apply(h, p.GlareX*float64(src.Cols()), p.GlareY*float64(src.Rows()))
	// A lamp's reflection: a spot a few modules across, brighter and
	// wider as the glare grows.
	radius := p.ModulePx * (3 + 4*p.Glare)
	pix, _ := frame.DataPtrUint8()
	x0, x1 := max(0, int(gx-3*radius)), min(Width, int(gx+3*radius))
	y0, y1 := max(0, int(gy-3*radius)), min(Height, int(gy+3*radius))
	for y := y0; y < y1; y++ {
		for x := x0; x < x1; x++ {
			d2 := (float64(x)-gx)*(float64(x)-gx) + (float64(y)-gy)*(float64(y)-gy)
			add := 255 * 1.3 * p.Glare * math.Exp(-d2/(2*radius*radius))
			for c := 0; c < 3; c++ {
				i := (y*Width+x)*3 + c
				pix[i] = clamp(float64(pix[i]) + add)
			}
		}
	}
}

// finger covers part of the code with a skin-coloured blob reaching in
// from the bottom edge near the bottom-right corner, where there is no
// finder pattern: people hold a phone by its lower edge.
func finger(frame *gocv.Mat, c [4]image.Point, reach float64, r *rand.Rand) {
	// Along the bottom edge (bottom-left to bottom-right), towards the
	// bottom-right corner, which has no finder pattern.
	bl, br, tr := c[3], c[2], c[1]
	t := 0.55 + 0.3*r.Float64()
	ex := float64(bl.X) + t*float64(br.X-bl.X)
	ey := float64(bl.Y) + t*float64(br.Y-bl.Y)
	// Direction into the code: from the bottom edge towards the top edge.
	ux, uy := float64(tr.X-br.X), float64(tr.Y-br.Y)
	width := math.Hypot(float64(br.X-bl.X), float64(br.Y-bl.Y))
	height := math.Hypot(ux, uy)
	ux, uy = ux/height, uy/height
	tip := reach * height
	center := image.Pt(int(ex+ux*(tip-width*0.25)), int(ey+uy*(tip-width*0.25)))
	axes := image.Pt(int(width*0.09), int(width*0.25))
	angle := math.Atan2(uy, ux)*180/math.Pi - 90
	skin := color.RGBA{uint8(150 + r.IntN(60)), uint8(110 + r.IntN(50)), uint8(90 + r.IntN(40)), 255}
	gocv.Ellipse(frame, center, axes, angle, 0, 360, skin, -1)
}

// finish applies the camera: optics (defocus, motion), exposure, sensor
// noise and compression.
func finish(frame *gocv.Mat, p Params) error {
	if p.Defocus > 0 {
		gocv.GaussianBlur(*frame, frame, image.Pt(0, 0), p.Defocus, p.Defocus, gocv.BorderReflect101)
	}
	if p.MotionBlur >= 1 {
		k := motionKernel(p.MotionBlur, p.MotionAngle)
		gocv.Filter2D(*frame, frame, -1, k, image.Pt(-1, -1), 0, gocv.BorderReflect101)
		k.Close()
	}
	if p.Gamma != 0 && p.Gamma != 1 {
		lut := gocv.NewMatWithSize(1, 256, gocv.MatTypeCV8UC1)
		for i := 0; i < 256; i++ {
			lut.SetUCharAt(0, i, clamp(255*math.Pow(float64(i)/255, p.Gamma)))
		}
		gocv.LUT(*frame, lut, frame)
		lut.Close()
	}
	if p.Noise > 0 {
		seed := p.NoiseSeed
		if seed == 0 {
			seed = p.Background
		}
		noise, err := gocv.NewMatFromBytes(Height, Width, gocv.MatTypeCV16SC3, noiseField(seed, p.Noise))
		if err != nil {
			return fmt.Errorf("scene: noise: %w", err)
		}
		wide := gocv.NewMat()
		frame.ConvertTo(&wide, gocv.MatTypeCV16SC3)
		gocv.Add(wide, noise, &wide)
		wide.ConvertTo(frame, gocv.MatTypeCV8UC3)
		wide.Close()
		noise.Close()
	}
	if p.JPEGQuality > 0 {
		buf, err := gocv.IMEncodeWithParams(gocv.JPEGFileExt, *frame, []int{gocv.IMWriteJpegQuality, p.JPEGQuality})
		if err != nil {
			return fmt.Errorf("scene: jpeg: %w", err)
		}
		dec, err := gocv.IMDecode(buf.GetBytes(), gocv.IMReadColor)
		buf.Close()
		if err != nil {
			return fmt.Errorf("scene: jpeg: %w", err)
		}
		frame.Close()
		*frame = dec
	}
	return nil
}

// scale multiplies every pixel by k (0: leave as is).
func scale(m *gocv.Mat, k float64) {
	if k == 0 || k == 1 {
		return
	}
	m.ConvertToWithParams(m, gocv.MatTypeCV8UC3, float32(k), 0)
}

// noiseField returns Gaussian noise of sigma for a whole frame, as int16
// bytes, drawn here rather than by OpenCV, whose generator is global.
// Fields are cached: a video reuses a few of them.
func noiseField(seed uint64, sigma float64) []byte {
	key := noiseKey{seed, sigma}
	noiseCache.Lock()
	defer noiseCache.Unlock()
	if b, ok := noiseCache.m[key]; ok {
		return b
	}
	r := rand.New(rand.NewPCG(seed, 0x4015e))
	data := make([]byte, Width*Height*3*2)
	for i := 0; i < len(data); i += 2 {
		v := int16(math.Round(r.NormFloat64() * sigma))
		data[i], data[i+1] = byte(v), byte(uint16(v)>>8)
	}
	if len(noiseCache.m) >= 16 {
		clear(noiseCache.m)
	}
	noiseCache.m[key] = data
	return data
}

type noiseKey struct {
	seed  uint64
	sigma float64
}

var noiseCache = struct {
	sync.Mutex
	m map[noiseKey][]byte
}{m: make(map[noiseKey][]byte)}

func motionKernel(length, angle float64) gocv.Mat {
	n := int(math.Ceil(length))
	if n%2 == 0 {
		n++
	}
	k := gocv.NewMatWithSize(n, n, gocv.MatTypeCV32F)
	c := float64(n / 2)
	a := angle * math.Pi / 180
	steps := 4 * n
	w := float32(1.0 / float64(steps))
	for i := 0; i < steps; i++ {
		t := (float64(i)/float64(steps-1) - 0.5) * length
		x, y := int(math.Round(c+t*math.Cos(a))), int(math.Round(c+t*math.Sin(a)))
		if x >= 0 && x < n && y >= 0 && y < n {
			k.SetFloatAt(y, x, k.GetFloatAt(y, x)+w)
		}
	}
	return k
}

func clamp(v float64) uint8 {
	switch {
	case v < 0:
		return 0
	case v > 255:
		return 255
	}
	return uint8(v + 0.5)
}
