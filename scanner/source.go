package scanner

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"gocv.io/x/gocv"
)

// SourceConfig says where frames come from and how the camera should be
// set up.
type SourceConfig struct {
	// Device is a V4L2 camera by index ("0") or path ("/dev/video0"), a
	// stream URL that OpenCV's FFmpeg backend opens (rtsp://, http:// MJPEG,
	// ...), a video file, or a folder of images.
	Device string
	// Requested capture format; zero leaves the camera's default. Cameras
	// treat these as hints.
	Width, Height int
	FPS           float64
	// Exposure is passed to the camera as is (V4L2 units); 0 keeps automatic
	// exposure.
	Exposure float64
}

// Source yields frames. Read returns io.EOF at the end of a finite source
// (a file, a folder); any other error means the device failed.
type Source interface {
	Read(dst *gocv.Mat) error
	Close() error
}

// Kind is what sort of device a SourceConfig names.
type Kind int

// Kinds of source.
const (
	Camera Kind = iota
	Stream
	File
	Folder
)

func (k Kind) String() string { return [...]string{"camera", "stream", "file", "folder"}[k] }

// KindOf classifies a device string.
func KindOf(device string) Kind {
	switch {
	case strings.Contains(device, "://"):
		return Stream
	case strings.HasPrefix(device, "/dev/video"):
		return Camera
	}
	if _, err := strconv.Atoi(device); err == nil {
		return Camera
	}
	if st, err := os.Stat(device); err == nil && st.IsDir() {
		return Folder
	}
	return File
}

// ErrOpen is returned (wrapped) when a device cannot be opened.
var ErrOpen = errors.New("cannot open video source")

// Open opens the source cfg names.
func Open(cfg SourceConfig) (Source, error) {
	switch KindOf(cfg.Device) {
	case Folder:
		return openFolder(cfg.Device)
	case Camera:
		var vc *gocv.VideoCapture
		var err error
		if i, aerr := strconv.Atoi(cfg.Device); aerr == nil {
			vc, err = gocv.OpenVideoCaptureWithAPI(i, gocv.VideoCaptureV4L2)
		} else {
			vc, err = gocv.OpenVideoCaptureWithAPI(cfg.Device, gocv.VideoCaptureV4L2)
		}
		if err != nil {
			return nil, fmt.Errorf("%w %s: %v", ErrOpen, cfg.Device, err)
		}
		setCamera(vc, cfg)
		return &videoSource{vc: vc, finite: false}, nil
	case Stream:
		vc, err := gocv.OpenVideoCaptureWithAPI(cfg.Device, gocv.VideoCaptureFFmpeg)
		if err != nil {
			return nil, fmt.Errorf("%w %s: %v", ErrOpen, cfg.Device, err)
		}
		return &videoSource{vc: vc, finite: false}, nil
	default:
		vc, err := gocv.OpenVideoCaptureWithAPI(cfg.Device, gocv.VideoCaptureFFmpeg)
		if err != nil {
			return nil, fmt.Errorf("%w %s: %v", ErrOpen, cfg.Device, err)
		}
		return &videoSource{vc: vc, finite: true}, nil
	}
}

func setCamera(vc *gocv.VideoCapture, cfg SourceConfig) {
	// MJPEG lets USB cameras deliver 720p at 30 frames a second.
	vc.Set(gocv.VideoCaptureFOURCC, vc.ToCodec("MJPG"))
	if cfg.Width > 0 && cfg.Height > 0 {
		vc.Set(gocv.VideoCaptureFrameWidth, float64(cfg.Width))
		vc.Set(gocv.VideoCaptureFrameHeight, float64(cfg.Height))
	}
	if cfg.FPS > 0 {
		vc.Set(gocv.VideoCaptureFPS, cfg.FPS)
	}
	if cfg.Exposure != 0 {
		vc.Set(gocv.VideoCaptureAutoExposure, 1) // V4L2: manual
		vc.Set(gocv.VideoCaptureExposure, cfg.Exposure)
	}
	// Keep the driver from queueing frames: the newest one is the one to
	// read.
	vc.Set(gocv.VideoCaptureBufferSize, 1)
}

// videoSource is an OpenCV VideoCapture.
type videoSource struct {
	vc     *gocv.VideoCapture
	finite bool
}

// errReadFailed is what a camera or stream that stops giving frames
// returns.
var errReadFailed = errors.New("video source gave no frame")

func (s *videoSource) Read(dst *gocv.Mat) error {
	if s.vc.Read(dst) && !dst.Empty() {
		return nil
	}
	if s.finite {
		return io.EOF
	}
	return errReadFailed
}

func (s *videoSource) Close() error { return s.vc.Close() }

// folderSource reads the images of a folder in name order.
type folderSource struct {
	files []string
	next  int
}

func openFolder(dir string) (*folderSource, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %v", ErrOpen, dir, err)
	}
	var files []string
	for _, e := range entries {
		switch strings.ToLower(filepath.Ext(e.Name())) {
		case ".png", ".jpg", ".jpeg", ".bmp":
			files = append(files, filepath.Join(dir, e.Name()))
		}
	}
	sort.Strings(files)
	if len(files) == 0 {
		return nil, fmt.Errorf("%w %s: no images", ErrOpen, dir)
	}
	return &folderSource{files: files}, nil
}

func (s *folderSource) Read(dst *gocv.Mat) error {
	for s.next < len(s.files) {
		f := s.files[s.next]
		s.next++
		m := gocv.IMRead(f, gocv.IMReadColor)
		if m.Empty() {
			m.Close()
			continue // not an image after all: skip it
		}
		m.CopyTo(dst)
		m.Close()
		return nil
	}
	return io.EOF
}

func (s *folderSource) Close() error { return nil }
