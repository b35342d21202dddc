package scanner

import (
	"math"
	"sort"

	"github.com/makiuchi-d/gozxing"
	"github.com/makiuchi-d/gozxing/qrcode/decoder"
	"github.com/makiuchi-d/gozxing/qrcode/detector"
)

// This file is the scanner's own module sampler. gozxing maps the code
// with one perspective transform fitted to the three finder patterns and at
// most one alignment pattern, and reads each module as one pixel of the
// binarized image. On a tilted phone, through a wide-angle lens or on curled
// paper that transform is off by a module or more at the far corners, and
// Reed-Solomon gives up. Here the transform is fitted to every alignment
// pattern the code has, found one after another outwards from the finder
// patterns; what a single transform cannot fit (curvature) is taken up by
// interpolating the anchors' residuals; and each module is read from the
// grey image, averaged over its centre, against a threshold local to its
// neighbourhood of modules.

// grey is an 8-bit single-channel image.
type grey struct {
	pix           []byte
	width, height int
}

// at returns the bilinearly interpolated grey value at (x, y).
func (g grey) at(x, y float64) float64 {
	if x < 0 {
		x = 0
	}
	if y < 0 {
		y = 0
	}
	maxX, maxY := float64(g.width-1), float64(g.height-1)
	if x > maxX {
		x = maxX
	}
	if y > maxY {
		y = maxY
	}
	x0, y0 := int(x), int(y)
	x1, y1 := min(x0+1, g.width-1), min(y0+1, g.height-1)
	fx, fy := x-float64(x0), y-float64(y0)
	p := g.pix
	w := g.width
	top := float64(p[y0*w+x0])*(1-fx) + float64(p[y0*w+x1])*fx
	bot := float64(p[y1*w+x0])*(1-fx) + float64(p[y1*w+x1])*fx
	return top*(1-fy) + bot*fy
}

// anchor is a point whose position is known both in module coordinates
// and in the image.
type anchor struct {
	mx, my float64 // module coordinates (the centre of module (i, j) is (i+0.5, j+0.5))
	x, y   float64 // image coordinates
}

// homography maps module coordinates to image coordinates.
type homography [9]float64

func (h homography) apply(x, y float64) (float64, float64) {
	w := h[6]*x + h[7]*y + h[8]
	return (h[0]*x + h[1]*y + h[2]) / w, (h[3]*x + h[4]*y + h[5]) / w
}

// fit returns the least-squares homography (or, with three anchors, the
// affine map) through the anchors.
func fit(as []anchor) (homography, bool) {
	if len(as) < 3 {
		return homography{}, false
	}
	if len(as) == 3 {
		return affine(as)
	}
	// Normalise for a well-conditioned system, then solve the 8
	// unknowns of the DLT by normal equations.
	var n [8][9]float64
	for _, a := range as {
		rows := [2][9]float64{
			{a.mx, a.my, 1, 0, 0, 0, -a.x * a.mx, -a.x * a.my, a.x},
			{0, 0, 0, a.mx, a.my, 1, -a.y * a.mx, -a.y * a.my, a.y},
		}
		for _, r := range rows {
			for i := 0; i < 8; i++ {
				for j := 0; j < 9; j++ {
					n[i][j] += r[i] * r[j]
				}
			}
		}
	}
	sol, ok := solve8(n)
	if !ok {
		return affine(as[:3])
	}
	return homography{sol[0], sol[1], sol[2], sol[3], sol[4], sol[5], sol[6], sol[7], 1}, true
}

func solve8(a [8][9]float64) ([8]float64, bool) {
	for c := 0; c < 8; c++ {
		p := c
		for r := c + 1; r < 8; r++ {
			if math.Abs(a[r][c]) > math.Abs(a[p][c]) {
				p = r
			}
		}
		if math.Abs(a[p][c]) < 1e-12 {
			return [8]float64{}, false
		}
		a[c], a[p] = a[p], a[c]
		for r := 0; r < 8; r++ {
			if r == c {
				continue
			}
			f := a[r][c] / a[c][c]
			for k := c; k < 9; k++ {
				a[r][k] -= f * a[c][k]
			}
		}
	}
	var x [8]float64
	for i := range x {
		x[i] = a[i][8] / a[i][i]
	}
	return x, true
}

// affine solves the map through three anchors exactly.
func affine(as []anchor) (homography, bool) {
	a, b, c := as[0], as[1], as[2]
	det := (b.mx-a.mx)*(c.my-a.my) - (c.mx-a.mx)*(b.my-a.my)
	if math.Abs(det) < 1e-9 {
		return homography{}, false
	}
	// x = p*mx + q*my + r, solved from the differences.
	solveAxis := func(va, vb, vc float64) (p, q, r float64) {
		p = ((vb-va)*(c.my-a.my) - (vc-va)*(b.my-a.my)) / det
		q = ((vc-va)*(b.mx-a.mx) - (vb-va)*(c.mx-a.mx)) / det
		r = va - p*a.mx - q*a.my
		return
	}
	p1, q1, r1 := solveAxis(a.x, b.x, c.x)
	p2, q2, r2 := solveAxis(a.y, b.y, c.y)
	return homography{p1, q1, r1, p2, q2, r2, 0, 0, 1}, true
}

// gridSampler reads the modules of a code whose finder patterns are known.
type gridSampler struct {
	img     grey
	bits    *gozxing.BitMatrix // the binarized image, for finding alignment patterns
	dim     int
	module  float64 // estimated module size in pixels
	anchors []anchor
	h       homography
}

// newGridSampler starts from the three finder patterns of info and a
// dimension (modules per side).
func newGridSampler(img grey, bits *gozxing.BitMatrix, info *detector.FinderPatternInfo, dim int) (*gridSampler, bool) {
	tl, tr, bl := info.GetTopLeft(), info.GetTopRight(), info.GetBottomLeft()
	d := float64(dim)
	// The module size the dimension implies: blur inflates the finder
	// patterns' own estimates.
	span := (math.Hypot(tr.GetX()-tl.GetX(), tr.GetY()-tl.GetY()) + math.Hypot(bl.GetX()-tl.GetX(), bl.GetY()-tl.GetY())) / 2
	s := &gridSampler{
		img: img, bits: bits, dim: dim,
		module: span / (d - 7),
		anchors: []anchor{
			{3.5, 3.5, tl.GetX(), tl.GetY()},
			{d - 3.5, 3.5, tr.GetX(), tr.GetY()},
			{3.5, d - 3.5, bl.GetX(), bl.GetY()},
		},
	}
	var ok bool
	s.h, ok = fit(s.anchors)
	return s, ok
}

// findAlignment locates the code's alignment patterns, nearest the
// finder patterns first, refitting the map after each. It returns how many
// the version has and how many it found.
func (s *gridSampler) findAlignment() (want, found int) {
	v, err := decoder.Version_GetProvisionalVersionForDimension(s.dim)
	if err != nil {
		return 0, 0
	}
	centers := v.GetAlignmentPatternCenters()
	last := len(centers) - 1
	type cell struct{ x, y int }
	var todo []cell
	for i, cx := range centers {
		for j, cy := range centers {
			// The three places where a finder pattern sits instead.
			if (i == 0 && j == 0) || (i == 0 && j == last) || (i == last && j == 0) {
				continue
			}
			todo = append(todo, cell{cx, cy})
		}
	}
	sort.Slice(todo, func(a, b int) bool {
		return todo[a].x+todo[a].y < todo[b].x+todo[b].y ||
			(todo[a].x+todo[a].y == todo[b].x+todo[b].y && todo[a].x < todo[b].x)
	})
	for i, c := range todo {
		// The nearest patterns are where the finder patterns alone put
		// them: if the first two are not there, this is not the code's
		// geometry (or dimension), and the rest need not be looked for.
		if i == 2 && found == 0 {
			return len(todo), 0
		}
		mx, my := float64(c.x)+0.5, float64(c.y)+0.5
		if x, y, ok := s.matchAlignment(mx, my); ok {
			found++
			s.anchors = append(s.anchors, anchor{mx, my, x, y})
			if nh, ok := fit(s.anchors); ok {
				s.h = nh
			}
		}
	}
	return len(todo), found
}

// matchAlignment looks for the alignment pattern centred on module
// coordinates (mx, my) within two and a half modules of where the current
// map puts it: the offset where the pattern (dark centre, light ring, dark
// ring) stands out most against the grey image. It returns the pattern's
// centre in the image.
func (s *gridSampler) matchAlignment(mx, my float64) (float64, float64, bool) {
	var dark, light [][2]float64
	for dy := -2; dy <= 2; dy++ {
		for dx := -2; dx <= 2; dx++ {
			switch {
			case dx == 0 && dy == 0, dx == -2 || dx == 2 || dy == -2 || dy == 2:
				dark = append(dark, [2]float64{float64(dx), float64(dy)})
			default:
				light = append(light, [2]float64{float64(dx), float64(dy)})
			}
		}
	}
	score := func(cx, cy float64) (float64, float64) {
		var d, l float64
		for _, o := range dark {
			x, y := s.h.apply(cx+o[0], cy+o[1])
			d += s.img.at(x, y)
		}
		for _, o := range light {
			x, y := s.h.apply(cx+o[0], cy+o[1])
			l += s.img.at(x, y)
		}
		d /= float64(len(dark))
		l /= float64(len(light))
		return l - d, (l + d) / 2
	}
	// Coarse steps of half a module, then quarters around the best.
	best, bx, by := math.Inf(-1), 0.0, 0.0
	for oy := -2.5; oy <= 2.5; oy += 0.5 {
		for ox := -2.5; ox <= 2.5; ox += 0.5 {
			if sc, _ := score(mx+ox, my+oy); sc > best {
				best, bx, by = sc, ox, oy
			}
		}
	}
	cx, cy := bx, by
	for oy := cy - 0.25; oy <= cy+0.25; oy += 0.25 {
		for ox := cx - 0.25; ox <= cx+0.25; ox += 0.25 {
			if sc, _ := score(mx+ox, my+oy); sc > best {
				best, bx, by = sc, ox, oy
			}
		}
	}
	// Demand the pattern, not something like it: at the best offset at
	// least 22 of its 25 modules must fall on their side of the midpoint
	// between the dark and the light levels, and the two must differ.
	var vals [25]float64
	k := 0
	lo, hi := 255.0, 0.0
	for _, o := range append(append([][2]float64{}, dark...), light...) {
		x, y := s.h.apply(mx+bx+o[0], my+by+o[1])
		vals[k] = s.img.at(x, y)
		lo, hi = min(lo, vals[k]), max(hi, vals[k])
		k++
	}
	if hi-lo < 16 || best < 0.35*(hi-lo) {
		return 0, 0, false
	}
	mid, right := (lo+hi)/2, 0
	for i, v := range vals {
		if (i < len(dark)) == (v < mid) {
			right++
		}
	}
	if right < 22 {
		return 0, 0, false
	}
	x, y := s.h.apply(mx+bx, my+by)
	return x, y, true
}

// locate maps module coordinates to the image: the fitted map plus the
// anchors' residuals, interpolated by inverse squared distance, so that a
// bend the map cannot follow is still followed near the anchors.
func (s *gridSampler) locate(mx, my float64, res [][2]float64) (float64, float64) {
	x, y := s.h.apply(mx, my)
	if len(s.anchors) <= 4 {
		return x, y
	}
	var wx, wy, ws float64
	for i, a := range s.anchors {
		d2 := (a.mx-mx)*(a.mx-mx) + (a.my-my)*(a.my-my) + 4
		w := 1 / (d2 * d2)
		wx += w * res[i][0]
		wy += w * res[i][1]
		ws += w
	}
	return x + wx/ws, y + wy/ws
}

// sample reads every module and thresholds it against its neighbourhood.
// bias moves the thresholds (in grey levels) for a second attempt.
func (s *gridSampler) sample(biases []float64) []*gozxing.BitMatrix {
	n := s.dim
	res := make([][2]float64, len(s.anchors))
	for i, a := range s.anchors {
		x, y := s.h.apply(a.mx, a.my)
		res[i] = [2]float64{a.x - x, a.y - y}
	}
	vals := make([]float64, n*n)
	const d = 0.2 // sample offsets, in modules
	for j := 0; j < n; j++ {
		for i := 0; i < n; i++ {
			mx, my := float64(i)+0.5, float64(j)+0.5
			cx, cy := s.locate(mx, my, res)
			// The other sample points, offset in module space.
			sum := s.img.at(cx, cy) * 2
			for _, o := range [4][2]float64{{-d, -d}, {d, -d}, {-d, d}, {d, d}} {
				x, y := s.h.apply(mx+o[0], my+o[1])
				bx, by := s.h.apply(mx, my)
				sum += s.img.at(cx+x-bx, cy+y-by)
			}
			vals[j*n+i] = sum / 6
		}
	}
	// Local threshold: midway between the dark and light levels among the
	// modules around, taken as low and high percentiles to ignore outliers.
	thr := make([]float64, n*n)
	const r = 3
	window := make([]float64, 0, (2*r+1)*(2*r+1))
	for j := 0; j < n; j++ {
		for i := 0; i < n; i++ {
			window = window[:0]
			for y := max(0, j-r); y <= min(n-1, j+r); y++ {
				for x := max(0, i-r); x <= min(n-1, i+r); x++ {
					window = append(window, vals[y*n+x])
				}
			}
			sort.Float64s(window)
			k := len(window) / 8
			lo, hi := window[k], window[len(window)-1-k]
			thr[j*n+i] = (lo + hi) / 2
			if hi-lo < 8 { // a flat patch: trust a wider view
				thr[j*n+i] = math.NaN()
			}
		}
	}
	global := globalThreshold(vals)
	var out []*gozxing.BitMatrix
	for _, bias := range biases {
		m, err := gozxing.NewSquareBitMatrix(n)
		if err != nil {
			return nil
		}
		for k, v := range vals {
			t := thr[k]
			if math.IsNaN(t) {
				t = global
			}
			if v < t+bias {
				m.Set(k%n, k/n)
			}
		}
		out = append(out, m)
	}
	return out
}

// globalThreshold is the midpoint between the means of the darker and the
// lighter half of the values.
func globalThreshold(vals []float64) float64 {
	s := append([]float64(nil), vals...)
	sort.Float64s(s)
	var lo, hi float64
	h := len(s) / 2
	for i, v := range s {
		if i < h {
			lo += v
		} else {
			hi += v
		}
	}
	return (lo/float64(h) + hi/float64(len(s)-h)) / 2
}

// dimensions returns the likely sizes of the code, in modules: first what
// the version information next to the top-right and bottom-left finder
// patterns says (versions 7 and up carry it, protected by a BCH code), then
// the estimate from the distances between the finder patterns, which blur
// and tilt bias, and its neighbours.
func dimensions(bits *gozxing.BitMatrix, info *detector.FinderPatternInfo, module float64) []int {
	tl, tr, bl := info.GetTopLeft(), info.GetTopRight(), info.GetBottomLeft()
	var out []int
	add := func(d int) {
		if d < 21 || d > 177 {
			return
		}
		for _, o := range out {
			if o == d {
				return
			}
		}
		out = append(out, d)
	}
	for _, d := range []int{versionDimension(bits, tr, tl, bl, false), versionDimension(bits, bl, tl, tr, true)} {
		if d > 0 {
			add(d)
		}
	}
	a := math.Hypot(tr.GetX()-tl.GetX(), tr.GetY()-tl.GetY()) / module
	b := math.Hypot(bl.GetX()-tl.GetX(), bl.GetY()-tl.GetY()) / module
	d := 17 + 4*int(math.Round((math.Round((a+b)/2)+7-17)/4))
	for _, c := range []int{d, d + 4, d - 4, d + 8, d + 12} {
		add(c)
	}
	return out
}

// versionDimension reads the 18 bits of version information beside the
// finder pattern at, which is the top-right one (or, with bottomLeft, the
// bottom-left one); tl is the top-left finder and other the remaining one.
// Blur makes a finder pattern look bigger than its modules are, so the
// bits are read at a few module sizes, and a version is believed only if
// the distance between the finder patterns agrees with it. It returns the
// dimension, or 0.
func versionDimension(bits *gozxing.BitMatrix, at, tl, other gozxing.ResultPoint, bottomLeft bool) int {
	fp, ok := at.(*detector.FinderPattern)
	if !ok {
		return 0
	}
	// Unit vectors along the code's rows (u) and columns (v).
	ux, uy := at.GetX()-tl.GetX(), at.GetY()-tl.GetY()
	vx, vy := other.GetX()-tl.GetX(), other.GetY()-tl.GetY()
	dist := math.Hypot(ux, uy) // between the two finder centres: D-7 modules
	if bottomLeft {
		ux, uy, vx, vy = vx, vy, ux, uy
	}
	nu, nv := math.Hypot(ux, uy), math.Hypot(vx, vy)
	if nu == 0 || nv == 0 {
		return 0
	}
	ux, uy, vx, vy = ux/nu, uy/nu, vx/nv, vy/nv
	for _, scale := range []float64{1, 0.9, 0.8, 1.1, 0.7} {
		m := fp.GetEstimatedModuleSize() * scale
		get := func(dx, dy float64) int {
			x := int(math.Round(at.GetX() + m*(dx*ux+dy*vx)))
			y := int(math.Round(at.GetY() + m*(dx*uy+dy*vy)))
			if x < 0 || y < 0 || x >= bits.GetWidth() || y >= bits.GetHeight() || !bits.Get(x, y) {
				return 0
			}
			return 1
		}
		v := 0
		if !bottomLeft {
			// Rows 5 down to 0, columns D-9 down to D-11 (ISO/IEC 18004
			// 7.10), as offsets from the finder's centre at (D-3.5, 3.5).
			for j := 5; j >= 0; j-- {
				for i := -5; i >= -7; i-- {
					v = v<<1 | get(float64(i), float64(j)-3)
				}
			}
		} else {
			for i := 5; i >= 0; i-- {
				for j := -5; j >= -7; j-- {
					v = v<<1 | get(float64(i)-3, float64(j))
				}
			}
		}
		ver, err := decoder.Version_decodeVersionInformation(v)
		if err != nil || ver == nil {
			continue
		}
		d := ver.GetDimensionForVersion()
		if implied := dist / float64(d-7); math.Abs(implied/m-1) < 0.15 {
			return d
		}
	}
	return 0
}

// finderTriples returns the likely sets of three finder patterns in bits,
// best first: gozxing's own choice, then other triples of candidates that
// form a right angle with legs of similar length and patterns of similar
// module size. gozxing keeps only its single best guess, and on a busy
// frame that guess can include a look-alike from the data area.
func finderTriples(bits *gozxing.BitMatrix, hints map[gozxing.DecodeHintType]any, limit int) []*detector.FinderPatternInfo {
	ff := detector.NewFinderPatternFinder(bits, nil)
	var out []*detector.FinderPatternInfo
	if info, err := ff.Find(hints); err == nil {
		out = append(out, info)
	}
	cands := scanFinders(bits)
	sort.SliceStable(cands, func(i, j int) bool { return cands[i].GetCount() > cands[j].GetCount() })
	if len(cands) > 12 {
		cands = cands[:12]
	}
	type scored struct {
		info  *detector.FinderPatternInfo
		score float64
	}
	var all []scored
	asFinder := func(p *detector.FinderPattern) finder {
		return finder{x: p.GetX(), y: p.GetY(), module: p.GetEstimatedModuleSize(), count: p.GetCount()}
	}
	asPattern := func(f finder) *detector.FinderPattern {
		return detector.NewFinderPattern(f.x, f.y, f.module, f.count)
	}
	for i := 0; i < len(cands); i++ {
		for j := i + 1; j < len(cands); j++ {
			for k := j + 1; k < len(cands); k++ {
				t, score, ok := shape(asFinder(cands[i]), asFinder(cands[j]), asFinder(cands[k]))
				// Here the patterns' sizes must agree more closely than
				// shape's bound, which allows for strong perspective.
				if !ok || max(t[0].module, t[1].module, t[2].module) > 1.5*min(t[0].module, t[1].module, t[2].module) {
					continue
				}
				all = append(all, scored{detector.NewFinderPatternInfo(asPattern(t[2]), asPattern(t[0]), asPattern(t[1])), score})
			}
		}
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].score > all[j].score })
	for _, t := range all {
		if len(out) >= limit {
			break
		}
		if len(out) > 0 && sameTriple(out[0], t.info) {
			continue
		}
		out = append(out, t.info)
	}
	return out
}

// scanFinders collects every finder pattern candidate in bits. It is
// gozxing's row scan without its shortcuts: once two patterns are confirmed
// gozxing jumps ahead to where it guesses the third one is and stops at the
// first plausible triple, which misses the real third pattern when a
// look-alike comes first.
func scanFinders(bits *gozxing.BitMatrix) []*detector.FinderPattern {
	f := detector.NewFinderPatternFinder(bits, nil)
	maxI, maxJ := bits.GetHeight(), bits.GetWidth()
	state := make([]int, 5)
	for i := 1; i < maxI; i += 2 {
		detector.FinderPatternFinder_doClearCounts(state)
		cur := 0
		for j := 0; j < maxJ; j++ {
			if bits.Get(j, i) {
				if cur&1 == 1 {
					cur++
				}
				state[cur]++
				continue
			}
			if cur&1 == 1 {
				state[cur]++
				continue
			}
			if cur != 4 {
				cur++
				state[cur]++
				continue
			}
			if detector.FinderPatternFinder_foundPatternCross(state) && f.HandlePossibleCenter(state, i, j) {
				cur = 0
				detector.FinderPatternFinder_doClearCounts(state)
				continue
			}
			detector.FinderPatternFinder_doShiftCounts2(state)
			cur = 3
		}
		if detector.FinderPatternFinder_foundPatternCross(state) {
			f.HandlePossibleCenter(state, i, maxJ)
		}
	}
	return f.GetPossibleCenters()
}

func sameTriple(a, b *detector.FinderPatternInfo) bool {
	same := func(p, q *detector.FinderPattern) bool { return p.GetX() == q.GetX() && p.GetY() == q.GetY() }
	return same(a.GetTopLeft(), b.GetTopLeft()) && same(a.GetTopRight(), b.GetTopRight()) && same(a.GetBottomLeft(), b.GetBottomLeft())
}

// gridResult is a code read by the grid sampler.
type gridResult struct {
	text    string
	corners [4][2]float64 // top-left, top-right, bottom-right, bottom-left, image pixels
	module  float64
	errors  int // Reed-Solomon corrections needed
}

// decodeTriple reads the code whose finder patterns are info, trying the
// likely dimensions in turn until over says the time is up. A dimension
// under which fewer than a third of the alignment patterns turn up where
// they should is not the code's: it is skipped without sampling.
func decodeTriple(img grey, bits *gozxing.BitMatrix, info *detector.FinderPatternInfo, hints map[gozxing.DecodeHintType]any, over func() bool) (gridResult, bool) {
	module := (info.GetTopLeft().GetEstimatedModuleSize() + info.GetTopRight().GetEstimatedModuleSize() +
		info.GetBottomLeft().GetEstimatedModuleSize()) / 3
	for i, dim := range dimensions(bits, info, module) {
		if i > 0 && over() {
			break
		}
		s, ok := newGridSampler(img, bits, info, dim)
		if !ok {
			continue
		}
		if want, found := s.findAlignment(); want > 0 && 3*found < want {
			continue
		}
		for _, m := range s.sample([]float64{0, -8, 8}) {
			r, err := decoder.NewDecoder().Decode(m, hints)
			if err != nil {
				continue
			}
			d := float64(dim)
			var g gridResult
			for i, c := range [4][2]float64{{0, 0}, {d, 0}, {d, d}, {0, d}} {
				g.corners[i][0], g.corners[i][1] = s.h.apply(c[0], c[1])
			}
			g.text, g.module, g.errors = r.GetText(), s.module, r.GetErrorsCorrected()
			return g, true
		}
	}
	return gridResult{}, false
}

// decodeGrid finds finder patterns in bits and reads the code with the
// grid sampler from the grey image.
func decodeGrid(img grey, bits *gozxing.BitMatrix, hints map[gozxing.DecodeHintType]any, over func() bool) (gridResult, bool) {
	for i, info := range finderTriples(bits, hints, 4) {
		if i > 0 && over() {
			break
		}
		if g, ok := decodeTriple(img, bits, info, hints, over); ok {
			return g, true
		}
	}
	return gridResult{}, false
}
