package lines

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
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

const (
	idNumber = "11010119900307123X"
	base45   = "CP2:0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
)

// TestSerialOverPTY reads lines from a real pseudo-terminal opened as a
// serial port: endings are cut, empty lines left out, a line split across
// writes joined, an over-long line dropped as garbage; no text is logged.
func TestSerialOverPTY(t *testing.T) {
	ptys := newPTYs(t)
	h := start(t, Config{Name: "lane-1/id-reader", Kind: "serial", Device: "/dev/ttyUSB1"}, ptys.open, 16)
	master := ptys.next()
	longest := strings.Repeat("L", MaxLine)
	for _, w := range []string{
		idNumber + "\r\n", "\r\n\n", base45 + "\n", "CP2:", "XYZ\r",
		strings.Repeat("A", MaxLine+1) + "\n", longest + "\r\n", "after\n",
	} {
		if _, err := io.WriteString(master, w); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond) // let most writes arrive as reads of their own
	}
	for _, want := range []string{idNumber, base45, "CP2:XYZ", longest, "after"} {
		if l := h.next(); l.Text != want || l.Source != "lane-1/id-reader" || !l.At.Equal(t0) {
			t.Errorf("line %.40q from %s at %v, want %.40q", l.Text, l.Source, l.At, want)
		}
	}
	if st := h.r.Status(); st.Lines != 5 || st.Garbage != 1 || !st.Up || st.Opens != 1 || st.Kind != "serial" {
		t.Errorf("status %+v", st)
	}
	h.noTextLogged(idNumber, base45, "CP2:XYZ", "AAAA")
}

// TestEvdev reads key events from a pipe, as from /dev/input/eventN:
// shift, the signs of Base45 text, the keypad and keypad Enter, key
// releases, autorepeat and other events left out, unknown keys and
// over-long lines as garbage, records split across reads.
func TestEvdev(t *testing.T) {
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pw.Close()
	opens := 0
	open := func(string, int) (io.ReadCloser, error) {
		opens++
		if opens > 1 {
			return nil, errors.New("gone")
		}
		return pr, nil
	}
	h := start(t, Config{Name: "lane-1/scanner", Kind: "evdev", Device: "/dev/input/event3"}, open, 16)

	var raw bytes.Buffer // written key by key, with the codes of input-event-codes.h
	key := func(code uint16, values ...int32) {
		for _, v := range values {
			raw.Write(hardwaretest.KeyEvent(hardwaretest.EvKey, code, v))
			raw.Write(hardwaretest.KeyEvent(hardwaretest.EvSyn, 0, 0))
		}
	}
	raw.Write(hardwaretest.KeyEvent(4, 4, 0x70004)) // EV_MSC scan code: left out
	key(42, 1)                                      // left shift down
	key(30, 1, 0)                                   // A
	key(42, 0)
	key(54, 1)    // right shift down
	key(39, 1, 0) // :
	key(5, 1, 0)  // $
	key(54, 0)
	key(79, 1, 0)          // keypad 1
	key(83, 1, 0)          // keypad .
	key(55, 1, 0)          // keypad *
	key(48, 1, 2, 2, 2, 0) // b, autorepeated
	key(12, 1, 0)          // -
	key(96, 1, 0)          // keypad Enter

	unknown := hardwaretest.Typed("12")
	unknown = unknown[:len(unknown)-len(hardwaretest.Typed(""))]                   // without its Enter
	unknown = append(unknown, hardwaretest.KeyEvent(hardwaretest.EvKey, 59, 1)...) // F1
	unknown = append(unknown, hardwaretest.Typed("34")...)

	writes := [][]byte{
		hardwaretest.Typed(idNumber),
		hardwaretest.Typed(base45),
		hardwaretest.Typed("abc xyz"),
		raw.Bytes(),
		hardwaretest.Typed(""), // Enter alone
		unknown,
		hardwaretest.Typed(strings.Repeat("1", MaxLine+1)),
		hardwaretest.Typed(strings.Repeat("2", MaxLine)),
	}
	last := hardwaretest.Typed("OK")
	writes = append(writes, last[:5], last[5:]) // a record split across writes
	go func() {
		for _, w := range writes {
			pw.Write(w)
		}
	}()
	for _, want := range []string{idNumber, base45, "abc xyz", "A:$1.*b-", strings.Repeat("2", MaxLine), "OK"} {
		if l := h.next(); l.Text != want || l.Source != "lane-1/scanner" {
			t.Errorf("line %.40q from %s, want %.40q", l.Text, l.Source, want)
		}
	}
	if st := h.r.Status(); st.Lines != 6 || st.Garbage != 2 || st.Partial != 0 || st.Kind != "evdev" {
		t.Errorf("status %+v", st)
	}
	h.noTextLogged(idNumber, "CP2:", "abc", "1234", "2222")
}

// TestKeyDecoderAnySplit: where reads split the records changes nothing.
func TestKeyDecoderAnySplit(t *testing.T) {
	all := append(hardwaretest.Typed(base45), hardwaretest.Typed(idNumber)...)
	for _, size := range []int{len(all), 1, 7, 23, 25} {
		var dec keyDecoder
		var got []string
		for i := 0; i < len(all); i += size {
			dec.feed(all[i:min(i+size, len(all))], func(line []byte, ok bool) { got = append(got, string(line)) })
		}
		if len(got) != 2 || got[0] != base45 || got[1] != idNumber || dec.pending() {
			t.Errorf("in pieces of %d: %q, pending %v", size, got, dec.pending())
		}
	}
}

// TestReopen: a device that fails mid-line is reopened after a wait on
// the clock; the half line is counted as partial and dropped.
func TestReopen(t *testing.T) {
	opener := &hardwaretest.Opener{}
	h := start(t, Config{Name: "lane-1/id-reader", Kind: "serial", Device: "/dev/ttyUSB1"}, opener.OpenLines, 16)
	first := h.port(opener, 0)
	first.Feed("110101199003071234\r\n4401")
	h.next()
	first.Fail(hardwaretest.ErrUnplugged)
	waitFor(t, func() bool { return h.r.Status().Failures == 1 })
	if st := h.r.Status(); st.Up || !strings.Contains(st.Error, "unplugged") {
		t.Errorf("while waiting to reopen: %+v", st)
	}
	h.advanceUntil(func() bool { return opener.Opens() == 2 })
	h.port(opener, 1).Feed("0305\r\n")
	if l := h.next(); l.Text != "0305" {
		t.Errorf("line %q after the reopen, want 0305", l.Text)
	}
	st := h.r.Status()
	if !st.Up || st.Opens != 2 || st.Failures != 1 || st.Partial != 1 || st.Lines != 2 || st.Error != "" {
		t.Errorf("status %+v", st)
	}
	if !first.Closed() {
		t.Error("the failed device was not closed")
	}
	h.noTextLogged("110101199003071234", "4401", "0305")
}

// TestAbsentDoesNotSpin: a device that never opens is tried once per
// backoff step, each failure logged with the device's name.
func TestAbsentDoesNotSpin(t *testing.T) {
	opener := &hardwaretest.Opener{Fail: func(int) error { return errors.New("no such device") }}
	h := start(t, Config{Name: "lane-1/scanner", Kind: "evdev", Device: "/dev/input/event9"}, opener.OpenLines, 16)
	for i := 1; i <= 3; i++ {
		waitFor(t, func() bool { return h.clk.Waiters() > 0 })
		time.Sleep(20 * time.Millisecond) // a spinning loop would open again here
		if n := opener.Opens(); n != i {
			t.Fatalf("%d opens while the clock stood still after failure %d", n, i)
		}
		h.clk.Advance(devio.MaxBackoff)
	}
	waitFor(t, func() bool { return h.clk.Waiters() > 0 })
	h.stop()
	if n := strings.Count(h.logs.String(), "device=/dev/input/event9"); n != 4 {
		t.Errorf("%d failures logged with the device, want 4:\n%s", n, h.logs)
	}
}

// TestCancel: cancelling ends Run promptly and closes the device, whatever
// it is doing.
func TestCancel(t *testing.T) {
	t.Run("blocked in a read of a pty", func(t *testing.T) {
		ptys := newPTYs(t)
		h := start(t, Config{Name: "r", Kind: "serial", Device: "/dev/ttyUSB1"}, ptys.open, 16)
		ptys.next()
		waitFor(t, func() bool { return h.r.Status().Up })
		h.stop()
	})
	t.Run("blocked in a read of a pipe", func(t *testing.T) {
		pr, pw, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer pw.Close()
		h := start(t, Config{Name: "r", Kind: "evdev", Device: "/dev/input/event3"}, func(string, int) (io.ReadCloser, error) { return pr, nil }, 16)
		pw.Write(hardwaretest.KeyEvent(hardwaretest.EvKey, 2, 1))
		waitFor(t, func() bool { return h.r.Status().Up })
		h.stop()
		if _, err := pr.Read(make([]byte, 1)); !errors.Is(err, os.ErrClosed) {
			t.Errorf("device left open: %v", err)
		}
	})
	t.Run("backing off", func(t *testing.T) {
		opener := &hardwaretest.Opener{Fail: func(int) error { return errors.New("no such device") }}
		h := start(t, Config{Name: "r", Kind: "serial", Device: "/dev/ttyUSB1"}, opener.OpenLines, 16)
		waitFor(t, func() bool { return h.clk.Waiters() > 0 })
		h.stop()
	})
	t.Run("blocked sending a line", func(t *testing.T) {
		opener := &hardwaretest.Opener{}
		h := start(t, Config{Name: "r", Kind: "serial", Device: "/dev/ttyUSB1"}, opener.OpenLines, 0)
		h.port(opener, 0).Feed("123\n")
		waitFor(t, func() bool { return h.r.Status().Lines == 1 })
		h.stop()
	})
}

// TestOpenEvdev: the real opener reads records as they are; grabbing
// what is not an input device fails, naming it.
func TestOpenEvdev(t *testing.T) {
	path := filepath.Join(t.TempDir(), "event0")
	if err := os.WriteFile(path, hardwaretest.Typed("42"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenEvdev(path, true); err == nil || !strings.Contains(err.Error(), "grab "+path) {
		t.Errorf("grabbing a plain file: %v", err)
	}
	dev, err := DeviceOpener(Config{Kind: "evdev", Grab: false})(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	var dec keyDecoder
	var got []string
	b, _ := io.ReadAll(dev)
	dec.feed(b, func(line []byte, ok bool) { got = append(got, string(line)) })
	if len(got) != 1 || got[0] != "42" {
		t.Errorf("read %q", got)
	}
	if _, err := OpenEvdev(filepath.Join(t.TempDir(), "none"), false); err == nil {
		t.Error("opened a missing device")
	}
}

// TestNewRejects: configuration mistakes are one-line errors naming the
// device and the problem.
func TestNewRejects(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Kind: "serial", Device: "/dev/ttyUSB1"}, "line reader: no name"},
		{Config{Name: "r", Device: "/dev/ttyUSB1"}, `line reader r: unknown kind ""`},
		{Config{Name: "r", Kind: "hid", Device: "/dev/hidraw0"}, `line reader r: unknown kind "hid"`},
		{Config{Name: "r", Kind: "evdev"}, "line reader r: no device"},
		{Config{Name: "r", Kind: "serial", Device: "/dev/ttyUSB1", Baud: -9600}, "line reader r: baud -9600"},
	} {
		if _, err := New(tc.cfg, nil, clocktest.New(t0), nil); err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, want %q", tc.cfg, err, tc.want)
		}
	}
	r, err := New(Config{Name: "r", Kind: "serial", Device: "/dev/ttyUSB1"}, nil, clocktest.New(t0), nil)
	if err != nil || r.cfg.Baud != 9600 {
		t.Errorf("defaults: %v, %+v", err, r)
	}
}

// FuzzSerial and FuzzEvdev feed any bytes, in two reads split anywhere,
// then a good line: nothing crashes, what is held stays within a line,
// and the good line still comes out.
func FuzzSerial(f *testing.F) {
	for _, s := range []string{idNumber + "\r\n", "\r\r\n\n", strings.Repeat("x", 5000), "a\x00b\n"} {
		f.Add([]byte(s), uint16(2))
	}
	f.Fuzz(func(t *testing.T, data []byte, split uint16) {
		dec := &serialDecoder{split: devio.Splitter{Max: MaxLine}}
		fuzzDecoder(t, dec, data, int(split), []byte("\nOK\r\n"), func() int { return dec.split.Pending() })
	})
}

func FuzzEvdev(f *testing.F) {
	for _, b := range [][]byte{
		hardwaretest.Typed(base45),
		hardwaretest.KeyEvent(hardwaretest.EvKey, hardwaretest.KeyLeftShift, 1),
		append(hardwaretest.KeyEvent(hardwaretest.EvKey, 59, 1), hardwaretest.Typed("1")...),
		hardwaretest.KeyEvent(hardwaretest.EvKey, 0xffff, -1)[:recordSize-3],
	} {
		f.Add(b, uint16(recordSize/2))
	}
	f.Fuzz(func(t *testing.T, data []byte, split uint16) {
		// Complete a cut record, let go of shift, end the line, then type.
		good := make([]byte, (recordSize-len(data)%recordSize)%recordSize)
		good = append(good, hardwaretest.KeyEvent(hardwaretest.EvKey, hardwaretest.KeyLeftShift, 0)...)
		good = append(good, hardwaretest.KeyEvent(hardwaretest.EvKey, hardwaretest.KeyRightShift, 0)...)
		good = append(good, hardwaretest.KeyEvent(hardwaretest.EvKey, hardwaretest.KeyEnter, 1)...)
		good = append(good, hardwaretest.Typed("OK")...)
		dec := &keyDecoder{}
		fuzzDecoder(t, dec, data, int(split), good, func() int { return len(dec.line) })
	})
}

func fuzzDecoder(t *testing.T, dec decoder, data []byte, split int, good []byte, held func() int) {
	split %= len(data) + 1
	var last string
	for _, p := range [][]byte{data[:split], data[split:], good} {
		dec.feed(p, func(line []byte, ok bool) {
			if ok {
				last = string(line)
			}
		})
		if n := held(); n > MaxLine {
			t.Fatalf("holding %d bytes of a line", n)
		}
	}
	if last != "OK" || dec.pending() {
		t.Fatalf("last line %.40q, pending %v; want OK", last, dec.pending())
	}
}

// harness runs a reader on a fake clock, logging to a buffer.
type harness struct {
	t      *testing.T
	r      *Reader
	clk    *clocktest.Fake
	out    chan hardware.Line
	logs   *lockedBuffer
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

func start(t *testing.T, cfg Config, open Opener, outCap int) *harness {
	t.Helper()
	h := &harness{t: t, clk: clocktest.New(t0), out: make(chan hardware.Line, outCap), logs: &lockedBuffer{}, done: make(chan error, 1)}
	r, err := New(cfg, open, h.clk, slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	h.r = r
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.done <- r.Run(ctx, h.out) }()
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

func (h *harness) next() hardware.Line {
	h.t.Helper()
	select {
	case l := <-h.out:
		return l
	case <-time.After(10 * time.Second):
		h.t.Fatalf("no line; status %+v", h.r.Status())
		return hardware.Line{}
	}
}

func (h *harness) port(o *hardwaretest.Opener, i int) *hardwaretest.Port {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := o.Port(ctx, i)
	if err != nil {
		h.t.Fatalf("device %d never opened: %v", i, err)
	}
	return p
}

// advanceUntil moves the clock past the longest backoff until cond holds.
func (h *harness) advanceUntil(cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("condition never met; status %+v", h.r.Status())
		}
		h.clk.Advance(devio.MaxBackoff)
		time.Sleep(time.Millisecond)
	}
}

// noTextLogged fails if the log holds any of the texts read.
func (h *harness) noTextLogged(texts ...string) {
	h.t.Helper()
	logs := h.logs.String()
	if logs == "" {
		h.t.Fatal("nothing logged at all")
	}
	for _, s := range texts {
		if strings.Contains(logs, s) {
			h.t.Errorf("the log holds %q:\n%s", s, logs)
		}
	}
}

// ptys opens a new pseudo-terminal at each open: the reader gets its
// slave, opened with OpenSerial, the test its master (from next).
type ptys struct {
	t       *testing.T
	masters chan *os.File
}

func newPTYs(t *testing.T) *ptys { return &ptys{t: t, masters: make(chan *os.File, 16)} }

func (p *ptys) open(_ string, baud int) (io.ReadCloser, error) {
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
