package lines

import (
	"encoding/binary"
	"strconv"
)

// An input device is read as struct input_event records: a struct
// timeval (two C longs: 16 bytes on 64-bit Linux, 8 on 32-bit), then type
// (u16), code (u16) and value (s32), in the machine's byte order.
const recordSize = 2*strconv.IntSize/8 + 8

// Event types, values and key codes of linux/input-event-codes.h.
const (
	evKey         = 1
	keyPress      = 1 // 0 is a release, 2 an autorepeat
	keyEnter      = 28
	keyLeftShift  = 42
	keyRightShift = 54
	keyKPEnter    = 96
)

// usKeys gives each key that types a character on a US layout that
// character, without and with shift. The keypad types the same either way
// (Num Lock on, as scanners expect).
var usKeys = map[uint16][2]byte{
	2: {'1', '!'}, 3: {'2', '@'}, 4: {'3', '#'}, 5: {'4', '$'}, 6: {'5', '%'},
	7: {'6', '^'}, 8: {'7', '&'}, 9: {'8', '*'}, 10: {'9', '('}, 11: {'0', ')'},
	12: {'-', '_'}, 13: {'=', '+'},
	16: {'q', 'Q'}, 17: {'w', 'W'}, 18: {'e', 'E'}, 19: {'r', 'R'}, 20: {'t', 'T'},
	21: {'y', 'Y'}, 22: {'u', 'U'}, 23: {'i', 'I'}, 24: {'o', 'O'}, 25: {'p', 'P'},
	26: {'[', '{'}, 27: {']', '}'},
	30: {'a', 'A'}, 31: {'s', 'S'}, 32: {'d', 'D'}, 33: {'f', 'F'}, 34: {'g', 'G'},
	35: {'h', 'H'}, 36: {'j', 'J'}, 37: {'k', 'K'}, 38: {'l', 'L'},
	39: {';', ':'}, 40: {'\'', '"'}, 41: {'`', '~'}, 43: {'\\', '|'},
	44: {'z', 'Z'}, 45: {'x', 'X'}, 46: {'c', 'C'}, 47: {'v', 'V'}, 48: {'b', 'B'},
	49: {'n', 'N'}, 50: {'m', 'M'},
	51: {',', '<'}, 52: {'.', '>'}, 53: {'/', '?'},
	57: {' ', ' '},
	// the keypad
	71: {'7', '7'}, 72: {'8', '8'}, 73: {'9', '9'},
	75: {'4', '4'}, 76: {'5', '5'}, 77: {'6', '6'},
	79: {'1', '1'}, 80: {'2', '2'}, 81: {'3', '3'},
	82: {'0', '0'}, 83: {'.', '.'},
	55: {'*', '*'}, 74: {'-', '-'}, 78: {'+', '+'}, 98: {'/', '/'},
}

// keyDecoder turns a keyboard's input_event records into lines.
type keyDecoder struct {
	rec   [recordSize]byte
	n     int     // bytes of the current record so far
	shift [2]bool // left and right shift held
	line  []byte
	bad   bool // the line has a key that types nothing, or is too long
}

func (d *keyDecoder) feed(p []byte, emit func([]byte, bool)) {
	for len(p) > 0 {
		c := copy(d.rec[d.n:], p)
		d.n += c
		p = p[c:]
		if d.n < recordSize {
			return
		}
		d.n = 0
		typ := binary.NativeEndian.Uint16(d.rec[recordSize-8:])
		code := binary.NativeEndian.Uint16(d.rec[recordSize-6:])
		value := int32(binary.NativeEndian.Uint32(d.rec[recordSize-4:]))
		if typ == evKey {
			d.key(code, value, emit)
		}
	}
}

// key takes one key event: shift changes, and presses; releases and
// autorepeats of other keys are left out.
func (d *keyDecoder) key(code uint16, value int32, emit func([]byte, bool)) {
	switch {
	case code == keyLeftShift:
		d.shift[0] = value != 0
	case code == keyRightShift:
		d.shift[1] = value != 0
	case value != keyPress:
	case code == keyEnter || code == keyKPEnter:
		if d.bad {
			emit(nil, false)
		} else if len(d.line) > 0 {
			emit(d.line, true)
		}
		d.line, d.bad = d.line[:0], false
	default:
		c, ok := usKeys[code]
		switch {
		case !ok || len(d.line) >= MaxLine:
			d.bad = true
		case d.shift[0] || d.shift[1]:
			d.line = append(d.line, c[1])
		default:
			d.line = append(d.line, c[0])
		}
	}
}

func (d *keyDecoder) pending() bool { return d.n > 0 || len(d.line) > 0 || d.bad }
