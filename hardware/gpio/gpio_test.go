package gpio

import (
	"errors"
	"io/fs"
	"strings"
	"testing"

	"github.com/checkpointd/checkpoint/hardware/gate"
)

// The lines are the gate's pins.
var (
	_ gate.PinOut = (*Out)(nil)
	_ gate.PinIn  = (*In)(nil)
)

// TestOpenErrors: a missing chip, an unnamed chip and a negative offset are
// refused with an error naming the chip and the line; a missing chip's
// error is fs.ErrNotExist.
func TestOpenErrors(t *testing.T) {
	missing := "gpiochip-checkpoint-missing"
	tests := []struct {
		name     string
		chip     string
		offset   int
		want     []string
		notExist bool
	}{
		{"missing chip", missing, 4, []string{missing, "line 4"}, true},
		{"missing path", "/dev/" + missing, 0, []string{"/dev/" + missing, "line 0"}, true},
		{"no chip", "", 1, []string{"no chip named"}, false},
		{"negative offset", "gpiochip0", -1, []string{"gpiochip0", "negative line offset -1"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := Output(tt.chip, tt.offset, false, false)
			if out != nil || err == nil {
				t.Fatalf("Output(%q, %d) = %v, %v; want an error", tt.chip, tt.offset, out, err)
			}
			checkErr(t, "Output", err, tt.want, tt.notExist)
			in, err := Input(tt.chip, tt.offset, true)
			if in != nil || err == nil {
				t.Fatalf("Input(%q, %d) = %v, %v; want an error", tt.chip, tt.offset, in, err)
			}
			checkErr(t, "Input", err, tt.want, tt.notExist)
		})
	}
}

func checkErr(t *testing.T, fn string, err error, want []string, notExist bool) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%s: %q does not say %q", fn, err, w)
		}
	}
	if errors.Is(err, fs.ErrNotExist) != notExist {
		t.Errorf("%s: errors.Is(%q, fs.ErrNotExist) = %v, want %v", fn, err, !notExist, notExist)
	}
}
