package voice

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// EspeakVoice is the espeak-ng voice the prompts are rendered with:
// Mandarin that reads its own pinyin. Debian's plain "cmn" voice reads the
// tone numbers of characters missing from its short dictionary in English
// ("lv four" for 绿).
const EspeakVoice = "cmn-latn-pinyin"

// Render writes the prompt's WAV file into dir with espeak-ng, replacing
// it only once the new one is whole and not silence.
func Render(ctx context.Context, pr Prompt, dir string) error {
	file := filepath.Join(dir, pr.File())
	tmp := file + ".tmp"
	defer os.Remove(tmp)
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "espeak-ng", "-v", EspeakVoice, "-w", tmp, pr.Text())
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("espeak-ng %s: %w: %s", pr, err, lastLine(stderr.String()))
	}
	data, err := os.ReadFile(tmp)
	if err != nil {
		return err
	}
	if _, _, err := level(data); err != nil {
		return fmt.Errorf("espeak-ng %s: %w", pr, err)
	}
	return os.Rename(tmp, file)
}

// Below this root mean square (of full scale 1) a recording is silence.
const silence = 0.01

// level reads a RIFF/WAVE file of 16-bit PCM, mono or stereo, and returns
// the root mean square of its samples (full scale: 1) and its length. A
// file that is not such a WAV, or is silence, is an error.
func level(data []byte) (rms float64, length time.Duration, err error) {
	if len(data) < 12 || string(data[:4]) != "RIFF" || string(data[8:12]) != "WAVE" {
		return 0, 0, errors.New("not a RIFF/WAVE file")
	}
	var format, channels, bits uint16
	var rate uint32
	var samples []byte
	for rest := data[12:]; len(rest) >= 8; {
		id, size := string(rest[:4]), binary.LittleEndian.Uint32(rest[4:8])
		rest = rest[8:]
		n := int(min(uint64(size), uint64(len(rest)))) // a streamed WAV leaves its sizes unset
		switch id {
		case "fmt ":
			if n < 16 {
				return 0, 0, errors.New("short fmt chunk")
			}
			format, channels = binary.LittleEndian.Uint16(rest[0:2]), binary.LittleEndian.Uint16(rest[2:4])
			rate, bits = binary.LittleEndian.Uint32(rest[4:8]), binary.LittleEndian.Uint16(rest[14:16])
		case "data":
			samples = rest[:n]
		}
		rest = rest[min(n+n%2, len(rest)):]
	}
	switch {
	case format != 1 || bits != 16 || (channels != 1 && channels != 2) || rate == 0:
		return 0, 0, fmt.Errorf("not 16-bit PCM mono or stereo (format %d, %d bits, %d channels, %d Hz)", format, bits, channels, rate)
	case len(samples) < 2:
		return 0, 0, errors.New("no samples")
	}
	var sum float64
	n := len(samples) / 2
	for i := 0; i < n; i++ {
		v := float64(int16(binary.LittleEndian.Uint16(samples[2*i:]))) / 32768
		sum += v * v
	}
	rms = math.Sqrt(sum / float64(n))
	length = time.Duration(float64(n/int(channels)) / float64(rate) * float64(time.Second))
	if rms < silence {
		return rms, length, fmt.Errorf("silence (RMS %.4f)", rms)
	}
	return rms, length, nil
}
