package scanner

import (
	"image"
	"math"
	"math/bits"
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
	// cascade stops at the next stage boundary. Zero means 25ms for a
	// camera's frames, less than the 33ms between two frames at 30 a
	// second (docs/scanner.md gives the measurements behind it), and 2s
	// for Still images, each of which is read once.
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

	// Buffers kept from frame to frame: the grey image, the pyramid's
	// halvings, a threshold, the contrast gate (at full and half
	// resolution) and the kernels that make it.
	grey, bin, grad, mask1, mask2 gocv.Mat
	meanHalf, meanFull, local     gocv.Mat
	kernel3, kernel5              gocv.Mat
	levels                        [3]gocv.Mat
	// nlevels is how many of levels the current image has: a small one
	// stops early, and the rest hold an earlier image's.
	nlevels int
	// early counts the frames in a row on which the search stopped at the
	// first code read, before the full-resolution pass.
	early int
}

// fullEvery is how many camera frames in a row may stop at the first code
// read, skipping the rest of the search: every fullEvery-th frame with a
// code searches all of it, so that a second code in view is read within
// that many frames.
const fullEvery = 4

// NewDecoder returns a decoder.
func NewDecoder(opts DecoderOptions) *Decoder {
	switch {
	case opts.Budget > 0:
	case opts.Still:
		opts.Budget = 2 * time.Second
	default:
		opts.Budget = 25 * time.Millisecond
	}
	if opts.Clock == nil {
		opts.Clock = clock.System{}
	}
	return &Decoder{
		opts:     opts,
		clahe:    gocv.NewCLAHEWithParams(2.5, image.Pt(4, 4)),
		hints:    map[gozxing.DecodeHintType]any{gozxing.DecodeHintType_TRY_HARDER: true},
		grey:     gocv.NewMat(),
		bin:      gocv.NewMat(),
		grad:     gocv.NewMat(),
		mask1:    gocv.NewMat(),
		mask2:    gocv.NewMat(),
		meanHalf: gocv.NewMat(),
		meanFull: gocv.NewMat(),
		local:    gocv.NewMat(),
		kernel3:  gocv.GetStructuringElement(gocv.MorphRect, image.Pt(3, 3)),
		kernel5:  gocv.GetStructuringElement(gocv.MorphRect, image.Pt(5, 5)),
		levels:   [3]gocv.Mat{gocv.NewMat(), gocv.NewMat(), gocv.NewMat()},
	}
}

// Close releases the decoder's OpenCV objects.
func (d *Decoder) Close() error {
	for _, m := range append([]gocv.Mat{d.grey, d.bin, d.grad, d.mask1, d.mask2, d.meanHalf, d.meanFull, d.local, d.kernel3, d.kernel5}, d.levels[:]...) {
		m.Close()
	}
	return d.clahe.Close()
}

// Decode reads the QR codes in img, a BGR or grey image. It returns none
// when there is no readable code: that is an outcome, not an error.
//
// The finder search runs on the coarse levels of the pyramid first (an
// eighth, a quarter and half the resolution), whose triples are tried
// before the full resolution is searched. A camera frame stops at the
// first code read, except every fullEvery-th frame in a row; a still image
// is searched whole.
func (d *Decoder) Decode(img gocv.Mat) []Result {
	start := d.opts.Clock.Now()
	over := func() bool { return d.opts.Clock.Now().Sub(start) > d.opts.Budget }
	g := img
	if img.Channels() != 1 {
		gocv.CvtColor(img, &d.grey, gocv.ColorBGRToGray)
		g = d.grey
	} else if !img.IsContinuous() {
		img.CopyTo(&d.grey)
		g = d.grey
	}
	stopEarly := !d.opts.Still && d.early < fullEvery-1
	// A camera frame's triples past the first two get the first stage
	// only: the next frame is a better second chance than the fallbacks.
	fallbacks := 2
	if d.opts.Still {
		fallbacks = math.MaxInt
	}
	var results []Result
	var used, tried [][3]finder
	frame := grey{pixels(g), g.Cols(), g.Rows()}
	try := func(ts [][3]finder, stage string) {
		for _, t := range ts {
			if over() || (stopEarly && len(results) > 0) {
				break
			}
			tried = append(tried, t)
			if sharesFinder(t, used) { // a code read from another triple
				continue
			}
			// Once a code is read, the others get the first stage only.
			first := len(results) > 0 || fallbacks <= 0
			fallbacks--
			r, ok := d.decodeRegion(g, t, over, first)
			if ok && !seen(results, r.Text) {
				r.Stage = stage + "/" + r.Stage
				results = append(results, r)
				used = append(used, t)
			}
		}
	}
	gFull, gHalf := d.pyramid(g)
	cands := d.coarseFinders(gHalf)
	try(triples(frame, cands, 6, used, tried), "triple")
	if stopEarly && len(results) > 0 {
		d.early++
		return results
	}
	d.early = 0
	if !over() {
		// The codes read are not searched again.
		for _, r := range results {
			gFull.clear(r.Corners, 2*r.Module)
		}
		for _, f := range d.fullFinders(g, gFull) {
			cands = merge(cands, f)
		}
		try(triples(frame, cands, 6, used, tried), "triple")
	}
	if len(results) == 0 && !over() {
		// Pairs whose third pattern was missed: searched for where a
		// square code would put it, in a crop resampled to four pixels a
		// module.
		var local []finder
		for _, t := range completions(frame, cands, 6) {
			fs := d.localFinders(g, t)
			local = append(local, fs...)
		}
		if len(local) > 0 {
			all := append([]finder(nil), cands...)
			for _, f := range local {
				all = merge(all, f)
			}
			try(triples(frame, all, 6, used, tried), "pair")
		}
	}
	if len(results) == 0 && d.opts.Still && !over() {
		results = d.decodeWhole(g, over)
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

// sameTriple reports whether a and b are the same three patterns, each
// within a third of a module of its place in the other: a triple whose
// patterns the full resolution placed better is tried again.
func sameTriple(a, b [3]finder) bool {
	for i := range a {
		if math.Abs(a[i].x-b[i].x) >= a[i].module/3 || math.Abs(a[i].y-b[i].y) >= a[i].module/3 {
			return false
		}
	}
	return true
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
// window. Each level is thresholded against the mean of a window around
// each pixel: coarseBlock is the window's width in pixels at the halvings,
// and thresholdC how much darker than the mean a pixel must be to count
// as dark. A window must be wider than a finder pattern's 3-module centre,
// or the centre turns light: 17 pixels serve modules up to 5.5 pixels at
// each halving, which overlaps the next level, and the 10 pixels of the
// full resolution (fullFinders) modules up to about 3.5.
const (
	coarseBlock = 17
	thresholdC  = 4
)

// gateContrast is the contrast gate's threshold: a cell of the quarter
// resolution image whose 3x3 neighbourhood spans fewer grey levels is
// flat. Sensor noise at dusk spans about 8 there; a code's modules, even
// at 1.5 pixels, more than 20.
const gateContrast = 12

// pyramid makes the halvings of g (down to an eighth) and the contrast
// gates, at a quarter of the resolution, for the full and the half
// resolution searches.
//
// The inside of a finder pattern's dark centre is flat, and a row must not
// lose it, so each gate is widened by the largest centre its level's
// threshold window serves: 3 modules of 3.5 pixels at full resolution
// (one cell more each way), of 5.5 pixels at half resolution (3 cells).
func (d *Decoder) pyramid(g gocv.Mat) (full, half *gate) {
	prev := g
	d.nlevels = 0
	for i := range d.levels {
		if prev.Cols() < 16 || prev.Rows() < 16 {
			break
		}
		gocv.Resize(prev, &d.levels[i], image.Pt(prev.Cols()/2, prev.Rows()/2), 0, 0, gocv.InterpolationArea)
		prev = d.levels[i]
		d.nlevels++
	}
	if d.nlevels < 2 {
		return nil, nil // too small to need a gate
	}
	q := d.levels[1]
	gocv.MorphologyEx(q, &d.grad, gocv.MorphGradient, d.kernel3)
	gocv.Threshold(d.grad, &d.mask2, gateContrast-1, 255, gocv.ThresholdBinary)
	gocv.Dilate(d.mask2, &d.mask1, d.kernel3)
	gocv.Dilate(d.mask1, &d.mask2, d.kernel5)
	return &gate{pix: pixels(d.mask1), w: q.Cols(), h: q.Rows(), shift: 2},
		&gate{pix: pixels(d.mask2), w: q.Cols(), h: q.Rows(), shift: 1}
}

// coarseFinders finds finder pattern candidates at an eighth, a quarter
// and half the resolution (the last within the gate half), in
// full-resolution coordinates.
func (d *Decoder) coarseFinders(half *gate) []finder {
	var all []finder
	for _, scale := range []int{8, 4, 2} {
		i := bits.TrailingZeros(uint(scale)) - 1
		if i >= d.nlevels {
			continue
		}
		level := d.levels[i]
		if level.Cols() < 40 || level.Rows() < 40 {
			continue
		}
		d.threshold(level, coarseBlock)
		var lg *gate
		if scale == 2 {
			lg = half
		}
		fs := findFinders(binImage{pixels(d.bin), d.bin.Cols(), d.bin.Rows()}, lg, image.Point{})
		for _, f := range fs {
			k := float64(scale)
			all = merge(all, finder{x: f.x * k, y: f.y * k, module: f.module * k, count: f.count})
		}
	}
	return all
}

// threshold sets d.bin to OpenCV's adaptive mean threshold of level over
// block pixels (light where a pixel is brighter than its window's mean
// less thresholdC), made of a box blur, a subtraction and a comparison:
// OpenCV's own loops over the pixels one at a time after its box filter,
// and takes twice as long. (The borders are mirrored rather than
// repeated.)
func (d *Decoder) threshold(level gocv.Mat, block int) {
	gocv.Blur(level, &d.meanFull, image.Pt(block, block))
	d.meanFull.SubtractUChar(thresholdC)
	gocv.Compare(level, d.meanFull, &d.bin, gocv.CompareGT)
}

// fullFinders searches g at full resolution, within the rectangle that
// holds the gate's cells with contrast. The threshold's window mean comes
// from the half resolution (a 5x5 box there, 10 pixels here), upsampled:
// the same threshold as OpenCV's adaptive one at 11 pixels, for about
// half its time.
func (d *Decoder) fullFinders(g gocv.Mat, gt *gate) []finder {
	if d.nlevels < 1 || g.Cols() < 40 || g.Rows() < 40 {
		return nil
	}
	half := d.levels[0]
	r := gt.bounds(g.Cols(), g.Rows())
	// Even corners, so that the halves line up.
	r = image.Rect(r.Min.X&^1, r.Min.Y&^1, r.Max.X, r.Max.Y).Intersect(image.Rect(0, 0, 2*half.Cols(), 2*half.Rows()))
	if r.Dx() < 16 || r.Dy() < 16 {
		return nil
	}
	gocv.Blur(half, &d.meanHalf, image.Pt(5, 5))
	d.meanHalf.SubtractUChar(thresholdC) // before upsampling: a quarter of the pixels
	if 10*r.Dx()*r.Dy() > 6*g.Cols()*g.Rows() {
		// Most of the frame: the whole of it, in one piece, is faster.
		r = image.Rect(0, 0, g.Cols(), g.Rows())
		gocv.Resize(d.meanHalf, &d.meanFull, image.Pt(g.Cols(), g.Rows()), 0, 0, gocv.InterpolationLinear)
		gocv.Compare(g, d.meanFull, &d.bin, gocv.CompareGT)
	} else {
		// The half-resolution means of the rectangle, a pixel wider all
		// round so that the upsampled values match those of the whole
		// image, copied whole (OpenCV resamples a part of a matrix
		// slowly), upsampled, then cut back to the rectangle.
		hr := image.Rect(r.Min.X/2-1, r.Min.Y/2-1, (r.Max.X+1)/2+1, (r.Max.Y+1)/2+1).Intersect(image.Rect(0, 0, half.Cols(), half.Rows()))
		sub := d.meanHalf.Region(hr)
		sub.CopyTo(&d.local)
		sub.Close()
		gocv.Resize(d.local, &d.meanFull, image.Pt(2*hr.Dx(), 2*hr.Dy()), 0, 0, gocv.InterpolationLinear)
		mean := d.meanFull.Region(r.Sub(hr.Min.Mul(2)))
		defer mean.Close()
		grey := g.Region(r)
		defer grey.Close()
		gocv.Compare(grey, mean, &d.bin, gocv.CompareGT)
	}
	fs := findFinders(binImage{pixels(d.bin), d.bin.Cols(), d.bin.Rows()}, gt, r.Min)
	for i := range fs {
		fs[i].x += float64(r.Min.X)
		fs[i].y += float64(r.Min.Y)
	}
	var all []finder
	for _, f := range fs {
		all = merge(all, f)
	}
	return all
}

// triples groups candidates into likely sets of three finder patterns of
// one code, best first, each ordered top-left, top-right, bottom-left.
// Geometry alone admits many wrong triples on a busy frame, and trying one
// costs milliseconds, so each triple is also checked against the image: in
// the frame the triple implies, each of its patterns must look like a
// finder pattern with the light separator around it.
func triples(img grey, cands []finder, limit int, used, tried [][3]finder) [][3]finder {
	sort.SliceStable(cands, func(i, j int) bool { return cands[i].count > cands[j].count })
	if len(cands) > 16 {
		cands = cands[:16]
	}
	r := ranking{img: img, used: used, tried: tried}
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
	img   grey
	all   []scoredTriple
	used  [][3]finder // triples of codes read: their patterns are taken
	tried [][3]finder // triples tried already
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
	if sharesFinder(t, r.used) {
		return
	}
	for _, u := range r.tried {
		if sameTriple(t, u) {
			return
		}
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

// localFinders searches again for the finder patterns of the code that the
// triple t implies (two real patterns and a proposed third), in a crop of
// g resampled to four pixels a module: the region the triple spans, wider
// by 16 modules, because perspective puts a missed third pattern up to
// about 15 modules from where a square code would have it. Small modules
// that the frame's search misses are found once enlarged.
func (d *Decoder) localFinders(g gocv.Mat, t [3]finder) []finder {
	m := (t[0].module + t[1].module + t[2].module) / 3
	box := image.Rect(int(t[0].x), int(t[0].y), int(t[0].x)+1, int(t[0].y)+1)
	for _, f := range t[1:] {
		box = box.Union(image.Rect(int(f.x), int(f.y), int(f.x)+1, int(f.y)+1))
	}
	box = box.Inset(-int(16 * m)).Intersect(image.Rect(0, 0, g.Cols(), g.Rows()))
	if float64(box.Dx()) < 8*m || float64(box.Dy()) < 8*m {
		return nil
	}
	scale := min(4, 4/m)
	crop := g.Region(box)
	defer crop.Close()
	size := image.Pt(int(float64(box.Dx())*scale), int(float64(box.Dy())*scale))
	if scale > 1 {
		gocv.Resize(crop, &d.local, size, 0, 0, gocv.InterpolationCubic)
	} else {
		gocv.Resize(crop, &d.local, size, 0, 0, gocv.InterpolationArea)
	}
	d.threshold(d.local, 17)
	var out []finder
	for _, f := range findFinders(binImage{pixels(d.bin), d.bin.Cols(), d.bin.Rows()}, nil, image.Point{}) {
		f.x, f.y = f.x/scale+float64(box.Min.X), f.y/scale+float64(box.Min.Y)
		f.module /= scale
		if f.module < 2.2*m && m < 2.2*f.module {
			out = append(out, f)
		}
	}
	return out
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
// With first, only the first stage is tried: the grid sampler on the
// triple itself, in the local binarization.
func (d *Decoder) decodeRegion(g gocv.Mat, t [3]finder, over func() bool, first bool) (Result, bool) {
	tl, tr, bl := t[0], t[1], t[2]
	m := (tl.module + tr.module + bl.module) / 3
	scale := math.Max(0.25, math.Min(3, 4/m))
	if math.Abs(scale-1) < 0.15 {
		scale = 1
	}
	// Modules of about four pixels and more are sampled in the frame
	// itself: resampling them first costs more than it buys.
	if scale <= 1 {
		info := detector.NewFinderPatternInfo(
			regionFinder(bl, image.Rectangle{}, 1), regionFinder(tl, image.Rectangle{}, 1), regionFinder(tr, image.Rectangle{}, 1))
		if r, ok := decodeTriple(grey{pixels(g), g.Cols(), g.Rows()}, info, d.hints, over); ok {
			res := Result{Text: r.text, Module: r.module, Errors: r.errors, Stage: "frame"}
			for k, c := range r.corners {
				res.Corners[k] = image.Pt(int(math.Round(c[0])), int(math.Round(c[1])))
			}
			return res, true
		}
		if first || over() {
			return Result{}, false
		}
	}
	br := finder{x: tr.x + bl.x - tl.x, y: tr.y + bl.y - tl.y}
	box := image.Rect(int(tl.x), int(tl.y), int(tl.x)+1, int(tl.y)+1)
	for _, f := range []finder{tr, bl, br} {
		box = box.Union(image.Rect(int(f.x), int(f.y), int(f.x)+1, int(f.y)+1))
	}
	box = box.Inset(-int(9 * m)).Intersect(image.Rect(0, 0, g.Cols(), g.Rows()))
	if box.Dx() < 21 || box.Dy() < 21 {
		return Result{}, false
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
	done := func(r gridResult, stage string) (Result, bool) {
		res := Result{Text: r.text, Module: r.module / scale, Errors: r.errors, Stage: stage}
		for k, c := range r.corners {
			res.Corners[k] = toFrame(c[0], c[1])
		}
		return res, true
	}
	// The grid sampler on the triple itself (in the frame, for modules
	// of four pixels, the same pixels).
	if scale != 1 {
		if r, ok := decodeTriple(img, info, d.hints, over); ok {
			return done(r, "region")
		}
	}
	if first {
		return Result{}, false
	}
	// The finder patterns searched anew in the region's binarizations:
	// gozxing's local (hybrid) one, then (still images) its global
	// histogram.
	for _, st := range []struct {
		name   string
		global bool
	}{{"region/refound", false}, {"region-global/refound", true}} {
		if over() || st.global && !d.opts.Still {
			return Result{}, false
		}
		if bits := binarize(img, st.global); bits != nil {
			if r, ok := decodeGrid(img, bits, d.hints, over); ok {
				return done(r, st.name)
			}
		}
	}
	// Contrast equalised, for dark photos and glare: the triple, then
	// the patterns searched anew.
	if over() {
		return Result{}, false
	}
	eq := gocv.NewMat()
	defer eq.Close()
	d.clahe.Apply(roi, &eq)
	e := grey{pixels(eq), eq.Cols(), eq.Rows()}
	if r, ok := decodeTriple(e, info, d.hints, over); ok {
		return done(r, "region-clahe")
	}
	if !over() {
		if bits := binarize(e, false); bits != nil {
			if r, ok := decodeGrid(e, bits, d.hints, over); ok {
				return done(r, "region-clahe/refound")
			}
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
// at its own size and doubled, normal and inverted, until over says the
// time is up.
func (d *Decoder) decodeWhole(g gocv.Mat, over func() bool) []Result {
	try := func(m gocv.Mat, scale float64, stage string) []Result {
		img := grey{pixels(m), m.Cols(), m.Rows()}
		for _, global := range []bool{false, true} {
			if over() {
				return nil
			}
			bmp := bitmap(img, global)
			if bmp == nil {
				continue
			}
			bits, err := bmp.GetBlackMatrix()
			if err != nil {
				continue
			}
			if r, ok := decodeGrid(img, bits, d.hints, over); ok {
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
	if g.Cols()*g.Rows() <= 1000*1000 && !over() {
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
