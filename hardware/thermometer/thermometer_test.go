package thermometer

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/checkpointd/checkpoint/hardware"
	"github.com/checkpointd/checkpoint/hardware/hardwaretest"
	"github.com/checkpointd/checkpoint/hardware/internal/devio"
	"github.com/checkpointd/checkpoint/internal/clock/clocktest"
)

var t0 = time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)

// frame encodes one frame of the "frame" protocol; amb noAmbient for none.
func frame(body, amb int16) string {
	b := []byte{header0, header1, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint16(b[2:], uint16(body))
	binary.BigEndian.PutUint16(b[4:], uint16(amb))
	for _, c := range b[:6] {
		b[6] += c
	}
	return string(b)
}

// badSum is a frame with a wrong checksum.
func badSum(body, amb int16) string {
	f := []byte(frame(body, amb))
	f[6]++
	return string(f)
}

const (
	tPattern    = `T=(?P<body>[-0-9.]+)C`
	bodyAmbient = `BODY:(?P<body>\S+)(?: AMB:(?P<amb>\S+))?`
)

// protocolCases end with a good reading, so that once it has arrived
// every byte before it has been counted.
var protocolCases = []struct {
	name, protocol, pattern string
	writes                  []string
	want                    []value
	garbage                 uint64
}{
	{
		name:     "line endings",
		protocol: "line",
		writes:   []string{"36.5\r\n", "37.25\n", "36.9\r", "  36.6 \t\r\n", "\r\n\n", "-1.5\n", "45.0\n", ".5\n", "+37\r\n"},
		want:     []value{{body: 36.5}, {body: 37.25}, {body: 36.9}, {body: 36.6}, {body: -1.5}, {body: 45}, {body: .5}, {body: 37}},
	},
	{
		name:     "line garbage",
		protocol: "line",
		writes:   []string{"abc\r\n", "36.5.1\n", "NaN\n", "Inf\n", "1e2\n", "0x1p4\n", "36,5\n", "36.5C\n", "-\n", ".\n", "36.7\n"},
		want:     []value{{body: 36.7}},
		garbage:  10,
	},
	{
		name:     "line split across writes",
		protocol: "line",
		writes:   []string{"3", "6.", "8\r", "\n37.0", "\n"},
		want:     []value{{body: 36.8}, {body: 37}},
	},
	{
		name:     "line too long",
		protocol: "line",
		writes: []string{
			strings.Repeat("3", maxLine+1) + "\n", // a number, but too long
			strings.Repeat("x", 1000) + "\r\n",
			strings.Repeat("0", maxLine-4) + "36.5\n", // exactly the longest line
			"36.6\n",
		},
		want:    []value{{body: 36.5}, {body: 36.6}},
		garbage: 2,
	},
	{
		name:     "pattern T=",
		protocol: "pattern",
		pattern:  tPattern,
		writes:   []string{"T=36.5C\r\n", "T=C\r\n", "hello\n", "T=3.6.5C\n", "xx T=37.1C yy\n"},
		want:     []value{{body: 36.5}, {body: 37.1}},
		garbage:  3,
	},
	{
		name:     "pattern body and ambient",
		protocol: "pattern",
		pattern:  bodyAmbient,
		writes:   []string{"BODY:36.5 AMB:21.0\r\n", "BODY:37.0\r\n", "BODY:36.5 AMB:warm\r\n", "AMB:21.0\n", "BODY:36.6 AMB:-5.25\n"},
		want:     []value{{body: 36.5, amb: 21, hasAmb: true}, {body: 37}, {body: 36.6, amb: -5.25, hasAmb: true}},
		garbage:  2,
	},
	{
		name:     "frames",
		protocol: "frame",
		writes: []string{
			frame(3650, 2100),
			"\x01\x02\xa5\x00", // one run of garbage
			frame(3720, noAmbient),
			badSum(3700, 2000),
			frame(-150, noAmbient)[:3], frame(-150, noAmbient)[3:], // split
			frame(3655, noAmbient),
		},
		want:    []value{{body: 36.5, amb: 21, hasAmb: true}, {body: 37.2}, {body: -1.5}, {body: 36.55}},
		garbage: 2,
	},
	{
		name:     "frame behind a false header",
		protocol: "frame",
		writes:   []string{frame(3650, noAmbient), "\xa5\x5a\x01" + frame(3600, noAmbient)},
		want:     []value{{body: 36.5}, {body: 36}},
		garbage:  1,
	},
	{
		name:     "frame after a repeated first header byte",
		protocol: "frame",
		writes:   []string{"\xa5\xa5" + frame(3610, 2000)},
		want:     []value{{body: 36.1, amb: 20, hasAmb: true}},
		garbage:  1,
	},
}

// TestDecodersAnySplit feeds each case's bytes to the decoder whole and
// one byte at a time: where the reads split the stream changes nothing.
func TestDecodersAnySplit(t *testing.T) {
	for _, tc := range protocolCases {
		t.Run(tc.name, func(t *testing.T) {
			th, err := New(Config{Name: "t", Port: "p", Protocol: tc.protocol, Pattern: tc.pattern}, nil, clocktest.New(t0), nil)
			if err != nil {
				t.Fatal(err)
			}
			all := strings.Join(tc.writes, "")
			for _, size := range []int{len(all), 1} {
				dec := th.decoder()
				var got []value
				var bad uint64
				for i := 0; i < len(all); i += size {
					dec.feed([]byte(all[i:min(i+size, len(all))]), func(v value, ok bool) {
						if ok {
							got = append(got, v)
						} else {
							bad++
						}
					})
				}
				if !equalValues(got, tc.want) || bad != tc.garbage || dec.pending() {
					t.Errorf("in pieces of %d: %v, garbage %d, pending %v; want %v, garbage %d", size, got, bad, dec.pending(), tc.want, tc.garbage)
				}
			}
		})
	}
}

func equalValues(a, b []value) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestProtocolsOverPTY runs each case through a real pseudo-terminal
// opened as a serial port: the readings arrive as the device gave them,
// stamped with the clock's time and the device's name, and the garbage is
// counted.
func TestProtocolsOverPTY(t *testing.T) {
	for _, tc := range protocolCases {
		t.Run(tc.name, func(t *testing.T) {
			ptys := newPTYs(t)
			h := start(t, Config{Name: "lane-1/thermometer", Port: "/dev/ttyS0", Protocol: tc.protocol, Pattern: tc.pattern}, ptys.open, 16)
			master := ptys.next()
			for _, w := range tc.writes {
				if _, err := io.WriteString(master, w); err != nil {
					t.Fatal(err)
				}
				time.Sleep(2 * time.Millisecond) // let most writes arrive as reads of their own
			}
			for i, want := range tc.want {
				r := h.next()
				got := value{body: r.Body, amb: r.Ambient, hasAmb: r.HasAmbient}
				if got != want || r.Source != "lane-1/thermometer" || !r.At.Equal(t0) {
					t.Errorf("reading %d: %+v, want %+v from lane-1/thermometer at %v", i, r, want, t0)
				}
			}
			st := h.th.Status()
			if st.Garbage != tc.garbage || st.Readings != uint64(len(tc.want)) || !st.Up || st.Opens != 1 || st.Partial != 0 {
				t.Errorf("status %+v; want garbage %d, readings %d", st, tc.garbage, len(tc.want))
			}
		})
	}
}

// TestReopen: an open that fails and a port that fails mid-line are each
// followed by a wait on the clock and a reopen; the half line is counted
// as partial and dropped, and readings resume on the new port.
func TestReopen(t *testing.T) {
	opener := &hardwaretest.Opener{Fail: func(n int) error {
		if n == 0 {
			return errors.New("no such device")
		}
		return nil
	}}
	h := start(t, Config{Name: "lane-1/thermometer", Port: "/dev/ttyUSB0", Silence: 24 * time.Hour}, opener.Open, 16)
	waitFor(t, func() bool { return h.th.Status().Failures == 1 })
	if st := h.th.Status(); st.Up || !strings.Contains(st.Error, "no such device") {
		t.Errorf("after a failed open: %+v", st)
	}
	h.advanceUntil(func() bool { return opener.Opens() == 2 })
	first := h.port(opener, 0)
	first.Feed("36.5\r\n37.")
	if r := h.next(); r.Body != 36.5 {
		t.Fatalf("reading %+v", r)
	}
	first.Fail(hardwaretest.ErrUnplugged)
	waitFor(t, func() bool { return h.th.Status().Failures == 2 })
	h.advanceUntil(func() bool { return opener.Opens() == 3 })
	second := h.port(opener, 1)
	second.Feed("6.6\r\n36.6\r\n") // "37." must not join the next line
	if r := h.next(); r.Body != 6.6 {
		t.Fatalf("first reading after the reopen %+v, want 6.6", r)
	}
	if r := h.next(); r.Body != 36.6 {
		t.Fatalf("reading %+v", r)
	}
	st := h.th.Status()
	if !st.Up || st.Opens != 2 || st.Failures != 2 || st.Partial != 1 || st.Readings != 3 || st.Garbage != 0 || st.Error != "" {
		t.Errorf("status %+v", st)
	}
	if !first.Closed() {
		t.Error("the failed port was not closed")
	}
	h.stop()
	if !second.Closed() {
		t.Error("the port was not closed when Run ended")
	}
}

// TestReopenPTY: the pseudo-terminal goes away (its master is closed, as
// a USB adapter pulled out) and a new one is given at the reopen.
func TestReopenPTY(t *testing.T) {
	ptys := newPTYs(t)
	h := start(t, Config{Name: "lane-1/thermometer", Port: "/dev/ttyUSB0"}, ptys.open, 16)
	master := ptys.next()
	io.WriteString(master, "36.5\r\n")
	if r := h.next(); r.Body != 36.5 {
		t.Fatalf("reading %+v", r)
	}
	master.Close()
	waitFor(t, func() bool { return h.th.Status().Failures == 1 })
	h.advanceUntil(func() bool { return h.th.Status().Opens == 2 })
	io.WriteString(ptys.next(), "36.7\r\n")
	if r := h.next(); r.Body != 36.7 {
		t.Fatalf("reading %+v", r)
	}
	if st := h.th.Status(); !st.Up || st.Opens != 2 || st.Failures != 1 {
		t.Errorf("status %+v", st)
	}
}

// TestAbsentDoesNotSpin: a port that never opens is tried once per
// backoff step, each failure logged once with the port's name; nothing is
// tried while the clock stands still; cancelling during the wait ends Run
// at once.
func TestAbsentDoesNotSpin(t *testing.T) {
	opener := &hardwaretest.Opener{Fail: func(int) error { return errors.New("no such device") }}
	h := start(t, Config{Name: "lane-1/thermometer", Port: "/dev/ttyUSB9"}, opener.Open, 16)
	for i := 1; i <= 4; i++ {
		waitFor(t, func() bool { return h.clk.Waiters() > 0 })
		time.Sleep(20 * time.Millisecond) // a spinning loop would open again here
		if n := opener.Opens(); n != i {
			t.Fatalf("%d opens while the clock stood still after failure %d", n, i)
		}
		h.clk.Advance(devio.MaxBackoff)
	}
	waitFor(t, func() bool { return h.clk.Waiters() > 0 })
	h.stop()
	if n := opener.Opens(); n != 5 {
		t.Errorf("%d opens, want 5", n)
	}
	if n := strings.Count(h.logs.String(), `msg="thermometer failed; reopening"`); n != 5 {
		t.Errorf("%d failures logged, want 5:\n%s", n, h.logs)
	}
	if n := strings.Count(h.logs.String(), "port=/dev/ttyUSB9"); n < 5 {
		t.Errorf("the port is not named in the log:\n%s", h.logs)
	}
	if st := h.th.Status(); st.Up || st.Failures != 5 || st.Opens != 0 {
		t.Errorf("status %+v", st)
	}
}

// TestSilence: no bytes for Silence counts one silence, logged, until
// data comes again; data before the time is up puts it off.
func TestSilence(t *testing.T) {
	opener := &hardwaretest.Opener{}
	h := start(t, Config{Name: "lane-1/thermometer", Port: "/dev/ttyUSB0", Silence: 10 * time.Second}, opener.Open, 16)
	port := h.port(opener, 0)
	silences := func() uint64 { return h.th.Status().Silences }

	waitFor(t, func() bool { return h.clk.Waiters() == 1 })
	h.clk.Advance(10 * time.Second)
	waitFor(t, func() bool { return silences() == 1 })
	h.clk.Advance(time.Hour) // still the same silence
	if n := h.clk.Waiters(); n != 0 || silences() != 1 {
		t.Fatalf("%d silences, %d waiters during one long silence", silences(), n)
	}
	if n := strings.Count(h.logs.String(), "thermometer silent"); n != 1 {
		t.Errorf("one silence logged %d times:\n%s", n, h.logs)
	}

	port.Feed("36.5\n")
	h.next()
	waitFor(t, func() bool { return h.clk.Waiters() == 1 })
	h.clk.Advance(5 * time.Second)
	port.Feed("36.6\n")
	h.next()
	h.clk.Advance(5 * time.Second) // 10 s after the first reading, 5 s after the second
	waitFor(t, func() bool { return h.clk.Waiters() == 1 })
	if n := silences(); n != 1 {
		t.Fatalf("%d silences 5 s after a reading", n)
	}
	h.clk.Advance(5 * time.Second)
	waitFor(t, func() bool { return silences() == 2 })

	if n := strings.Count(h.logs.String(), "thermometer silent"); n != 2 {
		t.Errorf("two silences an hour apart logged %d times:\n%s", n, h.logs)
	}
	if st := h.th.Status(); !st.Up || st.Failures != 0 || st.Opens != 1 || st.Readings != 2 {
		t.Errorf("a silence is not a failure: %+v", st)
	}
}

// TestGarbageLogRateLimited: a stream of garbage is counted in full and
// logged once, then summed up in one line a minute later.
func TestGarbageLogRateLimited(t *testing.T) {
	opener := &hardwaretest.Opener{}
	h := start(t, Config{Name: "lane-1/thermometer", Port: "/dev/ttyUSB0", Silence: 24 * time.Hour}, opener.Open, 16)
	port := h.port(opener, 0)
	port.Feed(strings.Repeat("E1\r\n", 100) + "36.5\r\n")
	h.next()
	if st := h.th.Status(); st.Garbage != 100 {
		t.Errorf("garbage %d, want 100", st.Garbage)
	}
	if n := strings.Count(h.logs.String(), "garbage dropped"); n != 1 {
		t.Errorf("garbage logged %d times, want once", n)
	}
	h.clk.Advance(time.Minute)
	port.Feed("E2\r\n36.6\r\n")
	h.next()
	if n := strings.Count(h.logs.String(), "garbage dropped"); n != 2 || !strings.Contains(h.logs.String(), "count=100") {
		t.Errorf("after a minute, want one summary of 100:\n%s", h.logs)
	}
}

// TestMeasure: Measure writes the query to the port (here a
// pseudo-terminal, read on its master side), and the answer comes as a
// reading; without a port it fails, without a query it does nothing.
func TestMeasure(t *testing.T) {
	clk := clocktest.New(t0)
	idle, err := New(Config{Name: "lane-1/thermometer", Port: "/dev/ttyUSB0", Query: "M\r\n"}, nil, clk, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := idle.Measure(); !errors.Is(err, ErrNotOpen) {
		t.Errorf("Measure before Run: %v, want ErrNotOpen", err)
	}
	quiet, _ := New(Config{Name: "lane-1/thermometer", Port: "/dev/ttyUSB0"}, nil, clk, nil)
	if err := quiet.Measure(); err != nil {
		t.Errorf("Measure without a query: %v", err)
	}

	ptys := newPTYs(t)
	h := start(t, Config{Name: "lane-1/thermometer", Port: "/dev/ttyUSB0", Query: "M\r\n"}, ptys.open, 16)
	master := ptys.next()
	waitFor(t, func() bool { return h.th.Status().Up })
	if err := h.th.Measure(); err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	go func() {
		buf := make([]byte, 3)
		n, _ := io.ReadFull(master, buf)
		got <- string(buf[:n])
	}()
	select {
	case q := <-got:
		if q != "M\r\n" {
			t.Errorf("the device got %q, want %q", q, "M\r\n")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the query never reached the device")
	}
	io.WriteString(master, "36.5\r\n")
	if r := h.next(); r.Body != 36.5 {
		t.Errorf("reading %+v", r)
	}
}

// TestCancel: cancelling ends Run promptly and closes the port, whatever
// it is doing.
func TestCancel(t *testing.T) {
	cfg := Config{Name: "lane-1/thermometer", Port: "/dev/ttyUSB0"}
	t.Run("blocked in a read of a pty", func(t *testing.T) {
		ptys := newPTYs(t)
		h := start(t, cfg, ptys.open, 16)
		ptys.next()
		waitFor(t, func() bool { return h.th.Status().Up })
		h.stop()
		if st := h.th.Status(); st.Up {
			t.Errorf("still up after Run: %+v", st)
		}
	})
	t.Run("blocked in a read", func(t *testing.T) {
		opener := &hardwaretest.Opener{}
		h := start(t, cfg, opener.Open, 16)
		port := h.port(opener, 0)
		port.Feed("36.")
		waitFor(t, func() bool { return h.th.Status().Up })
		h.stop()
		if !port.Closed() {
			t.Error("port left open")
		}
		if st := h.th.Status(); st.Partial != 0 || st.Failures != 0 {
			t.Errorf("a cancel is neither a partial nor a failure: %+v", st)
		}
	})
	t.Run("backing off", func(t *testing.T) {
		opener := &hardwaretest.Opener{Fail: func(int) error { return errors.New("no such device") }}
		h := start(t, cfg, opener.Open, 16)
		waitFor(t, func() bool { return h.clk.Waiters() > 0 })
		h.stop()
	})
	t.Run("blocked sending a reading", func(t *testing.T) {
		opener := &hardwaretest.Opener{}
		h := start(t, cfg, opener.Open, 0) // nobody receives
		h.port(opener, 0).Feed("36.5\n")
		waitFor(t, func() bool { return h.th.Status().Readings == 1 })
		h.stop()
	})
	t.Run("before Run", func(t *testing.T) {
		opener := &hardwaretest.Opener{}
		th, err := New(cfg, opener.Open, clocktest.New(t0), nil)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := th.Run(ctx, make(chan hardware.Reading)); err != nil || opener.Opens() != 0 {
			t.Errorf("Run = %v after %d opens", err, opener.Opens())
		}
	})
}

// TestNewRejects: configuration mistakes are one-line errors naming the
// device and the problem.
func TestNewRejects(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Port: "/dev/ttyUSB0"}, "thermometer: no name"},
		{Config{Name: "lane-1"}, "thermometer lane-1: no port"},
		{Config{Name: "lane-1", Port: "p", Protocol: "xml"}, `thermometer lane-1: unknown protocol "xml"`},
		{Config{Name: "lane-1", Port: "p", Protocol: "pattern", Pattern: `T=([0-9.]+)C`}, "thermometer lane-1: pattern: missing (?P<body>...) group"},
		{Config{Name: "lane-1", Port: "p", Protocol: "pattern"}, "thermometer lane-1: pattern: missing (?P<body>...) group"},
		{Config{Name: "lane-1", Port: "p", Protocol: "pattern", Pattern: `T=(?P<body>[0-9.]+C`}, "thermometer lane-1: pattern: error parsing regexp: missing closing )"},
		{Config{Name: "lane-1", Port: "p", Pattern: tPattern}, `thermometer lane-1: a pattern needs protocol "pattern"`},
		{Config{Name: "lane-1", Port: "p", Baud: -1}, "thermometer lane-1: baud -1"},
		{Config{Name: "lane-1", Port: "p", Silence: -time.Second}, "thermometer lane-1: silence -1s"},
	} {
		_, err := New(tc.cfg, nil, clocktest.New(t0), nil)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("New(%+v) = %v, want %q", tc.cfg, err, tc.want)
		}
	}
	th, err := New(Config{Name: "lane-1", Port: "p", Protocol: "pattern", Pattern: bodyAmbient}, nil, clocktest.New(t0), nil)
	if err != nil {
		t.Fatal(err)
	}
	if th.cfg.Baud != 9600 || th.cfg.Silence != 30*time.Second {
		t.Errorf("defaults: %+v", th.cfg)
	}
}

// fuzzLine, fuzzPattern and fuzzFrame feed any bytes, in two reads split
// anywhere, then a good reading: nothing crashes, what is held stays
// within a line or a frame, no value is NaN or infinite, and the good
// reading still comes out.
func FuzzLine(f *testing.F) {
	for _, s := range []string{"36.5\r\n", "3\n6.5\r", strings.Repeat("9", 400), "NaN\n1e999\n", "-.\n+\n", "\x00\xff\r\r\n"} {
		f.Add([]byte(s), uint16(1))
	}
	f.Fuzz(func(t *testing.T, data []byte, split uint16) {
		fuzzDecoder(t, newLineDecoder(parseNumber), data, int(split), "\n36.5\r\n", value{body: 36.5})
	})
}

func FuzzPattern(f *testing.F) {
	for _, s := range []string{"BODY:36.5 AMB:21.0\r\n", "BODY:1e9\n", "BODY:36.5 AMB:\n", "AMB:3\n", strings.Repeat("BODY:", 100)} {
		f.Add([]byte(s), uint16(5))
	}
	p, err := New(Config{Name: "t", Port: "p", Protocol: "pattern", Pattern: bodyAmbient}, nil, clocktest.New(t0), nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte, split uint16) {
		fuzzDecoder(t, p.decoder(), data, int(split), "\nBODY:36.5 AMB:21.0\n", value{body: 36.5, amb: 21, hasAmb: true})
	})
}

func FuzzFrame(f *testing.F) {
	for _, s := range []string{frame(3650, 2100), "\xa5\x5a\x01" + frame(3600, noAmbient), badSum(1, 2), "\xa5\xa5\x5a\x5a", frame(-32768, -1)} {
		f.Add([]byte(s), uint16(3))
	}
	f.Fuzz(func(t *testing.T, data []byte, split uint16) {
		// A frame with no 0xA5 past its header, twice: whatever came
		// before may swallow the first, never both.
		good := frame(3650, noAmbient)
		if strings.Contains(good[1:], "\xa5") {
			t.Fatal("the good frame holds a header byte")
		}
		fuzzDecoder(t, &frameDecoder{}, data, int(split), good+good, value{body: 36.5})
	})
}

func fuzzDecoder(t *testing.T, dec decoder, data []byte, split int, good string, want value) {
	split %= len(data) + 1
	var got []value
	emit := func(v value, ok bool) {
		if ok {
			got = append(got, v)
		}
	}
	for _, p := range [][]byte{data[:split], data[split:], []byte(good)} {
		dec.feed(p, emit)
		switch d := dec.(type) {
		case *lineDecoder:
			if n := d.split.Pending(); n > maxLine {
				t.Fatalf("holding %d bytes of a line", n)
			}
		case *frameDecoder:
			if d.n >= frameLen {
				t.Fatalf("holding %d bytes of a frame", d.n)
			}
		}
	}
	for _, v := range got {
		if v.body != v.body || v.body > 1e300 || v.body < -1e300 || v.amb != v.amb {
			t.Fatalf("value %+v", v)
		}
	}
	if len(got) == 0 || (got[len(got)-1] != want && (len(got) < 2 || got[len(got)-2] != want)) {
		t.Fatalf("the good reading was lost: %+v", got)
	}
}

// harness runs a thermometer on a fake clock, logging to a buffer.
type harness struct {
	t      *testing.T
	th     *Thermometer
	clk    *clocktest.Fake
	out    chan hardware.Reading
	logs   *lockedBuffer
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

func start(t *testing.T, cfg Config, open Opener, outCap int) *harness {
	t.Helper()
	h := &harness{t: t, clk: clocktest.New(t0), out: make(chan hardware.Reading, outCap), logs: &lockedBuffer{}, done: make(chan error, 1)}
	th, err := New(cfg, open, h.clk, slog.New(slog.NewTextHandler(h.logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	h.th = th
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.done <- th.Run(ctx, h.out) }()
	t.Cleanup(h.stop)
	return h
}

// stop cancels Run and waits for it to return nil.
func (h *harness) stop() {
	h.once.Do(func() {
		h.cancel()
		select {
		case err := <-h.done:
			if err != nil {
				h.t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			h.t.Fatal("Run still running 10 s after cancel")
		}
	})
}

func (h *harness) next() hardware.Reading {
	h.t.Helper()
	select {
	case r := <-h.out:
		return r
	case <-time.After(10 * time.Second):
		h.t.Fatalf("no reading; status %+v", h.th.Status())
		return hardware.Reading{}
	}
}

func (h *harness) port(o *hardwaretest.Opener, i int) *hardwaretest.Port {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := o.Port(ctx, i)
	if err != nil {
		h.t.Fatalf("port %d never opened: %v", i, err)
	}
	return p
}

// advanceUntil moves the clock past the longest backoff until cond holds:
// the waits are jittered, so how long each is is not known.
func (h *harness) advanceUntil(cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("condition never met; status %+v", h.th.Status())
		}
		h.clk.Advance(devio.MaxBackoff)
		time.Sleep(time.Millisecond)
	}
}

// ptys opens a new pseudo-terminal at each open: the thermometer gets its
// slave, opened with OpenSerial, the test its master (from next).
type ptys struct {
	t       *testing.T
	masters chan *os.File
}

func newPTYs(t *testing.T) *ptys { return &ptys{t: t, masters: make(chan *os.File, 16)} }

func (p *ptys) open(_ string, baud int) (io.ReadWriteCloser, error) {
	master, slave, err := pty.Open()
	if err != nil {
		return nil, err
	}
	defer slave.Close()
	port, err := OpenSerial(slave.Name(), baud)
	if err != nil {
		master.Close()
		return nil, err
	}
	p.t.Cleanup(func() { master.Close() })
	p.masters <- master
	return port, nil
}

func (p *ptys) next() *os.File {
	p.t.Helper()
	select {
	case m := <-p.masters:
		return m
	case <-time.After(10 * time.Second):
		p.t.Fatal("no pseudo-terminal opened")
		return nil
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition never met")
		}
		time.Sleep(time.Millisecond)
	}
}

// lockedBuffer is a log destination for several goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
