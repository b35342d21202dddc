package hardwaretest

import (
	"context"
	"errors"
	"io"
	"sync"
)

// Errors of fake ports.
var (
	ErrUnplugged = errors.New("fake port unplugged")
	ErrClosed    = errors.New("fake port closed")
)

// Port is an in-memory serial port, an io.ReadWriteCloser: reads return
// what Feed gave, and block while there is nothing; writes are kept for
// Written. Fail makes reads fail as an unplugged device does, and Close
// ends a blocked read. It is safe for concurrent use.
type Port struct {
	mu      sync.Mutex
	cond    *sync.Cond
	in      []byte // fed, not yet read
	err     error  // set by Fail
	closed  bool
	written []byte
}

// NewPort returns an open port with nothing to read.
func NewPort() *Port {
	p := &Port{}
	p.cond = sync.NewCond(&p.mu)
	return p
}

// Feed gives the port bytes to read, as the device sends them.
func (p *Port) Feed(data string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.in = append(p.in, data...)
	p.cond.Broadcast()
}

// Fail makes reads fail with err once the bytes fed so far are read.
func (p *Port) Fail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.err = err
	p.cond.Broadcast()
}

// Read returns bytes fed, or blocks until some are, the port fails or it
// is closed.
func (p *Port) Read(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.in) == 0 && p.err == nil && !p.closed {
		p.cond.Wait()
	}
	switch {
	case p.closed:
		return 0, ErrClosed
	case len(p.in) > 0:
		n := copy(b, p.in)
		p.in = p.in[n:]
		return n, nil
	default:
		return 0, p.err
	}
}

// Write keeps b for Written.
func (p *Port) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return 0, ErrClosed
	}
	p.written = append(p.written, b...)
	return len(b), nil
}

// Close closes the port and ends a blocked read.
func (p *Port) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	p.cond.Broadcast()
	return nil
}

// Closed reports whether the port was closed.
func (p *Port) Closed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

// Written returns everything written to the port.
func (p *Port) Written() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return string(p.written)
}

// Opener opens fake ports (its Open is a thermometer.Opener): each open
// that does not fail gets a new Port, which the test reaches with Port.
// It is safe for concurrent use.
type Opener struct {
	// Fail, if set, gives the error open number n (from 0) fails with,
	// or nil for it to succeed.
	Fail func(n int) error

	mu      sync.Mutex
	opens   int
	ports   []*Port
	changed chan struct{} // closed and replaced at each open
}

// Open opens a new Port, or fails as Fail says.
func (o *Opener) Open(string, int) (io.ReadWriteCloser, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := o.opens
	o.opens++
	if o.changed != nil {
		close(o.changed)
		o.changed = nil
	}
	if o.Fail != nil {
		if err := o.Fail(n); err != nil {
			return nil, err
		}
	}
	p := NewPort()
	o.ports = append(o.ports, p)
	return p, nil
}

// Opens returns how many opens were tried, failed ones included.
func (o *Opener) Opens() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.opens
}

// Port waits for the i-th port opened (from 0) and returns it, or ctx's
// error.
func (o *Opener) Port(ctx context.Context, i int) (*Port, error) {
	for {
		o.mu.Lock()
		if i < len(o.ports) {
			p := o.ports[i]
			o.mu.Unlock()
			return p, nil
		}
		if o.changed == nil {
			o.changed = make(chan struct{})
		}
		changed := o.changed
		o.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
