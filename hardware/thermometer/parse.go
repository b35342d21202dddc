package thermometer

import (
	"bytes"
	"encoding/binary"
	"regexp"
	"strconv"

	"github.com/checkpointd/checkpoint/hardware/internal/devio"
)

// maxLine is the longest text line a thermometer may send; a longer one
// is garbage.
const maxLine = 256

// value is a reading as the device gave it, before it is stamped.
type value struct {
	body, amb float64
	hasAmb    bool
}

// decoder turns a thermometer's bytes into values.
type decoder interface {
	// feed parses p and calls emit with each value, in order, or with ok
	// false for each piece of garbage.
	feed(p []byte, emit func(v value, ok bool))
	// pending reports whether part of a line or frame has been read.
	pending() bool
}

// lineDecoder reads the text protocols: one reading a line, parsed as a
// number ("line") or with a pattern ("pattern").
type lineDecoder struct {
	split devio.Splitter
	parse func(line []byte) (value, bool)
}

func newLineDecoder(parse func([]byte) (value, bool)) *lineDecoder {
	return &lineDecoder{split: devio.Splitter{Max: maxLine}, parse: parse}
}

func (d *lineDecoder) feed(p []byte, emit func(value, bool)) {
	d.split.Split(p, func(line []byte, ok bool) {
		if !ok {
			emit(value{}, false)
			return
		}
		emit(d.parse(line))
	})
}

func (d *lineDecoder) pending() bool { return d.split.Pending() > 0 }

// parseNumber reads a line of the "line" protocol.
func parseNumber(line []byte) (value, bool) {
	body, ok := number(line)
	return value{body: body}, ok
}

// number parses a decimal number such as 36.5, -0.25, 37 or .5 with
// spaces around it. Exponents, NaN, Inf, hexadecimal and underscores,
// which strconv would take, are not a thermometer's output.
func number(b []byte) (float64, bool) {
	b = bytes.TrimSpace(b)
	digits, points := 0, 0
	for i, c := range b {
		switch {
		case c >= '0' && c <= '9':
			digits++
		case c == '.':
			points++
		case (c == '+' || c == '-') && i == 0:
		default:
			return 0, false
		}
	}
	if digits == 0 || points > 1 {
		return 0, false
	}
	v, err := strconv.ParseFloat(string(b), 64)
	return v, err == nil // a number too large for a float64 is garbage too
}

// pattern is the compiled Config.Pattern with its groups' indexes.
type pattern struct {
	re        *regexp.Regexp
	body, amb int // amb: -1 when the pattern has no amb group
}

// parse reads a line of the "pattern" protocol: a line the pattern does
// not match, or whose groups are not numbers, is garbage. An amb group
// that took no part in the match means no ambient temperature.
func (p *pattern) parse(line []byte) (value, bool) {
	m := p.re.FindSubmatchIndex(line)
	if m == nil || m[2*p.body] < 0 {
		return value{}, false
	}
	var v value
	var ok bool
	if v.body, ok = number(line[m[2*p.body]:m[2*p.body+1]]); !ok {
		return value{}, false
	}
	if p.amb >= 0 && m[2*p.amb] >= 0 {
		if v.amb, ok = number(line[m[2*p.amb]:m[2*p.amb+1]]); !ok {
			return value{}, false
		}
		v.hasAmb = true
	}
	return v, true
}

// The "frame" protocol: 7 bytes,
//
//	0xA5 0x5A   header
//	body        int16, big-endian, hundredths of °C
//	ambient     int16, big-endian, hundredths of °C; 0x7FFF: none
//	checksum    the sum of the 6 bytes before it, mod 256
//
// Bytes that do not start a frame are garbage up to the next header; a
// frame with a wrong checksum is garbage, and the search for a header goes
// on from its second byte, so that a real frame hidden behind a false
// header is still found.
const (
	frameLen  = 7
	header0   = 0xA5
	header1   = 0x5A
	noAmbient = 0x7FFF
)

// frameDecoder reads the "frame" protocol.
type frameDecoder struct {
	buf  [frameLen]byte
	n    int  // bytes of the current frame so far
	junk bool // inside a run of garbage already reported
}

func (d *frameDecoder) feed(p []byte, emit func(value, bool)) {
	for _, b := range p {
		d.byte(b, emit)
	}
}

func (d *frameDecoder) byte(b byte, emit func(value, bool)) {
	if (d.n == 0 && b != header0) || (d.n == 1 && b != header1) {
		d.garbage(emit)
		d.n = 0
		if b == header0 { // a header may start here after all
			d.buf[0], d.n = b, 1
		}
		return
	}
	d.buf[d.n] = b
	d.n++
	if d.n < frameLen {
		return
	}
	d.n = 0
	var sum byte
	for _, c := range d.buf[:frameLen-1] {
		sum += c
	}
	if sum != d.buf[frameLen-1] {
		d.garbage(emit)
		rest := d.buf
		for _, c := range rest[1:] {
			d.byte(c, emit) // six bytes: cannot complete a frame, so no deeper
		}
		return
	}
	d.junk = false
	v := value{body: float64(int16(binary.BigEndian.Uint16(d.buf[2:4]))) / 100}
	if amb := binary.BigEndian.Uint16(d.buf[4:6]); amb != noAmbient {
		v.amb, v.hasAmb = float64(int16(amb))/100, true
	}
	emit(v, true)
}

// garbage reports the start of a run of garbage; the rest of the run is
// not reported again.
func (d *frameDecoder) garbage(emit func(value, bool)) {
	if !d.junk {
		emit(value{}, false)
		d.junk = true
	}
}

func (d *frameDecoder) pending() bool { return d.n > 0 }
