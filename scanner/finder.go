package scanner

import (
	"bytes"
	"math"
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
// module: blur widens the dark runs and narrows the light ones.
func ratioOK(s *[5]int) bool {
	total := s[0] + s[1] + s[2] + s[3] + s[4]
	if total < 7 {
		return false
	}
	m := float64(total) / 7
	v := m / 1.5
	return math.Abs(m-float64(s[0])) < v && math.Abs(m-float64(s[1])) < v &&
		math.Abs(3*m-float64(s[2])) < 3*v && math.Abs(m-float64(s[3])) < v && math.Abs(m-float64(s[4])) < v
}

// findFinders scans every row of b and returns the candidates it
// confirms. b holds only 0 and 255, so runs are found with
// bytes.IndexByte, which is vectorised, rather than pixel by pixel.
func findFinders(b binImage) []finder {
	var found []finder
	var starts, lens []int // runs of the current row; runs alternate dark and light
	for y := 0; y < b.h; y++ {
		row := b.pix[y*b.w : (y+1)*b.w]
		starts, lens = starts[:0], lens[:0]
		firstDark := row[0] == 0
		for x := 0; x < len(row); {
			next := 0
			if row[x] == 0 {
				next = bytes.IndexByte(row[x:], 255)
			} else {
				next = bytes.IndexByte(row[x:], 0)
			}
			if next < 0 {
				next = len(row) - x
			}
			starts = append(starts, x)
			lens = append(lens, next)
			x += next
		}
		// Windows of five runs starting on a dark one.
		i := 0
		if !firstDark {
			i = 1
		}
		for ; i+4 < len(lens); i += 2 {
			s := [5]int{lens[i], lens[i+1], lens[i+2], lens[i+3], lens[i+4]}
			if !ratioOK(&s) {
				continue
			}
			if f, ok := b.confirm(&s, y, starts[i+4]+lens[i+4]); ok {
				found = merge(found, f)
				i += 2 // the pattern's last dark run cannot start another
			}
		}
	}
	return found
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
// place and of about the same size.
func merge(list []finder, f finder) []finder {
	for i := range list {
		g := &list[i]
		if math.Abs(f.x-g.x) <= g.module && math.Abs(f.y-g.y) <= g.module &&
			(math.Abs(f.module-g.module) <= 1 || math.Abs(f.module-g.module) <= 0.25*g.module) {
			n := float64(g.count)
			g.x = (g.x*n + f.x) / (n + 1)
			g.y = (g.y*n + f.y) / (n + 1)
			g.module = (g.module*n + f.module) / (n + 1)
			g.count++
			return list
		}
	}
	return append(list, f)
}
