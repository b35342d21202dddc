// Package scanner turns pictures into the texts of the QR codes in them.
//
// It decodes with gozxing. DecodeImage reads one still image, as
// checkpointctl does for an image file; camera capture and the decoding
// cascade for live frames build on it. The daemon and checkpointctl import
// it.
package scanner

import (
	"errors"
	"fmt"
	"image"

	"github.com/makiuchi-d/gozxing"
	"github.com/makiuchi-d/gozxing/qrcode"
)

// DecodeImage returns the texts of the QR codes it finds in img: none when
// there is no readable code, which is an outcome and not an error.
func DecodeImage(img image.Image) ([]string, error) {
	bmp, err := gozxing.NewBinaryBitmapFromImage(img)
	if err != nil {
		return nil, fmt.Errorf("scanner: %w", err)
	}
	hints := map[gozxing.DecodeHintType]any{gozxing.DecodeHintType_TRY_HARDER: true}
	res, err := qrcode.NewQRCodeReader().Decode(bmp, hints)
	if err != nil {
		var nf gozxing.NotFoundException
		var fe gozxing.FormatException
		var ce gozxing.ChecksumException
		if errors.As(err, &nf) || errors.As(err, &fe) || errors.As(err, &ce) {
			return nil, nil
		}
		return nil, fmt.Errorf("scanner: %w", err)
	}
	return []string{res.GetText()}, nil
}
