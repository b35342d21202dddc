package hardwaretest

import (
	"encoding/binary"
	"fmt"
	"io"
	"strconv"
)

// OpenLines is Open for line readers (a lines.Opener).
func (o *Opener) OpenLines(device string, baud int) (io.ReadCloser, error) {
	return o.Open(device, baud)
}

// Event types and key codes of linux/input-event-codes.h, for KeyEvent.
const (
	EvSyn         = 0
	EvKey         = 1
	KeyEnter      = 28
	KeyLeftShift  = 42
	KeyRightShift = 54
	KeyKPEnter    = 96
)

// usRows is a US keyboard's rows of characters: the code of the first key
// of each row, then what its keys type without and with shift.
var usRows = []struct {
	first          uint16
	plain, shifted string
}{
	{2, "1234567890-=", "!@#$%^&*()_+"},
	{16, "qwertyuiop[]", "QWERTYUIOP{}"},
	{30, "asdfghjkl;'`", "ASDFGHJKL:\"~"},
	{43, "\\zxcvbnm,./", "|ZXCVBNM<>?"},
	{57, " ", " "},
}

// KeyEvent returns one input_event record of the machine's layout (a
// zero timestamp): 24 bytes on 64-bit Linux, 16 on 32-bit.
func KeyEvent(typ, code uint16, value int32) []byte {
	b := make([]byte, 2*strconv.IntSize/8+8)
	n := len(b) - 8
	binary.NativeEndian.PutUint16(b[n:], typ)
	binary.NativeEndian.PutUint16(b[n+2:], code)
	binary.NativeEndian.PutUint32(b[n+4:], uint32(value))
	return b
}

// Typed returns the input_event records a US keyboard, or a scanner that
// acts as one, sends to type text and press Enter: for each character
// shift pressed if it needs it, the key pressed and released, shift
// released, each followed by a sync report. It panics on a character
// such a keyboard cannot type.
func Typed(text string) []byte {
	var b []byte
	press := func(code uint16) {
		b = append(b, KeyEvent(EvKey, code, 1)...)
		b = append(b, KeyEvent(EvSyn, 0, 0)...)
		b = append(b, KeyEvent(EvKey, code, 0)...)
		b = append(b, KeyEvent(EvSyn, 0, 0)...)
	}
	for _, c := range text {
		code, shift := keyFor(c)
		if shift {
			b = append(b, KeyEvent(EvKey, KeyLeftShift, 1)...)
		}
		press(code)
		if shift {
			b = append(b, KeyEvent(EvKey, KeyLeftShift, 0)...)
		}
	}
	press(KeyEnter)
	return b
}

// keyFor finds the key that types c on a US keyboard, and whether it
// takes shift.
func keyFor(c rune) (code uint16, shift bool) {
	for _, row := range usRows {
		for i, p := range row.plain {
			switch c {
			case p:
				return row.first + uint16(i), false
			case rune(row.shifted[i]):
				return row.first + uint16(i), true
			}
		}
	}
	panic(fmt.Sprintf("no key types %q", c))
}
