package e2e

import (
	"bufio"
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSecondCheckpointd runs checkpointd twice on one configuration: the
// second exits non-zero within seconds, saying another process holds the
// database, and the first runs on.
func TestSecondCheckpointd(t *testing.T) {
	readSources()
	dir := withoutCamera(t)
	first := exec.Command(filepath.Join(toolsDir, "checkpointd"), "--config", "cp.toml")
	first.Dir = dir
	logs, err := first.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	started := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(logs)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "checkpoint starting") {
				close(started)
				for sc.Scan() {
				}
			}
		}
		exited <- first.Wait()
	}()
	defer func() {
		first.Process.Kill()
		<-exited
	}()
	select {
	case <-started:
	case err := <-exited:
		t.Fatalf("the first checkpointd exited: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the first checkpointd did not start")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	second := exec.CommandContext(ctx, filepath.Join(toolsDir, "checkpointd"), "--config", "cp.toml")
	second.Dir = dir
	begin := time.Now()
	out, err := second.CombinedOutput()
	took := time.Since(begin)
	if ctx.Err() != nil {
		t.Fatalf("the second checkpointd was still running after %v:\n%s", took, out)
	}
	if _, ok := err.(*exec.ExitError); !ok {
		t.Fatalf("the second checkpointd on a held database: %v\n%s", err, out)
	}
	for _, want := range []string{"held by another process", "cp.db is locked", "another checkpointd"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the second checkpointd's message lacks %q:\n%s", want, out)
		}
	}
	if took > 10*time.Second {
		t.Errorf("the second checkpointd took %v to give up", took)
	}
	select {
	case err := <-exited:
		t.Errorf("the first checkpointd exited: %v", err)
	default:
	}
}
