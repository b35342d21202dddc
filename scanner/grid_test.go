package scanner

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/makiuchi-d/gozxing/qrcode/decoder"
)

// thresholdsBySorting is the definition thresholds implements: each 7x7
// window sorted.
func thresholdsBySorting(vals []uint16, n int) []int32 {
	out := make([]int32, n*n)
	for j := 0; j < n; j++ {
		for i := 0; i < n; i++ {
			var w []uint16
			for y := max(0, j-3); y <= min(n-1, j+3); y++ {
				for x := max(0, i-3); x <= min(n-1, i+3); x++ {
					w = append(w, vals[y*n+x])
				}
			}
			slices.Sort(w)
			k := len(w) / 8
			lo, hi := int(w[k]), int(w[len(w)-1-k])
			if hi-lo < 32 {
				out[j*n+i] = -1
			} else {
				out[j*n+i] = int32(lo + hi)
			}
		}
	}
	return out
}

func TestThresholds(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct {
		name string
		n    int
		gen  func(i, j int) uint16
	}{
		{"noise", 21, func(i, j int) uint16 { return uint16(r.IntN(sampleLevels)) }},
		{"two levels", 25, func(i, j int) uint16 { return uint16(100 + 600*r.IntN(2) + r.IntN(20)) }},
		{"flat", 21, func(i, j int) uint16 { return uint16(500 + r.IntN(8)) }},
		{"gradient", 33, func(i, j int) uint16 { return uint16(20*i+5*j+300*r.IntN(2)) % sampleLevels }},
		{"flat and coded halves", 65, func(i, j int) uint16 {
			if i < 30 {
				return 700
			}
			return uint16(80 + 700*r.IntN(2))
		}},
		{"extremes", 21, func(i, j int) uint16 { return uint16((sampleLevels - 1) * r.IntN(2)) }},
		{"largest", 177, func(i, j int) uint16 { return uint16(r.IntN(sampleLevels)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vals := make([]uint16, tc.n*tc.n)
			for j := 0; j < tc.n; j++ {
				for i := 0; i < tc.n; i++ {
					vals[j*tc.n+i] = tc.gen(i, j)
				}
			}
			got := make([]int32, len(vals))
			thresholds(vals, tc.n, got)
			want := thresholdsBySorting(vals, tc.n)
			for k := range want {
				if got[k] != want[k] {
					t.Fatalf("module (%d, %d): threshold %d, want %d", k%tc.n, k/tc.n, got[k], want[k])
				}
			}
		})
	}
}

func TestVersionFromBits(t *testing.T) {
	for v := 7; v <= 40; v++ {
		code := decoder.VERSION_DECODE_INFO[v-7]
		for _, tc := range []struct {
			name string
			flip int
		}{{"clean", 0}, {"one error", 1 << 3}, {"three errors", 1<<0 | 1<<9 | 1<<17}} {
			if got := versionFromBits(code ^ tc.flip); got != v {
				t.Errorf("version %d, %s: got %d", v, tc.name, got)
			}
		}
	}
	if got := versionFromBits(0); got != 0 {
		t.Errorf("no version information decoded as version %d", got)
	}
}

// TestRatioOK compares the integer test with its definition in floating
// point, on every run length up to 12.
func TestRatioOK(t *testing.T) {
	ref := func(s [5]int) bool {
		total := s[0] + s[1] + s[2] + s[3] + s[4]
		if total < 7 {
			return false
		}
		m := float64(total) / 7
		v := m / 1.5
		return math.Abs(m-float64(s[0])) < v && math.Abs(m-float64(s[1])) < v &&
			math.Abs(3*m-float64(s[2])) < 3*v && math.Abs(m-float64(s[3])) < v && math.Abs(m-float64(s[4])) < v
	}
	var s [5]int
	for a := 1; a <= 12; a++ {
		for b := 1; b <= 12; b++ {
			for c := 1; c <= 36; c++ {
				for d := 1; d <= 12; d++ {
					for e := 1; e <= 12; e++ {
						s = [5]int{a, b, c, d, e}
						if got, want := ratioOK(&s), ref(s); got != want {
							t.Fatalf("%v: %v, want %v", s, got, want)
						}
					}
				}
			}
		}
	}
}

// BenchmarkThresholds: the local thresholds of a version-12 code's 4,225
// modules. About 0.19 ms on one core of the development machine; sorting
// each window, as before, took 5 ms.
func BenchmarkThresholds(b *testing.B) {
	const n = 65
	r := rand.New(rand.NewPCG(1, 2))
	vals := make([]uint16, n*n)
	for k := range vals {
		vals[k] = uint16(100 + 600*r.IntN(2) + r.IntN(40))
	}
	thr := make([]int32, n*n)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		thresholds(vals, n, thr)
	}
}
