package scanner

import (
	"image"
	"math"
	"sort"
	"time"

	"github.com/makiuchi-d/gozxing"
	"github.com/makiuchi-d/gozxing/qrcode"
	"github.com/makiuchi-d/gozxing/qrcode/detector"
	"gocv.io/x/gocv"

	"github.com/checkpointd/checkpoint/internal/clock"
)

// Result is one code read from an image.
type Result struct {
	Text string
	// Corners of the code in the image: top-left, top-right,
	// bottom-right, bottom-left, as the code is oriented.
	Corners [4]image.Point
	// Module is the size of a module in image pixels: a hint of how well
	// the code is seen (below 2 pixels reading gets unreliable).
	Module float64
	// Errors is how many codewords Reed-Solomon had to correct: 0 is a
	// clean read.
	Errors int
	// Stage names the cascade stage that read the code.
	Stage string
}

// DecoderOptions tune a Decoder.
type DecoderOptions struct {
	// Budget bounds the time spent on one image; once it is spent the
	// cascade stops at the next stage boundary. Zero means 60ms for a
	// camera's frames, of which 30 come each second, and 2s for Still
	// images, each of which is read once.
	Budget time.Duration
	// Still enables the stages meant for single photos (whole-image
	// passes, inverted codes), which a live camera can do without.
	Still bool
	// Clock measures the budget; nil means the system clock.
	Clock clock.Clock
}

// Decoder reads QR codes from images with a cascade of stages, cheap ones
// first; docs/scanner.md describes it. A Decoder is not safe for
// concurrent use: give each worker its own. Close releases it.
type Decoder struct {
	opts  DecoderOptions
	clahe gocv.CLAHE
	hints map[gozxing.DecodeHintType]any
}

// NewDecoder returns a decoder.
func NewDecoder(opts DecoderOptions) *Decoder {
	switch {
	case opts.Budget > 0:
	case opts.Still:
		opts.Budget = 2 * time.Second
	default:
		opts.Budget = 60 * time.Millisecond
	}
	if opts.Clock == nil {
		opts.Clock = clock.System{}
	}
	return &Decoder{
		opts:  opts,
		clahe: gocv.NewCLAHEWithParams(2.5, image.Pt(4, 4)),
		hints: map[gozxing.DecodeHintType]any{gozxing.DecodeHintType_TRY_HARDER: true},
	}
}

// Close releases the decoder's OpenCV objects.
func (d *Decoder) Close() error {
	return d.clahe.Close()
}

// Decode reads the QR codes in img, a BGR or grey image. It returns none
// when there is no readable code: that is an outcome, not an error.
func (d *Decoder) Decode(img gocv.Mat) []Result {
	start := d.opts.Clock.Now()
	over := func() bool { return d.opts.Clock.Now().Sub(start) > d.opts.Budget }
	g := img
	if img.Channels() != 1 {
		g = gocv.NewMat()
		defer g.Close()
		gocv.CvtColor(img, &g, gocv.ColorBGRToGray)
	} else if !img.IsContinuous() {
		g = img.Clone()
		defer g.Close()
	}
	var results []Result
	var used [][3]finder
	frame := grey{pixels(g), g.Cols(), g.Rows()}
	cands := d.finders(g)
	try := func(ts [][3]finder, stage string) {
		for _, t := range ts {
			if over() {
				break
			}
			if sharesFinder(t, used) {
				continue
			}
			if r, ok := d.decodeRegion(g, t, over); ok && !seen(results, r.Text) {
				r.Stage = stage + "/" + r.Stage
				results = append(results, r)
				used = append(used, t)
			}
		}
	}
	try(triples(frame, cands, 6), "triple")
	if len(results) == 0 {
		try(completions(frame, cands, 4), "pair")
	}
	if len(results) == 0 && d.opts.Still {
		results = d.decodeWhole(g)
	}
	return results
}

func seen(rs []Result, text string) bool {
	for _, r := range rs {
		if r.Text == text {
			return true
		}
	}
	return false
}

func sharesFinder(t [3]finder, used [][3]finder) bool {
	for _, u := range used {
		for _, a := range t {
			for _, b := range u {
				if math.Abs(a.x-b.x) < a.module && math.Abs(a.y-b.y) < a.module {
					return true
				}
			}
		}
	}
	return false
}

// The finder search runs on a pyramid: full resolution for small codes,
// then halves for codes whose modules are too big for the threshold's
// window. The adaptive threshold of each pyramid level: its window in pixels, and
// how much darker than the window's mean a pixel must be to count as dark.
// A window must be wider than a finder pattern's 3-module centre, or the
// centre turns light: 11 pixels serve modules up to 3.5 pixels at full
// resolution, 17 up to 5.5 at each halving, which overlaps the next level.
var thresholdBlocks = map[int]int{1: 11, 2: 17, 4: 17, 8: 17}

const thresholdC = 4

// finders finds finder pattern candidates at full, half and quarter
// resolution, in full-resolution coordinates.
func (d *Decoder) finders(g gocv.Mat) []finder {
	var all []finder
	level := g
	for scale := 1; scale <= 8; scale *= 2 {
		if scale > 1 {
			half := gocv.NewMat()
			gocv.Resize(level, &half, image.Pt(level.Cols()/2, level.Rows()/2), 0, 0, gocv.InterpolationArea)
			if level.Ptr() != g.Ptr() {
				level.Close()
			}
			level = half
		}
		if level.Cols() < 40 || level.Rows() < 40 {
			break
		}
		bin := gocv.NewMat()
		gocv.AdaptiveThreshold(level, &bin, 255, gocv.AdaptiveThresholdMean, gocv.ThresholdBinary, thresholdBlocks[scale], thresholdC)
		fs := findFinders(binImage{pixels(bin), bin.Cols(), bin.Rows()})
		bin.Close()
		for _, f := range fs {
			k := float64(scale)
			all = merge(all, finder{x: f.x * k, y: f.y * k, module: f.module * k, count: f.count})
		}
	}
	if level.Ptr() != g.Ptr() {
		level.Close()
	}
	return all
}

// triples groups candidates into likely sets of three finder patterns of
// one code, best first, each ordered top-left, top-right, bottom-left.
// Geometry alone admits many wrong triples on a busy frame, and trying one
// costs milliseconds, so each triple is also checked against the image: in
// the frame the triple implies, each of its patterns must look like a
// finder pattern with the light separator around it.
func triples(img grey, cands []finder, limit int) [][3]finder {
	sort.SliceStable(cands, func(i, j int) bool { return cands[i].count > cands[j].count })
	if len(cands) > 16 {
		cands = cands[:16]
	}
	r := ranking{img: img}
	for i := 0; i < len(cands); i++ {
		for j := i + 1; j < len(cands); j++ {
			for k := j + 1; k < len(cands); k++ {
				r.add(cands[i], cands[j], cands[k])
			}
		}
	}
	return r.best(limit)
}

// ranking collects triples that pass shape and looksLikeFinders, scored.
type ranking struct {
	img grey
	all []scoredTriple
}

type scoredTriple struct {
	t     [3]finder
	score float64
}

func (r *ranking) add(a, b, c finder) {
	t, score, ok := shape(a, b, c)
	if !ok {
		return
	}
	look, ok := looksLikeFinders(r.img, t)
	if !ok {
		return
	}
	r.all = append(r.all, scoredTriple{t, score + 3*look})
}

// best returns the limit best triples, best first.
func (r *ranking) best(limit int) [][3]finder {
	sort.SliceStable(r.all, func(i, j int) bool { return r.all[i].score > r.all[j].score })
	var out [][3]finder
	for _, s := range r.all[:min(limit, len(r.all))] {
		out = append(out, s.t)
	}
	return out
}

// completions proposes triples for pairs of candidates whose third finder
// pattern was not found (washed out by glare, under a finger, lost in
// blur): the third goes where a square code would put it, on either side
// of the pair, the pair being a side of the code or its diagonal. Only the
// two real patterns are checked against the image.
func completions(img grey, cands []finder, limit int) [][3]finder {
	if len(cands) > 12 {
		cands = cands[:12] // sorted by count in triples
	}
	r := ranking{img: img}
	for i := 0; i < len(cands); i++ {
		for j := i + 1; j < len(cands); j++ {
			a, b := cands[i], cands[j]
			m := (a.module + b.module) / 2
			dx, dy := b.x-a.x, b.y-a.y
			if l := math.Hypot(dx, dy); l < 12*m || l > 180*m || max(a.module, b.module) > 2.2*min(a.module, b.module) {
				continue
			}
			mx, my := (a.x+b.x)/2, (a.y+b.y)/2
			for _, p := range [6][2]float64{
				{a.x - dy, a.y + dx}, {a.x + dy, a.y - dx}, // a at the corner
				{b.x + dy, b.y - dx}, {b.x - dy, b.y + dx}, // b at the corner
				{mx - dy/2, my + dx/2}, {mx + dy/2, my - dx/2}, // a and b on the diagonal
			} {
				if p[0] < 3.5*m || p[1] < 3.5*m || p[0] > float64(img.width)-3.5*m || p[1] > float64(img.height)-3.5*m {
					continue
				}
				r.add(a, b, finder{x: p[0], y: p[1], module: m})
			}
		}
	}
	return r.best(limit)
}

// finderDark and finderLight are the finder pattern with its separator,
// in modules from its centre: the points that are dark and those that are
// light.
var finderDark, finderLight = func() (dark, light [][2]float64) {
	for y := -4; y <= 4; y++ {
		for x := -4; x <= 4; x++ {
			r := max(abs(x), abs(y))
			p := [2]float64{float64(x), float64(y)}
			switch r {
			case 0, 1, 3:
				dark = append(dark, p)
			case 2, 4:
				light = append(light, p)
			}
		}
	}
	return
}()

// looksLikeFinders scores a triple by how well each of its patterns
// matches the template in the frame of the code the triple implies
// (rows along top-left to top-right, columns along top-left to
// bottom-left). It returns the mean normalised contrast, and false when any
// pattern fails to match.
func looksLikeFinders(img grey, t [3]finder) (float64, bool) {
	dark, light := finderDark, finderLight
	ux, uy := t[1].x-t[0].x, t[1].y-t[0].y
	vx, vy := t[2].x-t[0].x, t[2].y-t[0].y
	nu, nv := math.Hypot(ux, uy), math.Hypot(vx, vy)
	ux, uy, vx, vy = ux/nu, uy/nu, vx/nv, vy/nv
	total, n := 0.0, 0
	for _, f := range t {
		if f.count == 0 { // a proposed pattern nobody saw
			continue
		}
		n++
		// Blur makes patterns look bigger than their modules: try a few
		// sizes and keep the best match.
		best := math.Inf(-1)
		for _, k := range []float64{0.7, 0.8, 0.9, 1, 1.1} {
			m := f.module * k
			var dsum, lsum float64
			lo, hi := 255.0, 0.0
			for _, p := range dark {
				v := img.at(f.x+m*(p[0]*ux+p[1]*vx), f.y+m*(p[0]*uy+p[1]*vy))
				dsum += v
				lo, hi = min(lo, v), max(hi, v)
			}
			for _, p := range light {
				v := img.at(f.x+m*(p[0]*ux+p[1]*vx), f.y+m*(p[0]*uy+p[1]*vy))
				lsum += v
				lo, hi = min(lo, v), max(hi, v)
			}
			if hi-lo < 10 {
				continue
			}
			best = max(best, (lsum/float64(len(light))-dsum/float64(len(dark)))/(hi-lo))
		}
		if best < 0.15 {
			return 0, false
		}
		total += best
	}
	return total / float64(n), true
}

// shape orders three candidates as a code's top-left, top-right and
// bottom-left finder patterns and scores how much they look like one: a
// right angle at the top-left, legs of similar length at least ten
// modules long, patterns of similar size.
func shape(a, b, c finder) ([3]finder, float64, bool) {
	// Perspective makes the nearer patterns bigger: allow a factor of two
	// and more between them.
	lo, hi := min(a.module, b.module, c.module), max(a.module, b.module, c.module)
	if hi > 2.2*lo {
		return [3]finder{}, 0, false
	}
	d := func(p, q finder) float64 { return math.Hypot(p.x-q.x, p.y-q.y) }
	// The corner opposite the longest side is the top-left.
	tl, p, q := a, b, c
	if ab, ac, bc := d(a, b), d(a, c), d(b, c); ab >= ac && ab >= bc {
		tl, p, q = c, a, b
	} else if ac >= ab && ac >= bc {
		tl, p, q = b, a, c
	}
	// Top-right is clockwise from bottom-left around the top-left (image
	// y grows downwards).
	if (p.x-tl.x)*(q.y-tl.y)-(p.y-tl.y)*(q.x-tl.x) < 0 {
		p, q = q, p
	}
	tr, bl := p, q
	ux, uy := tr.x-tl.x, tr.y-tl.y
	vx, vy := bl.x-tl.x, bl.y-tl.y
	l1, l2 := math.Hypot(ux, uy), math.Hypot(vx, vy)
	m := (lo + hi) / 2
	if l1 < 10*m || l2 < 10*m || l1 > 2*l2 || l2 > 2*l1 || l1 > 180*m {
		return [3]finder{}, 0, false
	}
	cos := (ux*vx + uy*vy) / (l1 * l2)
	if math.Abs(cos) > 0.5 {
		return [3]finder{}, 0, false
	}
	score := -2*math.Abs(cos) - math.Abs(math.Log(l1/l2)) - math.Log(hi/lo) +
		0.05*float64(min(a.count, 5)+min(b.count, 5)+min(c.count, 5))
	return [3]finder{tl, tr, bl}, score, true
}

// decodeRegion reads the code whose finder patterns are t from a crop of
// the grey image around them, resampled to about four pixels a module.
func (d *Decoder) decodeRegion(g gocv.Mat, t [3]finder, over func() bool) (Result, bool) {
	tl, tr, bl := t[0], t[1], t[2]
	m := (tl.module + tr.module + bl.module) / 3
	br := finder{x: tr.x + bl.x - tl.x, y: tr.y + bl.y - tl.y}
	box := image.Rect(int(tl.x), int(tl.y), int(tl.x)+1, int(tl.y)+1)
	for _, f := range []finder{tr, bl, br} {
		box = box.Union(image.Rect(int(f.x), int(f.y), int(f.x)+1, int(f.y)+1))
	}
	box = box.Inset(-int(9 * m)).Intersect(image.Rect(0, 0, g.Cols(), g.Rows()))
	if box.Dx() < 21 || box.Dy() < 21 {
		return Result{}, false
	}
	scale := math.Max(0.25, math.Min(3, 4/m))
	if math.Abs(scale-1) < 0.15 {
		scale = 1
	}
	crop := g.Region(box)
	defer crop.Close()
	// A region shares its parent's rows; the copy (or the resampled
	// image) is contiguous, as ToBytes needs.
	roi := gocv.NewMat()
	defer roi.Close()
	if scale == 1 {
		crop.CopyTo(&roi)
	} else {
		interp := gocv.InterpolationArea
		if scale > 1 {
			interp = gocv.InterpolationCubic
		}
		gocv.Resize(crop, &roi, image.Pt(int(float64(box.Dx())*scale), int(float64(box.Dy())*scale)), 0, 0, interp)
	}
	toFrame := func(x, y float64) image.Point {
		return image.Pt(int(math.Round(x/scale))+box.Min.X, int(math.Round(y/scale))+box.Min.Y)
	}
	// The triple as seen in the region, tried before searching it anew.
	info := detector.NewFinderPatternInfo(
		regionFinder(bl, box, scale), regionFinder(tl, box, scale), regionFinder(tr, box, scale))

	img := grey{pixels(roi), roi.Cols(), roi.Rows()}
	stages := []struct {
		name string
		bits func() (*gozxing.BitMatrix, grey)
	}{
		{"region", func() (*gozxing.BitMatrix, grey) { return binarize(img, false), img }},
		{"region-global", func() (*gozxing.BitMatrix, grey) { return binarize(img, true), img }},
		{"region-clahe", func() (*gozxing.BitMatrix, grey) {
			eq := gocv.NewMat()
			defer eq.Close()
			d.clahe.Apply(roi, &eq)
			e := grey{pixels(eq), eq.Cols(), eq.Rows()}
			return binarize(e, false), e
		}},
	}
	for i, st := range stages {
		if i > 0 && over() {
			break
		}
		bits, src := st.bits()
		if bits == nil {
			continue
		}
		r, ok := decodeTriple(src, bits, info, d.hints, over)
		if !ok && !over() {
			r, ok = decodeGrid(src, bits, d.hints, over)
		}
		if ok {
			res := Result{Text: r.text, Module: r.module / scale, Errors: r.errors, Stage: st.name}
			for k, c := range r.corners {
				res.Corners[k] = toFrame(c[0], c[1])
			}
			return res, true
		}
	}
	return Result{}, false
}

func regionFinder(f finder, box image.Rectangle, scale float64) *detector.FinderPattern {
	return detector.NewFinderPattern((f.x-float64(box.Min.X))*scale, (f.y-float64(box.Min.Y))*scale, f.module*scale, f.count)
}

// bitmap returns gozxing's local (hybrid) or global binarization of img,
// which computes its bit matrix once, when first asked.
func bitmap(img grey, global bool) *gozxing.BinaryBitmap {
	src, err := gozxing.NewPlanarYUVLuminanceSource(img.pix, img.width, img.height, 0, 0, img.width, img.height, false)
	if err != nil {
		return nil
	}
	var b gozxing.Binarizer
	if global {
		b = gozxing.NewGlobalHistgramBinarizer(src)
	} else {
		b = gozxing.NewHybridBinarizer(src)
	}
	bmp, err := gozxing.NewBinaryBitmap(b)
	if err != nil {
		return nil
	}
	return bmp
}

// binarize returns the bit matrix of bitmap(img, global), or nil.
func binarize(img grey, global bool) *gozxing.BitMatrix {
	bmp := bitmap(img, global)
	if bmp == nil {
		return nil
	}
	bits, err := bmp.GetBlackMatrix()
	if err != nil {
		return nil
	}
	return bits
}

// decodeWhole is the still-image fallback: gozxing over the whole image,
// at its own size and doubled, normal and inverted.
func (d *Decoder) decodeWhole(g gocv.Mat) []Result {
	try := func(m gocv.Mat, scale float64, stage string) []Result {
		img := grey{pixels(m), m.Cols(), m.Rows()}
		for _, global := range []bool{false, true} {
			bmp := bitmap(img, global)
			if bmp == nil {
				continue
			}
			bits, err := bmp.GetBlackMatrix()
			if err != nil {
				continue
			}
			if r, ok := decodeGrid(img, bits, d.hints, func() bool { return false }); ok {
				res := Result{Text: r.text, Module: r.module / scale, Errors: r.errors, Stage: stage}
				for k, c := range r.corners {
					res.Corners[k] = image.Pt(int(c[0]/scale), int(c[1]/scale))
				}
				return []Result{res}
			}
			// gozxing's own reader, on the same (already computed) bits.
			if r, err := qrcode.NewQRCodeReader().Decode(bmp, d.hints); err == nil {
				return []Result{{Text: r.GetText(), Stage: stage + "-zxing"}}
			}
		}
		return nil
	}
	if rs := try(g, 1, "whole"); rs != nil {
		return rs
	}
	inv := gocv.NewMat()
	defer inv.Close()
	gocv.BitwiseNot(g, &inv)
	if rs := try(inv, 1, "whole-inverted"); rs != nil {
		return rs
	}
	if g.Cols()*g.Rows() <= 1000*1000 {
		up := gocv.NewMat()
		defer up.Close()
		gocv.Resize(g, &up, image.Pt(0, 0), 2, 2, gocv.InterpolationCubic)
		return try(up, 2, "whole-2x")
	}
	return nil
}

// pixels returns the bytes of a continuous 8-bit Mat without copying them:
// the slice is valid only while the Mat is open.
func pixels(m gocv.Mat) []byte {
	b, err := m.DataPtrUint8()
	if err != nil {
		panic(err) // every caller passes a continuous 8-bit Mat
	}
	return b
}
