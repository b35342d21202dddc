package scanner

import (
	"math"
	"math/bits"
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

// at returns the bilinearly interpolated grey value at (x, y), the
// nearest edge pixel's beyond the image.
func (g grey) at(x, y float64) float64 {
	if x >= 0 && y >= 0 && x < float64(g.width-1) && y < float64(g.height-1) {
		x0, y0 := int(x), int(y)
		fx, fy := x-float64(x0), y-float64(y0)
		k := y0*g.width + x0
		p := g.pix[k : k+g.width+2]
		top := float64(p[0]) + (float64(p[1])-float64(p[0]))*fx
		bot := float64(p[g.width]) + (float64(p[g.width+1])-float64(p[g.width]))*fx
		return top + (bot-top)*fy
	}
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
	dim     int
	module  float64 // estimated module size in pixels
	anchors []anchor
	h       homography
}

// newGridSampler starts from the three finder patterns of info and a
// dimension (modules per side).
func newGridSampler(img grey, info *detector.FinderPatternInfo, dim int) (*gridSampler, bool) {
	tl, tr, bl := info.GetTopLeft(), info.GetTopRight(), info.GetBottomLeft()
	d := float64(dim)
	// The module size the dimension implies: blur inflates the finder
	// patterns' own estimates.
	span := (math.Hypot(tr.GetX()-tl.GetX(), tr.GetY()-tl.GetY()) + math.Hypot(bl.GetX()-tl.GetX(), bl.GetY()-tl.GetY())) / 2
	s := &gridSampler{
		img: img, dim: dim,
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
		x, y, ok := s.matchAlignment(mx, my, 5)
		if !ok && i < 2 && found == 0 {
			// Strong perspective (a phone tilted across the view) moves
			// the first patterns further from where the finder patterns
			// alone put them.
			x, y, ok = s.matchAlignment(mx, my, 10)
		}
		if ok {
			found++
			s.anchors = append(s.anchors, anchor{mx, my, x, y})
			if nh, ok := fit(s.anchors); ok {
				s.h = nh
			}
		}
	}
	return len(todo), found
}

// alignDark and alignLight are the alignment pattern's modules, as
// offsets from its centre: the dark ones (centre and outer ring) and the
// light ring.
var alignDark, alignLight = func() (dark, light [][2]int) {
	for dy := -2; dy <= 2; dy++ {
		for dx := -2; dx <= 2; dx++ {
			if dx == 0 && dy == 0 || dx == -2 || dx == 2 || dy == -2 || dy == 2 {
				dark = append(dark, [2]int{dx, dy})
			} else {
				light = append(light, [2]int{dx, dy})
			}
		}
	}
	return
}()

// matchAlignment looks for the alignment pattern centred on module
// coordinates (mx, my) within reach half modules of where the current map
// puts it: the offset where the pattern (dark centre, light ring, dark
// ring) stands out most against the grey image. It returns the pattern's
// centre in the image.
//
// The coarse search, in steps of half a module, reads its points from a
// table: the grey image sampled once on a half-module grid around the
// expected place, which every offset's 25 points fall on. A quarter-module
// refinement around the best offset samples directly.
func (s *gridSampler) matchAlignment(mx, my float64, reach int) (float64, float64, bool) {
	const maxReach = 10
	const R = maxReach + 4 // the pattern reaches 2 modules (4 halves) further
	var table [2*R + 1][2*R + 1]float64
	r := reach + 4
	for j := -r; j <= r; j++ {
		for i := -r; i <= r; i++ {
			x, y := s.h.apply(mx+float64(i)/2, my+float64(j)/2)
			table[j+R][i+R] = s.img.at(x, y)
		}
	}
	nd, nl := float64(len(alignDark)), float64(len(alignLight))
	best, bi, bj := math.Inf(-1), 0, 0
	for oj := -reach; oj <= reach; oj++ {
		for oi := -reach; oi <= reach; oi++ {
			var d, l float64
			for _, o := range alignDark {
				d += table[oj+2*o[1]+R][oi+2*o[0]+R]
			}
			for _, o := range alignLight {
				l += table[oj+2*o[1]+R][oi+2*o[0]+R]
			}
			if sc := l/nl - d/nd; sc > best {
				best, bi, bj = sc, oi, oj
			}
		}
	}
	// Quarters around the best, sampled directly.
	score := func(cx, cy float64, vals *[25]float64) float64 {
		var d, l float64
		k := 0
		for _, o := range alignDark {
			x, y := s.h.apply(cx+float64(o[0]), cy+float64(o[1]))
			v := s.img.at(x, y)
			d += v
			if vals != nil {
				vals[k] = v
			}
			k++
		}
		for _, o := range alignLight {
			x, y := s.h.apply(cx+float64(o[0]), cy+float64(o[1]))
			v := s.img.at(x, y)
			l += v
			if vals != nil {
				vals[k] = v
			}
			k++
		}
		return l/nl - d/nd
	}
	bx, by := float64(bi)/2, float64(bj)/2
	cx, cy := bx, by
	for oy := cy - 0.25; oy <= cy+0.25; oy += 0.25 {
		for ox := cx - 0.25; ox <= cx+0.25; ox += 0.25 {
			if ox == cx && oy == cy {
				continue
			}
			if sc := score(mx+ox, my+oy, nil); sc > best {
				best, bx, by = sc, ox, oy
			}
		}
	}
	// Demand the pattern, not something like it: at the best offset at
	// least 22 of its 25 modules must fall on their side of the midpoint
	// between the dark and the light levels, and the two must differ.
	var vals [25]float64
	score(mx+bx, my+by, &vals)
	lo, hi := 255.0, 0.0
	for _, v := range vals {
		lo, hi = min(lo, v), max(hi, v)
	}
	if hi-lo < 16 || best < 0.35*(hi-lo) {
		return 0, 0, false
	}
	mid, right := (lo+hi)/2, 0
	for i, v := range vals {
		if (i < len(alignDark)) == (v < mid) {
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

// sample reads every module's grey level, averaged over six points of
// its centre (the centre counted twice, and four points a fifth of a
// module away diagonally), into vals (dim*dim values, row by row), in
// quarters of a grey level.
func (s *gridSampler) sample(vals []uint16) {
	n := s.dim
	var resBuf [16][2]float64
	res := resBuf[:0]
	for _, a := range s.anchors {
		x, y := s.h.apply(a.mx, a.my)
		res = append(res, [2]float64{a.x - x, a.y - y})
	}
	h := s.h
	const d = 0.2 // sample offsets, in modules
	for j := 0; j < n; j++ {
		my := float64(j) + 0.5
		for i := 0; i < n; i++ {
			mx := float64(i) + 0.5
			// The map and its derivatives at the module's centre: the
			// offset points are the centre plus the derivatives times
			// (d, d) and (d, -d), either way.
			w := h[6]*mx + h[7]*my + h[8]
			bx, by := (h[0]*mx+h[1]*my+h[2])/w, (h[3]*mx+h[4]*my+h[5])/w
			xu, xv := (h[0]-bx*h[6])/w, (h[1]-bx*h[7])/w
			yu, yv := (h[3]-by*h[6])/w, (h[4]-by*h[7])/w
			ax, ay := d*(xu+xv), d*(yu+yv)
			cx2, cy2 := d*(xu-xv), d*(yu-yv)
			cx, cy := bx, by
			if len(s.anchors) > 4 {
				cx, cy = s.locate(mx, my, res)
			}
			sum := s.img.at(cx, cy)*2 + s.img.at(cx+ax, cy+ay) + s.img.at(cx-ax, cy-ay) +
				s.img.at(cx+cx2, cy+cy2) + s.img.at(cx-cx2, cy-cy2)
			vals[j*n+i] = uint16(sum*4/6 + 0.5)
		}
	}
}

// sampleLevels is the resolution of sampled module values: quarters of a
// grey level.
const sampleLevels = 1024

// thresholds sets thr2[k] to twice the threshold of module k (in the
// units of vals): midway between the dark and the light levels among the
// modules of its 7x7 neighbourhood, taken as low and high percentiles (the
// eighth from either end) to ignore outliers; or to -1 where the
// neighbourhood is flat (levels within 8 grey levels of each other), where
// the code's global threshold applies. The percentiles are exact, without
// sorting each window: a histogram slides along each row of modules, seven
// values in and seven out a step, two-level so that a percentile is found
// in at most 64 steps.
func thresholds(vals []uint16, n int, thr2 []int32) {
	const r = 3
	var fine [sampleLevels]int32
	var coarse [sampleLevels / 32]int32
	for j := 0; j < n; j++ {
		y0, y1 := max(0, j-r), min(n-1, j+r)
		for x := 0; x < min(n, r); x++ {
			for y := y0; y <= y1; y++ {
				v := vals[y*n+x]
				fine[v]++
				coarse[v>>5]++
			}
		}
		for i := 0; i < n; i++ {
			if x := i + r; x < n {
				for y := y0; y <= y1; y++ {
					v := vals[y*n+x]
					fine[v]++
					coarse[v>>5]++
				}
			}
			if x := i - r - 1; x >= 0 {
				for y := y0; y <= y1; y++ {
					v := vals[y*n+x]
					fine[v]--
					coarse[v>>5]--
				}
			}
			k := int32((y1 - y0 + 1) * (min(n-1, i+r) - max(0, i-r) + 1) / 8)
			// The k-th lowest level (from 0)...
			c, b := int32(0), 0
			for c+coarse[b] <= k {
				c += coarse[b]
				b++
			}
			lo := b << 5
			for c+fine[lo] <= k {
				c += fine[lo]
				lo++
			}
			// ...and the k-th highest.
			c, b = 0, len(coarse)-1
			for c+coarse[b] <= k {
				c += coarse[b]
				b--
			}
			hi := b<<5 | 31
			for c+fine[hi] <= k {
				c += fine[hi]
				hi--
			}
			if hi-lo < 8*4 { // a flat patch: trust a wider view
				thr2[j*n+i] = -1
			} else {
				thr2[j*n+i] = int32(lo + hi)
			}
		}
		// Empty the histogram for the next row: the columns still in it.
		for x := max(0, n-r-1); x < n; x++ {
			for y := y0; y <= y1; y++ {
				v := vals[y*n+x]
				fine[v]--
				coarse[v>>5]--
			}
		}
	}
}

// minTiming is the least share of timing modules right for a grid to be
// decoded (see timing).
const minTiming = 0.7

// timing returns the share of the timing patterns' modules (row and
// column 6, between the finder patterns' separators) that alternate as
// they must: each dark (even) module darker than the mean of its two
// neighbours, each light one lighter. Comparing neighbours needs no
// threshold, so a gradient of light across the code does not matter. On
// the development corpora every code read had 80 % or more right; a wrong
// dimension or a triple of look-alikes has about half.
func timing(vals []uint16, n int) float64 {
	right, all := 0, 0
	for i := 8; i < n-8; i++ {
		dark := i%2 == 0
		if row := 2 * int(vals[6*n+i]); (row < int(vals[6*n+i-1])+int(vals[6*n+i+1])) == dark {
			right++
		}
		if col := 2 * int(vals[i*n+6]); (col < int(vals[(i-1)*n+6])+int(vals[(i+1)*n+6])) == dark {
			right++
		}
		all += 2
	}
	if all == 0 {
		return 1
	}
	return float64(right) / float64(all)
}

// globalThreshold2 is twice the midpoint between the means of the darker
// and the lighter half of the values.
func globalThreshold2(vals []uint16) int {
	var hist [sampleLevels]int
	for _, v := range vals {
		hist[v]++
	}
	h := len(vals) / 2
	if h == 0 {
		return 0
	}
	var lo, hi, seen int
	for v, c := range hist {
		if c == 0 {
			continue
		}
		take := min(c, max(0, h-seen))
		lo += take * v
		hi += (c - take) * v
		seen += c
	}
	return int(math.Round(float64(lo)/float64(h) + float64(hi)/float64(len(vals)-h)))
}

// moduleBits thresholds the modules, each against its own threshold moved
// by bias grey levels (the global one where its neighbourhood is flat).
func moduleBits(vals []uint16, thr2 []int32, global2, n, bias int) *gozxing.BitMatrix {
	m, err := gozxing.NewSquareBitMatrix(n)
	if err != nil {
		return nil
	}
	for k, v := range vals {
		t := int(thr2[k])
		if t < 0 {
			t = global2
		}
		if 2*int(v) < t+8*bias {
			m.Set(k%n, k/n)
		}
	}
	return m
}

// dimensions returns the likely sizes of the code, in modules: first what
// the version information next to the top-right and bottom-left finder
// patterns says (versions 7 and up carry it, protected by a BCH code), then
// the estimate from the distances between the finder patterns, which blur
// and tilt bias, and its neighbours.
func dimensions(img grey, info *detector.FinderPatternInfo, module float64) []int {
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
	for _, d := range []int{versionDimension(img, tr, tl, bl, false), versionDimension(img, bl, tl, tr, true)} {
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
// the distance between the finder patterns agrees with it. Each bit is the
// grey level at its module's centre against the midpoint between the dark
// centre and the light ring of the finder pattern beside it. It returns
// the dimension, or 0.
func versionDimension(img grey, at, tl, other gozxing.ResultPoint, bottomLeft bool) int {
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
		grey := func(dx, dy float64) float64 {
			return img.at(at.GetX()+m*(dx*ux+dy*vx), at.GetY()+m*(dx*uy+dy*vy))
		}
		var dark, light float64
		for _, o := range [4][2]float64{{0, 1}, {1, 0}, {0, -1}, {-1, 0}} {
			dark += grey(o[0]/2, o[1]/2)
			light += grey(2*o[0], 2*o[1]) + grey(2*(o[0]+o[1]), 2*(o[1]-o[0]))
		}
		dark, light = (dark+grey(0, 0))/5, light/8
		if light-dark < 10 {
			continue
		}
		// The 18 modules, most significant first.
		var vals [18]float64
		k := 0
		if !bottomLeft {
			// Rows 5 down to 0, columns D-9 down to D-11 (ISO/IEC 18004
			// 7.10), as offsets from the finder's centre at (D-3.5, 3.5).
			for j := 5; j >= 0; j-- {
				for i := -5; i >= -7; i-- {
					vals[k] = grey(float64(i), float64(j)-3)
					k++
				}
			}
		} else {
			for i := 5; i >= 0; i-- {
				for j := -5; j >= -7; j-- {
					vals[k] = grey(float64(i)-3, float64(j))
					k++
				}
			}
		}
		// Thresholds: midway between the finder's dark centre and light
		// ring; the modules' own mean; midway between their extremes.
		// Blur lightens lone dark modules more than the finder's centre,
		// so no one threshold reads every code.
		var sum float64
		lo, hi := 255.0, 0.0
		for _, v := range vals {
			sum += v
			lo, hi = min(lo, v), max(hi, v)
		}
		version := 0
		for _, mid := range [3]float64{(dark + light) / 2, sum / 18, (lo + hi) / 2} {
			v := 0
			for _, g := range vals {
				v <<= 1
				if g < mid {
					v |= 1
				}
			}
			if version = versionFromBits(v); version > 0 {
				break
			}
		}
		if version == 0 {
			continue
		}
		d := 17 + 4*version
		if implied := dist / float64(d-7); math.Abs(implied/m-1) < 0.15 {
			return d
		}
	}
	return 0
}

// versionFromBits decodes 18 bits of version information: the version
// (7 to 40) whose BCH(18,6) code word is within 3 bits of v, or 0. (gozxing
// does the same, but builds an error with a stack trace for each miss,
// and the scanner tries many.)
func versionFromBits(v int) int {
	for i, code := range decoder.VERSION_DECODE_INFO {
		if bits.OnesCount32(uint32(v^code)) <= 3 {
			return i + 7
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
		if len(out) > 0 && sameInfo(out[0], t.info) {
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

func sameInfo(a, b *detector.FinderPatternInfo) bool {
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
func decodeTriple(img grey, info *detector.FinderPatternInfo, hints map[gozxing.DecodeHintType]any, over func() bool) (gridResult, bool) {
	module := (info.GetTopLeft().GetEstimatedModuleSize() + info.GetTopRight().GetEstimatedModuleSize() +
		info.GetBottomLeft().GetEstimatedModuleSize()) / 3
	dims := dimensions(img, info, module)
	for i, dim := range dims {
		if i > 0 && over() {
			break
		}
		s, ok := newGridSampler(img, info, dim)
		if !ok {
			continue
		}
		want, found := s.findAlignment()
		if want > 0 && 3*found < want {
			continue
		}
		vals := make([]uint16, dim*dim)
		s.sample(vals)
		// The code's one threshold first: it reads most codes, and costs
		// one histogram. Then each module against its neighbourhood's, at
		// three biases.
		global2 := globalThreshold2(vals)
		// Not the code's grid (a wrong dimension, or look-alikes): no
		// Reed-Solomon attempts.
		tm := timing(vals, dim)
		if tm < minTiming {
			continue
		}
		thr2 := make([]int32, dim*dim)
		for k := range thr2 {
			thr2[k] = -1 // the global threshold
		}
		for attempt, bias := range []int{0, 0, -8, 8} {
			if attempt == 1 {
				thresholds(vals, dim, thr2)
			}
			m := moduleBits(vals, thr2, global2, dim, bias)
			if m == nil {
				continue
			}
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
		if g, ok := decodeTriple(img, info, hints, over); ok {
			return g, true
		}
	}
	return gridResult{}, false
}
