package scene

import (
	"fmt"
	"math"
	"time"

	"gocv.io/x/gocv"
)

// Appearance is one person showing a code to the camera: the phone comes
// up into view at Start, is held with a slight tremor, and goes down at
// End.
type Appearance struct {
	Text       string
	Start, End time.Duration
	// Pose is where and how the phone is held (Text, Background and the
	// noise seed are set per frame).
	Pose Params
}

// Timing of a phone's movements, and how fast it moves meanwhile: a phone
// is raised into view for RaiseTime from its Start, held, and lowered for
// LowerTime before its End. A code is "shown" from Start + RaiseTime.
const (
	RaiseTime = 400 * time.Millisecond
	LowerTime = 300 * time.Millisecond
)

// FrameAt returns the parameters of the frame at time t: the phone of the
// appearance under way, if any, rising, held or lowering.
func FrameAt(t time.Duration, background uint64, people []Appearance, frame int) Params {
	for _, a := range people {
		if t < a.Start || t >= a.End {
			continue
		}
		p := a.Pose
		p.Text = a.Text
		p.Background = background
		p.NoiseSeed = background + uint64(frame%6) + 1
		// Out of view below the frame, then up: 1 is out, 0 is held.
		away := 0.0
		if in := float64(t-a.Start) / float64(RaiseTime); in < 1 {
			away = 1 - in
		}
		if out := float64(a.End-t) / float64(LowerTime); out < 1 {
			away = math.Max(away, 1-out)
		}
		p.CenterY += away * 0.9
		if away > 0 {
			p.MotionBlur = math.Max(p.MotionBlur, 25*away)
			p.MotionAngle = 90
		}
		// A hand is never still.
		sec := t.Seconds()
		p.CenterX += 0.002 * math.Sin(7*sec)
		p.CenterY += 0.002 * math.Cos(5*sec)
		p.Rotation += 0.8 * math.Sin(3*sec)
		return p
	}
	return Params{NoPhone: true, Background: background, NoiseSeed: background + uint64(frame%6) + 1,
		Ambient: 1, Screen: 1, Gamma: 1, Noise: 2, JPEGQuality: 90}
}

// WriteVideo renders the appearances at fps for the given duration into an
// MJPEG AVI file at path, which OpenCV reads back like a camera's stream.
func WriteVideo(path string, fps float64, duration time.Duration, background uint64, people []Appearance) error {
	w, err := gocv.VideoWriterFile(path, "MJPG", fps, Width, Height, true)
	if err != nil {
		return fmt.Errorf("scene: %w", err)
	}
	defer w.Close()
	if !w.IsOpened() {
		return fmt.Errorf("scene: cannot write video %s", path)
	}
	n := int(duration.Seconds() * fps)
	for i := 0; i < n; i++ {
		t := time.Duration(float64(i) / fps * float64(time.Second))
		m, _, err := Render(FrameAt(t, background, people, i))
		if err != nil {
			return err
		}
		err = w.Write(m)
		m.Close()
		if err != nil {
			return fmt.Errorf("scene: writing %s: %w", path, err)
		}
	}
	return nil
}
