// Package qrcode renders QR text as a QR code image, at error-correction
// level M as docs/credential.md requires, through gozxing's encoder.
//
// cmd/holder uses it to show presentations; tests and the demo use it to
// make pictures of codes. Decoding is the scanner package's job.
package qrcode

import (
	"fmt"
	"image"
	"image/color"

	"github.com/makiuchi-d/gozxing/qrcode/decoder"
	"github.com/makiuchi-d/gozxing/qrcode/encoder"
)

// QuietZone is the white margin around a code, in modules, that the QR
// standard asks for.
const QuietZone = 4

// Version returns the QR version (1 to 40) that text needs at level M.
func Version(text string) (int, error) {
	q, err := encoder.Encoder_encodeWithoutHint(text, decoder.ErrorCorrectionLevel_M)
	if err != nil {
		return 0, fmt.Errorf("qrcode: %w", err)
	}
	return q.GetVersion().GetVersionNumber(), nil
}

// Image renders text at level M with each module a square of moduleSize
// pixels and a quiet zone around it: black on white, as a phone shows it.
func Image(text string, moduleSize int) (*image.Gray, error) {
	if moduleSize < 1 {
		return nil, fmt.Errorf("qrcode: module size %d", moduleSize)
	}
	q, err := encoder.Encoder_encodeWithoutHint(text, decoder.ErrorCorrectionLevel_M)
	if err != nil {
		return nil, fmt.Errorf("qrcode: %w", err)
	}
	m := q.GetMatrix()
	n := m.GetWidth()
	side := (n + 2*QuietZone) * moduleSize
	img := image.NewGray(image.Rect(0, 0, side, side))
	for i := range img.Pix {
		img.Pix[i] = 0xff
	}
	for y := 0; y < n; y++ {
		for x := 0; x < n; x++ {
			if m.Get(x, y) != 1 {
				continue
			}
			x0, y0 := (x+QuietZone)*moduleSize, (y+QuietZone)*moduleSize
			for dy := 0; dy < moduleSize; dy++ {
				for dx := 0; dx < moduleSize; dx++ {
					img.SetGray(x0+dx, y0+dy, color.Gray{})
				}
			}
		}
	}
	return img, nil
}
