// Command gatevideo renders a video of people showing codes to a gate's
// camera, one after the other, for the demo and for trying the daemon
// without a camera: each argument is a file holding one person's QR text
// (what holder present prints). Without files it renders -tail of an
// empty gate. make demo runs it.
//
//	gatevideo -out gate.avi [-fps 30] [-each 2s] [-gap 1s] [-tail 1s] [TEXTFILE...]
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/checkpointd/checkpoint/internal/scene"
)

func main() {
	out := flag.String("out", "gate.avi", "video file to write (MJPEG AVI)")
	fps := flag.Float64("fps", 30, "frames a second")
	each := flag.Duration("each", 2*time.Second, "time each person holds the phone up")
	gap := flag.Duration("gap", time.Second, "time between people")
	tail := flag.Duration("tail", time.Second, "time after the last person")
	flag.Parse()
	if *tail <= 0 && flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: gatevideo [-out FILE] [-fps N] [-each D] [-gap D] [-tail D] [TEXTFILE...]")
		os.Exit(2)
	}
	var people []scene.Appearance
	t := *gap
	for i, path := range flag.Args() {
		b, err := os.ReadFile(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, "gatevideo:", err)
			os.Exit(2)
		}
		// Each person holds the phone a little differently.
		pose := scene.Params{
			ModulePx: 3.2 + 0.4*float64(i%3), CenterX: 0.42 + 0.08*float64(i%3), CenterY: 0.5,
			Rotation: float64(-12 + 9*(i%4)), TiltX: float64(-10 + 7*(i%4)), TiltY: float64(8 - 6*(i%3)),
			Ambient: 0.9, Screen: 0.95, Gamma: 1, Noise: 2.5, JPEGQuality: 85, Glare: 0.3 * float64(i%2),
			GlareX: 0.7, GlareY: 0.3,
		}
		people = append(people, scene.Appearance{Text: strings.TrimRight(string(b), "\r\n"), Start: t, End: t + *each, Pose: pose})
		t += *each + *gap
	}
	if len(people) > 0 {
		t -= *gap
	}
	t += *tail
	if err := scene.WriteVideo(*out, *fps, t, 2026, people); err != nil {
		fmt.Fprintln(os.Stderr, "gatevideo:", err)
		os.Exit(1)
	}
	fmt.Printf("%s: %d people, %.1f s at %.0f frames a second\n", *out, len(people), t.Seconds(), *fps)
}
