// Package scanner turns camera frames and pictures into the texts of the QR
// codes in them.
//
// OpenCV (gocv) captures frames and does the image processing; gozxing
// decodes the module grid; the scanner's own finder search and grid
// sampler sit between them (docs/scanner.md). The daemon and checkpointctl
// import it.
package scanner

import (
	"fmt"
	"image"

	"gocv.io/x/gocv"
)

// DecodeImage returns the texts of the QR codes it finds in img, trying
// the still-image stages too: none when there is no readable code, which
// is an outcome and not an error.
func DecodeImage(img image.Image) ([]string, error) {
	var m gocv.Mat
	var err error
	if g, ok := img.(*image.Gray); ok {
		m, err = gocv.ImageGrayToMatGray(g)
	} else {
		m, err = gocv.ImageToMatRGB(img)
	}
	if err != nil {
		return nil, fmt.Errorf("scanner: %w", err)
	}
	defer m.Close()
	d := NewDecoder(DecoderOptions{Still: true})
	defer d.Close()
	var texts []string
	for _, r := range d.Decode(m) {
		texts = append(texts, r.Text)
	}
	return texts, nil
}
