package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// withoutCamera makes a folder with keys, a trust list and cp.toml, the
// configuration of a checkpoint whose camera is not there: checkpointd
// keeps trying to open it, holding its database meanwhile.
func withoutCamera(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	must(t, dir, "authority", "keygen", "--out", "auth")
	must(t, dir, "authority", "trust", "--root", "auth/root.key", "--issuer", "auth/issuer.pub", "--out", "trust.cbor")
	if err := os.WriteFile(filepath.Join(dir, "cp.toml"), []byte(`name = "e2e"
[trust]
root_key = "auth/root.pub"
trust_list = "trust.cbor"
[camera]
device = "/dev/video-unplugged"
[store]
path = "cp.db"
`), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestStopWithoutCamera: a checkpointd whose camera cannot be opened keeps
// to its backoff (a few log lines, not a flood) and stops on SIGTERM at
// once.
func TestStopWithoutCamera(t *testing.T) {
	readSources()
	dir := withoutCamera(t)
	cmd := exec.Command(filepath.Join(toolsDir, "checkpointd"), "--config", "cp.toml")
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	// The first waits are 250 ms, 500 ms, 1 s (at most, with jitter):
	// within 2 s there are a handful of attempts, each logged once.
	time.Sleep(2 * time.Second)
	cmd.Process.Signal(syscall.SIGTERM)
	start := time.Now()
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("checkpointd exited with %v after SIGTERM", err)
		}
		t.Logf("stopped %v after SIGTERM", time.Since(start).Round(time.Millisecond))
	case <-time.After(5 * time.Second):
		cmd.Process.Kill()
		<-exited
		t.Fatalf("checkpointd still running 5 s after SIGTERM; it wrote %d bytes of log", stderr.Len())
	}
	failures := strings.Count(stderr.String(), "video source failed")
	if failures < 1 || failures > 12 {
		t.Errorf("%d failures logged in 2 s (want each backoff step once): %.2000s", failures, stderr.String())
	}
}
