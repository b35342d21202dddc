// Command gen renders the spoken prompts of internal/voice into a folder
// with espeak-ng, those that are missing only, so that an operator's
// recordings stay: go run ./internal/voice/gen -out voice. `make setup`
// runs it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/checkpointd/checkpoint/internal/voice"
)

func main() {
	out := flag.String("out", "voice", "the folder of the WAV files")
	flag.Parse()
	if err := run(*out); err != nil {
		fmt.Fprintln(os.Stderr, "voice:", err)
		os.Exit(1)
	}
}

func run(out string) error {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	made := 0
	for _, pr := range voice.All() {
		_, err := os.Stat(filepath.Join(out, pr.File()))
		if err == nil {
			continue
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if err := voice.Render(context.Background(), pr, out); err != nil {
			return err
		}
		made++
	}
	if made > 0 {
		fmt.Printf("voice: %d prompts rendered into %s\n", made, out)
	}
	return nil
}
