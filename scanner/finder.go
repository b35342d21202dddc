package scanner

import (
	"bytes"
	"encoding/binary"
	"image"
	"math"
	"math/bits"
)

// This file finds QR finder patterns (the three 7x7 squares in the
// corners) in a binarized frame held as bytes, 0 for dark and anything else
// for light, the way OpenCV's adaptive threshold leaves it. It is ZXing's
// method (rows crossing a dark:light:dark:light:dark run of 1:1:3:1:1,
// checked vertically, horizontally again and diagonally) without ZXing's
// shortcuts, reading bytes rather than gozxing's bit matrix: turning a
// frame into a bit matrix costs more than the whole search.

// finder is a finder pattern candidate.
type finder struct {
	x, y   float64 // centre, pixels
	module float64 // estimated module size, pixels
	count  int     // rows that found it
}

type binImage struct {
	pix  []byte
	w, h int
}

func (b binImage) dark(x, y int) bool { return b.pix[y*b.w+x] == 0 }

// ratioOK tests five run lengths for 1:1:3:1:1, with a tolerance of half a
// module: blur widens the dark runs and narrows the light ones. With m the
// module (total/7), each outer run must be within m/1.5 of m and the
// centre within 2m of 3m; multiplied out by 21 so that it is exact in
// integers.
func ratioOK(s *[5]int) bool {
	total := s[0] + s[1] + s[2] + s[3] + s[4]
	if total < 7 {
		return false
	}
	d := func(k, v int) int { // 21 |k*m - v|
		if e := 3*k*total - 21*v; e >= 0 {
			return e
		} else {
			return -e
		}
	}
	lim := 2 * total // 21 * m/1.5
	return d(1, s[0]) < lim && d(1, s[1]) < lim && d(3, s[2]) < 3*lim && d(1, s[3]) < lim && d(1, s[4]) < lim
}

// gate is a coarse map of where an image has contrast: a finder pattern
// is dark and light within a few pixels, so it lies where the map is set.
// Flat areas are skipped by the finder search: there the threshold only
// turns sensor noise into specks, which cost time and find nothing. Cell
// (x>>shift, y>>shift) covers pixel (x, y) of the searched image.
type gate struct {
	pix   []byte // 0 flat, anything else contrast
	w, h  int
	shift int
}

// clear marks flat the cells whose centres lie within the quadrilateral q
// (corners in order, either way round) grown by margin pixels, in the
// coordinates of the image the gate serves.
func (g *gate) clear(q [4]image.Point, margin float64) {
	if g == nil {
		return
	}
	// The quadrilateral grown about its centre.
	var cx, cy float64
	for _, p := range q {
		cx, cy = cx+float64(p.X)/4, cy+float64(p.Y)/4
	}
	var pts [4][2]float64
	lo, hi := [2]float64{math.Inf(1), math.Inf(1)}, [2]float64{math.Inf(-1), math.Inf(-1)}
	for i, p := range q {
		dx, dy := float64(p.X)-cx, float64(p.Y)-cy
		l := math.Hypot(dx, dy)
		if l == 0 {
			return
		}
		k := (l + margin*math.Sqrt2) / l
		pts[i] = [2]float64{cx + dx*k, cy + dy*k}
		lo = [2]float64{min(lo[0], pts[i][0]), min(lo[1], pts[i][1])}
		hi = [2]float64{max(hi[0], pts[i][0]), max(hi[1], pts[i][1])}
	}
	cell := float64(int(1) << g.shift)
	inside := func(x, y float64) bool {
		pos, neg := false, false
		for i := range pts {
			a, b := pts[i], pts[(i+1)%4]
			c := (b[0]-a[0])*(y-a[1]) - (b[1]-a[1])*(x-a[0])
			pos, neg = pos || c > 0, neg || c < 0
		}
		return !(pos && neg)
	}
	for y := max(0, int(lo[1]/cell)); y <= min(g.h-1, int(hi[1]/cell)); y++ {
		for x := max(0, int(lo[0]/cell)); x <= min(g.w-1, int(hi[0]/cell)); x++ {
			if inside((float64(x)+0.5)*cell, (float64(y)+0.5)*cell) {
				g.pix[y*g.w+x] = 0
			}
		}
	}
}

// spans calls f with the column ranges [x0, x1) of row y (of an image w
// wide) that the gate marks as having contrast; no gate is one span.
func (g *gate) spans(y, w int, f func(x0, x1 int)) {
	if g == nil {
		f(0, w)
		return
	}
	row := g.pix[min(y>>g.shift, g.h-1)*g.w:][:g.w]
	for c := 0; c < g.w; {
		i := bytes.IndexByte(row[c:], 255)
		if i < 0 {
			return
		}
		c += i
		j := bytes.IndexByte(row[c:], 0)
		if j < 0 {
			j = g.w - c
		}
		x0, x1 := c<<g.shift, (c+j)<<g.shift
		if c+j == g.w {
			x1 = w // the last cell covers what the rounding down left
		}
		f(x0, min(x1, w))
		c += j
	}
}

// bounds returns the smallest rectangle, in the coordinates of the image
// (w by h) the gate serves, that holds every cell marked as having
// contrast; it is empty when there is none.
func (g *gate) bounds(w, h int) image.Rectangle {
	if g == nil {
		return image.Rect(0, 0, w, h)
	}
	x0, y0, x1, y1 := g.w, g.h, -1, -1
	for y := 0; y < g.h; y++ {
		row := g.pix[y*g.w : (y+1)*g.w]
		first := bytes.IndexByte(row, 255)
		if first < 0 {
			continue
		}
		last := bytes.LastIndexByte(row, 255)
		x0, x1, y0, y1 = min(x0, first), max(x1, last), min(y0, y), max(y1, y)
	}
	if x1 < 0 {
		return image.Rectangle{}
	}
	r := image.Rect(x0<<g.shift, y0<<g.shift, (x1+1)<<g.shift, (y1+1)<<g.shift)
	if x1 == g.w-1 {
		r.Max.X = w
	}
	if y1 == g.h-1 {
		r.Max.Y = h
	}
	return r.Intersect(image.Rect(0, 0, w, h))
}

// findFinders scans every row of b, within the gate's spans (all of it
// when g is nil), and returns the candidates it confirms. b is the part
// of a larger image whose top-left corner is at o, which the gate serves.
// b holds only 0 and 255, so the edges between runs are found eight
// pixels at a time.
func findFinders(b binImage, g *gate, o image.Point) []finder {
	var found []finder
	for y := 0; y < b.h; y++ {
		row := b.pix[y*b.w : (y+1)*b.w]
		g.spans(y+o.Y, o.X+b.w, func(x0, x1 int) {
			x0, x1 = max(0, x0-o.X), min(b.w, x1-o.X)
			if x0 < x1 {
				found = b.scanRow(row, y, x0, x1, found)
			}
		})
	}
	return found
}

// scanRow looks for 1:1:3:1:1 runs in row[x0:x1], pixels outside it taken
// as light, and confirms each hit. The last five runs are kept in
// variables (r4 the newest), with their total, and tested in line: this
// loop runs for every edge of every row searched.
func (b binImage) scanRow(row []byte, y, x0, x1 int, found []finder) []finder {
	var r0, r1, r2, r3, r4, total int // r0 is 0 until five runs have ended: the test rejects it
	start := x0
	dark := row[x0] == 0
	skip := false // the last dark run ended a confirmed pattern
	x := x0 + 1   // the next pixel to read
	var e uint64  // edges of the word at base still to visit: byte k set where pixel base+k differs from the one before
	base := 0
	prev := uint64(row[x0])
	for {
		var at int // the next edge
		switch {
		case e != 0:
			k := bits.TrailingZeros64(e) &^ 7
			e &^= 0xff << k
			at = base + k>>3
		case x+8 <= x1:
			w := binary.LittleEndian.Uint64(row[x:])
			e, prev, base = w^(w<<8|prev), w>>56, x
			x += 8
			continue
		case x < x1:
			if (row[x] == 0) == dark {
				x++
				continue
			}
			at = x
			x++
		case dark:
			at = x1 // the span's end ends a dark run
		default:
			return found
		}
		l := at - start
		total += l - r0
		r0, r1, r2, r3, r4 = r1, r2, r3, r4, l
		start = at
		if dark {
			// ratioOK, in line.
			t3, lim := 3*total, 2*total
			switch {
			case skip:
				skip = false // the pattern's last dark run cannot start another
			case total >= 7 && abs(t3-21*r0) < lim && abs(t3-21*r1) < lim && abs(3*t3-21*r2) < 3*lim &&
				abs(t3-21*r3) < lim && abs(t3-21*r4) < lim:
				runs := [5]int{r0, r1, r2, r3, r4}
				if f, ok := b.confirm(&runs, y, at); ok {
					found = merge(found, f)
					skip = true
				}
			}
			if at == x1 {
				return found
			}
		}
		dark = !dark
	}
}

// confirm checks a horizontal hit ending at column end of row y vertically,
// horizontally at the vertical centre, and along a diagonal.
func (b binImage) confirm(s *[5]int, y, end int) (finder, bool) {
	total := s[0] + s[1] + s[2] + s[3] + s[4]
	cx := float64(end-s[4]-s[3]) - float64(s[2])/2
	cy, vt, ok := b.crossCheck(int(cx), y, 0, 1, s[2], total)
	if !ok {
		return finder{}, false
	}
	cx2, ht, ok := b.crossCheck(int(cx), int(cy), 1, 0, s[2], total)
	if !ok {
		return finder{}, false
	}
	if _, _, ok := b.crossCheck(int(cx2), int(cy), 1, 1, s[2], total); !ok {
		return finder{}, false
	}
	return finder{x: cx2, y: cy, module: float64(vt+ht) / 14, count: 1}, true
}

// crossCheck walks from (x, y) both ways along (dx, dy) through the
// pattern's five runs and returns the centre of the middle run along the
// walk (y for a vertical walk, x for a horizontal one, in pixel-edge
// coordinates) and the total length of the runs. Each outer run may be at
// most twice the centre run seen on the first row, as in ZXing.
func (b binImage) crossCheck(x, y, dx, dy, centre, total int) (float64, int, bool) {
	in := func(x, y int) bool { return x >= 0 && y >= 0 && x < b.w && y < b.h }
	if !in(x, y) || !b.dark(x, y) {
		return 0, 0, false
	}
	var s [5]int
	maxCount := 2 * centre
	// Backwards: the centre's dark run, then light, then dark.
	i, j := x, y
	for in(i, j) && b.dark(i, j) {
		s[2]++
		i, j = i-dx, j-dy
	}
	lo := i + dx // first dark pixel of the centre run, along x...
	loY := j + dy
	for in(i, j) && !b.dark(i, j) && s[1] <= maxCount {
		s[1]++
		i, j = i-dx, j-dy
	}
	if !in(i, j) || s[1] > maxCount {
		return 0, 0, false
	}
	for in(i, j) && b.dark(i, j) && s[0] <= maxCount {
		s[0]++
		i, j = i-dx, j-dy
	}
	if s[0] > maxCount {
		return 0, 0, false
	}
	// Forwards.
	i, j = x+dx, y+dy
	for in(i, j) && b.dark(i, j) {
		s[2]++
		i, j = i+dx, j+dy
	}
	for in(i, j) && !b.dark(i, j) && s[3] <= maxCount {
		s[3]++
		i, j = i+dx, j+dy
	}
	if !in(i, j) || s[3] > maxCount {
		return 0, 0, false
	}
	for in(i, j) && b.dark(i, j) && s[4] <= maxCount {
		s[4]++
		i, j = i+dx, j+dy
	}
	if s[4] > maxCount || s[0] == 0 || s[4] == 0 {
		return 0, 0, false
	}
	t := s[0] + s[1] + s[2] + s[3] + s[4]
	// Two scans of one pattern must roughly agree on its size: a
	// diagonal crosses a square pattern up to 1.41 times longer than a row
	// does, and a tilted code shortens one axis.
	if 2*t < total || t > 2*total || !ratioOK(&s) {
		return 0, 0, false
	}
	if dy == 0 {
		return float64(lo) + float64(s[2])/2, t, true
	}
	return float64(loY) + float64(s[2])/2, t, true
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

// merge adds f to the list, combining it with a candidate at the same
// place and of about the same size, each weighted by the rows that found
// it.
func merge(list []finder, f finder) []finder {
	fc := float64(max(f.count, 1))
	for i := range list {
		g := &list[i]
		if math.Abs(f.x-g.x) <= g.module && math.Abs(f.y-g.y) <= g.module &&
			(math.Abs(f.module-g.module) <= 1 || math.Abs(f.module-g.module) <= 0.25*g.module) {
			n := float64(g.count)
			g.x = (g.x*n + f.x*fc) / (n + fc)
			g.y = (g.y*n + f.y*fc) / (n + fc)
			g.module = (g.module*n + f.module*fc) / (n + fc)
			g.count += int(fc)
			return list
		}
	}
	return append(list, f)
}
