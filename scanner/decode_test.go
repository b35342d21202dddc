package scanner

import (
	"image"
	"testing"
)

func TestDecodeImageWithoutCode(t *testing.T) {
	img := image.NewGray(image.Rect(0, 0, 320, 240))
	for i := range img.Pix {
		img.Pix[i] = uint8(i * 7)
	}
	texts, err := DecodeImage(img)
	if err != nil || len(texts) != 0 {
		t.Fatalf("DecodeImage(noise) = %v, %v; want no texts and no error", texts, err)
	}
}
