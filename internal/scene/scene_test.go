package scene

import (
	"bytes"
	"image"
	"math"
	"testing"
)

// TestRenderIsDeterministicAndTrue: a frame is the same every time its
// parameters are, and its truth puts the code where CodeCorners says,
// inside the frame; a frame without a code has no corners.
func TestRenderIsDeterministicAndTrue(t *testing.T) {
	for _, c := range Corpus(7, 1, 1, CodeText) {
		t.Run(c.Name, func(t *testing.T) {
			m1, truth, err := Render(c.Params)
			if err != nil {
				t.Fatal(err)
			}
			defer m1.Close()
			m2, _, err := Render(c.Params)
			if err != nil {
				t.Fatal(err)
			}
			defer m2.Close()
			if m1.Cols() != Width || m1.Rows() != Height || !bytes.Equal(m1.ToBytes(), m2.ToBytes()) {
				t.Fatalf("two renderings differ (or are not %dx%d)", Width, Height)
			}
			if c.Params.Text == "" {
				if truth.Corners != ([4]image.Point{}) {
					t.Errorf("a frame without a code has corners %v", truth.Corners)
				}
				return
			}
			want := CodeCorners(c.Params)
			frame := image.Rect(0, 0, Width+1, Height+1)
			for i, p := range truth.Corners {
				if !p.In(frame) || math.Abs(float64(p.X)-want[i][0]) > 1 || math.Abs(float64(p.Y)-want[i][1]) > 1 {
					t.Errorf("corner %d at %v; CodeCorners says %v, the frame is %v", i, p, want[i], frame)
				}
			}
		})
	}
}
