package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func write(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "checkpoint.toml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestExampleConfigLoads(t *testing.T) {
	c, err := Load("../../configs/checkpoint.toml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "gate-3" || c.Camera.Device != "/dev/video0" || c.Camera.Width != 1280 ||
		time.Duration(c.Camera.Forget) != 3*time.Second || c.Trust.RootKey != "/etc/checkpoint/root.pub" || c.Metrics.Listen != "127.0.0.1:9731" ||
		time.Duration(c.Sync.MaxAnchorRTT) != 4*time.Second {
		t.Errorf("loaded %+v", c)
	}
}

func TestDefaultsAndRelativePaths(t *testing.T) {
	p := write(t, "[trust]\nroot_key = \"keys/root.pub\"\ntrust_list = \"/abs/trust.cbor\"\n")
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if c.Trust.RootKey != filepath.Join(filepath.Dir(p), "keys/root.pub") || c.Trust.TrustList != "/abs/trust.cbor" {
		t.Errorf("paths %+v", c.Trust)
	}
	if c.Camera.FPS != 30 || time.Duration(c.Camera.Budget) != 60*time.Millisecond || c.Name != "checkpoint" ||
		time.Duration(c.Sync.MaxAnchorRTT) != 4*time.Second {
		t.Errorf("defaults not applied: %+v", c)
	}
}

func TestRejects(t *testing.T) {
	for text, want := range map[string]string{
		"[trust]\ntrust_list = \"t\"\n":                                                     "root_key",
		"[trust]\nroot_key = \"r\"\n":                                                       "trust_list",
		"[trust]\nroot_key = \"r\"\ntrust_list = \"t\"\n[camera]\nworkers = -1\n":           "negative",
		"[trust]\nroot_key = \"r\"\ntrust_list = \"t\"\n[camera]\nforgett = \"3s\"\n":       "forgett",
		"[trust]\nroot_key = \"r\"\ntrust_list = \"t\"\n[camera]\nforget = \"soon\"\n":      "soon",
		"[trust]\nroot_key = \"r\"\ntrust_list = \"t\"\n[sync]\nmax_anchor_rtt = \"0s\"\n":  "max_anchor_rtt",
		"[trust]\nroot_key = \"r\"\ntrust_list = \"t\"\n[sync]\nmax_anchor_rtt = \"-1s\"\n": "max_anchor_rtt",
		"[trust\n": "expected", // TOML's own complaint, not only "config"
	} {
		_, err := Load(write(t, text))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("config %q: error %v, want one mentioning %q", text, err, want)
		}
	}
}

func TestMaxAnchorRTT(t *testing.T) {
	c, err := Load(write(t, "[trust]\nroot_key = \"r\"\ntrust_list = \"t\"\n[sync]\nmax_anchor_rtt = \"1500ms\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := time.Duration(c.Sync.MaxAnchorRTT); got != 1500*time.Millisecond {
		t.Errorf("max_anchor_rtt %v, want 1.5s", got)
	}
}
