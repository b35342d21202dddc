// Package scannertest provides fakes for the scanner's I/O edge, the video
// source: a source that plays frames from memory and fails on cue, an
// opener that counts and fails opens, and an HTTP server that streams
// frames as MJPEG the way IP cameras do. The scanner's tests import it.
package scannertest

import (
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"sync"
	"sync/atomic"
	"time"

	"gocv.io/x/gocv"

	"github.com/checkpointd/checkpoint/scanner"
)

// ErrUnplugged is what a fake source returns when it is told to fail.
var ErrUnplugged = errors.New("fake camera unplugged")

// Source plays a list of frames. After FailAfter frames (if positive) it
// fails with ErrUnplugged, as a camera pulled out of its socket does;
// otherwise it ends with io.EOF, or starts over if Loop is set.
type Source struct {
	Frames    []gocv.Mat
	FailAfter int
	Loop      bool
	read      int
	closed    atomic.Bool
}

// Read copies the next frame into dst.
func (s *Source) Read(dst *gocv.Mat) error {
	if s.closed.Load() {
		return errors.New("read from a closed fake source")
	}
	if s.FailAfter > 0 && s.read >= s.FailAfter {
		return ErrUnplugged
	}
	if len(s.Frames) == 0 || (!s.Loop && s.read >= len(s.Frames)) {
		return io.EOF
	}
	s.Frames[s.read%len(s.Frames)].CopyTo(dst)
	s.read++
	return nil
}

// Close marks the source closed.
func (s *Source) Close() error {
	s.closed.Store(true)
	return nil
}

// Opener hands out sources in turn and fails the opens it is told to. It
// is safe for concurrent use.
type Opener struct {
	mu sync.Mutex
	// Next returns the source for open number n (from 0), or an error.
	Next  func(n int) (scanner.Source, error)
	opens int
}

// Open is a scanner.OpenFunc.
func (o *Opener) Open(scanner.SourceConfig) (scanner.Source, error) {
	o.mu.Lock()
	n := o.opens
	o.opens++
	o.mu.Unlock()
	return o.Next(n)
}

// Opens returns how many opens were attempted.
func (o *Opener) Opens() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.opens
}

// MJPEG serves frames as a multipart/x-mixed-replace stream of JPEG images
// at a given rate, like the MJPEG endpoint of an IP camera. Each request
// gets the frames from the first. Set Drop to end every stream after that
// many frames, as a flaky network does.
type MJPEG struct {
	Frames []gocv.Mat
	FPS    float64
	Drop   int
	jpegs  [][]byte
	once   sync.Once
	served atomic.Int64
}

// Requests returns how many streams were started.
func (m *MJPEG) Requests() int { return int(m.served.Load()) }

// ServeHTTP streams the frames, looping, until the client goes or Drop
// frames have been sent.
func (m *MJPEG) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m.once.Do(func() {
		for _, f := range m.Frames {
			buf, err := gocv.IMEncodeWithParams(gocv.JPEGFileExt, f, []int{gocv.IMWriteJpegQuality, 85})
			if err != nil {
				panic(err)
			}
			m.jpegs = append(m.jpegs, append([]byte(nil), buf.GetBytes()...))
			buf.Close()
		}
	})
	m.served.Add(1)
	mw := multipart.NewWriter(w)
	w.Header().Set("Content-Type", "multipart/x-mixed-replace; boundary="+mw.Boundary())
	w.WriteHeader(http.StatusOK)
	tick := time.NewTicker(time.Duration(float64(time.Second) / m.FPS))
	defer tick.Stop()
	for i := 0; m.Drop == 0 || i < m.Drop; i++ {
		jpeg := m.jpegs[i%len(m.jpegs)]
		part, err := mw.CreatePart(textproto.MIMEHeader{
			"Content-Type":   {"image/jpeg"},
			"Content-Length": {fmt.Sprint(len(jpeg))},
		})
		if err != nil {
			return
		}
		if _, err := part.Write(jpeg); err != nil {
			return
		}
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		select {
		case <-r.Context().Done():
			return
		case <-tick.C:
		}
	}
	// Dropping: end the response abruptly.
	panic(http.ErrAbortHandler)
}
