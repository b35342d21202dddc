package qrcode

import (
	"strings"
	"testing"

	"github.com/checkpointd/checkpoint/scanner"
)

func TestImageDecodesBack(t *testing.T) {
	for _, text := range []string{"CP1:HELLO", "CP1:" + strings.Repeat("A1 $%*+-./:", 38)} {
		for _, module := range []int{2, 5} {
			img, err := Image(text, module)
			if err != nil {
				t.Fatal(err)
			}
			got, err := scanner.DecodeImage(img)
			if err != nil || len(got) != 1 || got[0] != text {
				t.Errorf("module %d: decoded %q, %v", module, got, err)
			}
		}
	}
}

func TestVersion(t *testing.T) {
	// Level M alphanumeric capacities: version 1 holds 20 characters,
	// version 12 holds 419.
	for n, want := range map[int]int{20: 1, 21: 2, 419: 12, 420: 13} {
		v, err := Version(strings.Repeat("A", n))
		if err != nil || v != want {
			t.Errorf("Version(%d characters) = %d, %v; want %d", n, v, err, want)
		}
	}
}
