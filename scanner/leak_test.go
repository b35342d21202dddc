//go:build matprofile

package scanner_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/checkpointd/checkpoint/internal/scene"
	"github.com/checkpointd/checkpoint/scanner"
)

// TestNoMatLeak counts OpenCV matrices with gocv's profile (build tag
// matprofile): after a pipeline has run a video and been stopped, and
// after decoders have read frames, every Mat made is closed.
func TestNoMatLeak(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gate.avi")
	if err := scene.WriteVideo(path, 10, 3*time.Second, 1, people()); err != nil {
		t.Fatal(err)
	}
	before := gocv.MatProfile.Count()
	for round := 0; round < 3; round++ {
		p := scanner.NewPipeline(scanner.Config{Source: scanner.SourceConfig{Device: path}, Workers: 2}, nil, nil, nil)
		collect(t, p, context.Background())
	}
	// Both decoders, on frames of every level: every stage of the cascade
	// runs (the pair search, the fallbacks, the still-image passes).
	camera := scanner.NewDecoder(scanner.DecoderOptions{})
	still := scanner.NewDecoder(scanner.DecoderOptions{Still: true})
	for _, c := range scene.Corpus(2, 1, 1, scene.CodeText) {
		m, _, err := scene.Render(c.Params)
		if err != nil {
			t.Fatal(err)
		}
		camera.Decode(m)
		still.Decode(m)
		m.Close()
	}
	camera.Close()
	still.Close()
	if after := gocv.MatProfile.Count(); after != before {
		t.Errorf("%d Mats open after the runs, %d before", after, before)
	}
}
