package scanner

import (
	"sync"
	"time"

	"gocv.io/x/gocv"
)

// Frame is a captured image with its sequence number and capture time.
type Frame struct {
	Mat      gocv.Mat
	Seq      uint64
	Captured time.Time
}

// slot hands the newest frame from the capture goroutine to the decoder
// workers. It holds at most one waiting frame: a new frame replaces an
// unclaimed one, which is dropped and counted, so a slow decoder never
// builds a queue and its latency stays bounded.
//
// The slot also owns every frame buffer: buffers go round between the
// capture, the slot and the workers and are closed when the slot is
// closed, so none leaks whatever the order of events.
type slot struct {
	mu      sync.Mutex
	cond    *sync.Cond
	waiting *Frame
	free    []gocv.Mat
	live    int // buffers allocated and not yet closed
	dropped uint64
	closed  bool
}

func newSlot() *slot {
	s := &slot{}
	s.cond = sync.NewCond(&s.mu)
	return s
}

// buffer returns a Mat to read the next frame into.
func (s *slot) buffer() gocv.Mat {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := len(s.free); n > 0 {
		m := s.free[n-1]
		s.free = s.free[:n-1]
		return m
	}
	s.live++
	return gocv.NewMat()
}

// put offers a frame to the workers, dropping the one still waiting. With
// wait set (reading a file or folder as fast as it decodes, where every
// frame counts) it waits for the workers instead.
func (s *slot) put(f Frame, wait bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for wait && s.waiting != nil && !s.closed {
		s.cond.Wait()
	}
	if s.closed {
		s.closeMat(f.Mat)
		return
	}
	if s.waiting != nil {
		s.dropped++
		s.free = append(s.free, s.waiting.Mat)
	}
	s.waiting = &f
	s.cond.Broadcast()
}

// take waits for a frame; it returns false once the slot is closed and
// empty.
func (s *slot) take() (Frame, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.waiting == nil && !s.closed {
		s.cond.Wait()
	}
	if s.waiting == nil {
		return Frame{}, false
	}
	f := *s.waiting
	s.waiting = nil
	s.cond.Broadcast() // a waiting put may go on
	return f, true
}

// release gives a buffer back after use.
func (s *slot) release(m gocv.Mat) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		s.closeMat(m)
		return
	}
	s.free = append(s.free, m)
}

// drain closes the slot once its waiting frame, if any, has been taken:
// workers finish what is there, then stop.
func (s *slot) drain() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.cond.Broadcast()
}

// close frees the buffers the slot holds; buffers still out are freed as
// they come back.
func (s *slot) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.waiting != nil {
		s.dropped++
		s.closeMat(s.waiting.Mat)
		s.waiting = nil
	}
	for _, m := range s.free {
		s.closeMat(m)
	}
	s.free = nil
	s.cond.Broadcast()
}

func (s *slot) closeMat(m gocv.Mat) {
	m.Close()
	s.live--
}

// counts returns the frames dropped and the buffers still allocated.
func (s *slot) counts() (dropped uint64, live int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dropped, s.live
}
