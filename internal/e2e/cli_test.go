package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/checkpointd/checkpoint/internal/credential"
	"github.com/checkpointd/checkpoint/internal/scene"
)

// tools builds the commands once per test binary.
var toolsDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "checkpoint-e2e-")
	if err != nil {
		panic(err)
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	cmd := exec.Command(goTool, "build", "-o", dir+string(os.PathSeparator), "github.com/checkpointd/checkpoint/cmd/...")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		panic("building the commands: " + err.Error())
	}
	toolsDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// readSources reads every Go source file of the module. The binaries are
// built by a child process, whose reads the test cache does not see; reading
// the sources here makes any change to them invalidate a cached result.
// It must run inside a test: reads in TestMain before m.Run are not logged.
func readSources() {
	root, err := filepath.Abs("../..")
	if err != nil {
		panic(err)
	}
	err = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if !d.IsDir() && (strings.HasSuffix(path, ".go") || d.Name() == "go.mod" || d.Name() == "go.sum") {
			_, err = os.ReadFile(path)
		}
		return err
	})
	if err != nil {
		panic(err)
	}
}

type result struct {
	code           int
	stdout, stderr string
}

func runTool(t *testing.T, dir, tool string, args ...string) result {
	t.Helper()
	cmd := exec.Command(filepath.Join(toolsDir, tool), args...)
	cmd.Dir = dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s %v: %v", tool, args, err)
	}
	return result{code, out.String(), errb.String()}
}

// must runs a tool that has to succeed and returns its standard output.
func must(t *testing.T, dir, tool string, args ...string) string {
	t.Helper()
	r := runTool(t, dir, tool, args...)
	if r.code != 0 {
		t.Fatalf("%s %s: exit %d: %s", tool, strings.Join(args, " "), r.code, r.stderr)
	}
	return r.stdout
}

const (
	issueAt   = "2026-11-25T12:00:00Z"
	presentAt = "2026-11-25T12:00:05Z"
	verifyAt  = "2026-11-25T12:00:10Z"
)

type verdict struct {
	Decision string   `json:"decision"`
	Reasons  []string `json:"reasons"`
	Code     *struct {
		MaskedName string `json:"masked_name"`
		Static     bool   `json:"static"`
	} `json:"code"`
}

// TestCommandLineContract walks the documented commands through every demo
// case and checks decisions, reasons and exit statuses.
func TestCommandLineContract(t *testing.T) {
	readSources()
	dir := t.TempDir()
	must(t, dir, "authority", "keygen", "--out", "auth")
	for _, f := range []string{"root.key", "root.pub", "issuer.key", "issuer.pub"} {
		if _, err := os.Stat(filepath.Join(dir, "auth", f)); err != nil {
			t.Fatalf("keygen did not write %s", f)
		}
	}
	if st, _ := os.Stat(filepath.Join(dir, "auth", "issuer.key")); st.Mode().Perm() != 0o600 {
		t.Errorf("issuer.key has mode %v", st.Mode().Perm())
	}
	must(t, dir, "authority", "trust", "--root", "auth/root.key", "--issuer", "auth/issuer.pub",
		"--region", "44", "--at", issueAt, "--out", "trust.cbor")
	must(t, dir, "holder", "keygen", "--out", "phone")
	must(t, dir, "authority", "keygen", "--out", "forger")

	issue := func(out, colour string, extra ...string) {
		args := append([]string{"issue", "--issuer", "auth/issuer.key", "--holder", "phone/holder.pub",
			"--id-number", "11010519491231002X", "--name", "张三丰", "--colour", colour,
			"--region", "44", "--at", issueAt, "--out", out}, extra...)
		must(t, dir, "authority", args...)
	}
	issue("green.cbor", "green")
	issue("yellow.cbor", "yellow")
	issue("red.cbor", "red", "--region", "4401")
	issue("expired.cbor", "green", "--at", "2026-11-23T12:00:00Z", "--valid", "24h")
	must(t, dir, "authority", "issue", "--issuer", "forger/issuer.key", "--holder", "phone/holder.pub",
		"--id-number", "11010519491231002X", "--name", "张三丰", "--colour", "green", "--region", "44", "--at", issueAt,
		"--out", "forged.cbor")
	must(t, dir, "authority", "issue", "--issuer", "auth/issuer.key", "--static", "--id-number", "440305193904051112",
		"--name", "周九", "--colour", "green", "--region", "44", "--at", issueAt, "--valid", "168h", "--out", "paper.cbor")

	present := func(cred string, extra ...string) string {
		args := append([]string{"present", "--credential", cred, "--key", "phone/holder.key", "--at", presentAt}, extra...)
		return strings.TrimSpace(must(t, dir, "holder", args...))
	}
	green := present("green.cbor", "--png", "green.png")
	if !strings.HasPrefix(green, "CP2:") {
		t.Fatalf("holder present printed %q", green)
	}

	verifyJSON := func(t *testing.T, wantExit int, args ...string) verdict {
		t.Helper()
		all := append([]string{"verify", "--trust", "trust.cbor", "--root", "auth/root.pub", "--at", verifyAt, "--json"}, args...)
		r := runTool(t, dir, "checkpointctl", all...)
		if r.code != wantExit {
			t.Fatalf("exit %d, want %d: %s %s", r.code, wantExit, r.stdout, r.stderr)
		}
		var v verdict
		if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
			t.Fatalf("output is not one JSON object: %q", r.stdout)
		}
		return v
	}

	paper := strings.TrimSpace(must(t, dir, "holder", "present", "--credential", "paper.cbor"))
	cases := []struct {
		name     string
		args     []string
		decision string
		reasons  []string
	}{
		{"green", []string{"--text", green}, "pass", []string{}},
		{"green from the picture", []string{"--image", "green.png"}, "pass", []string{}},
		{"yellow", []string{"--text", present("yellow.cbor")}, "refer", []string{"status_yellow"}},
		{"red", []string{"--text", present("red.cbor")}, "refuse", []string{"status_red"}},
		{"expired", []string{"--text", present("expired.cbor")}, "refuse", []string{"expired"}},
		{"forged", []string{"--text", present("forged.cbor")}, "refuse", []string{"unknown_issuer_key"}},
		{"screenshot", []string{"--text", present("green.cbor", "--at", "2026-11-25T11:58:10Z")}, "refuse", []string{"presentation_stale"}},
		{"paper code", []string{"--text", paper}, "refer", []string{"static_code"}},
		{"paper code with ID card", []string{"--text", paper, "--id-number", "440305193904051112"}, "pass", []string{"static_code"}},
		{"garbage", []string{"--text", "CP2:ABC"}, "refuse", []string{"malformed"}},
		{"version 1", []string{"--text", "CP1:" + green[len("CP2:"):]}, "refuse", []string{"unsupported_version"}},
		{"other version", []string{"--text", "CP7:ABC"}, "refuse", []string{"unsupported_version"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			want := 1
			if tc.decision == "pass" {
				want = 0
			}
			v := verifyJSON(t, want, tc.args...)
			if v.Decision != tc.decision || !slices.Equal(v.Reasons, tc.reasons) {
				t.Errorf("got %s %v, want %s %v", v.Decision, v.Reasons, tc.decision, tc.reasons)
			}
		})
	}

	t.Run("revoked", func(t *testing.T) {
		must(t, dir, "authority", "revoke", "--root", "auth/root.key", "--id-number", "11010519491231002x",
			"--at", "2026-11-25T12:00:02Z", "--list", "revocations.cbor")
		v := verifyJSON(t, 1, "--text", green, "--revocations", "revocations.cbor")
		if v.Decision != "refuse" || !slices.Equal(v.Reasons, []string{"revoked"}) {
			t.Errorf("got %s %v", v.Decision, v.Reasons)
		}
		// Cleared and re-issued after the revocation: passes.
		issue("again.cbor", "green", "--at", "2026-11-25T12:00:03Z")
		v = verifyJSON(t, 0, "--text", present("again.cbor"), "--revocations", "revocations.cbor")
		if v.Decision != "pass" {
			t.Errorf("re-issued credential: %s %v", v.Decision, v.Reasons)
		}
	})

	t.Run("human output", func(t *testing.T) {
		r := runTool(t, dir, "checkpointctl", "verify", "--text", green, "--trust", "trust.cbor", "--root", "auth/root.pub", "--at", verifyAt)
		if r.code != 0 || !strings.Contains(r.stdout, "PASS") || !strings.Contains(r.stdout, "通过") ||
			!strings.Contains(r.stdout, "张*丰, region 44,") {
			t.Errorf("exit %d: %s", r.code, r.stdout)
		}
	})

	t.Run("usage errors", func(t *testing.T) {
		for _, tc := range []struct {
			tool    string
			args    []string
			mention string
		}{
			{"checkpointctl", []string{"verify", "--text", green, "--trust", "nosuch.cbor", "--root", "auth/root.pub"}, "nosuch.cbor"},
			{"checkpointctl", []string{"verify", "--text", green, "--trust", "trust.cbor", "--root", "nosuch.pub"}, "nosuch.pub"},
			{"checkpointctl", []string{"verify", "--image", "nosuch.png", "--trust", "trust.cbor", "--root", "auth/root.pub"}, "nosuch.png"},
			{"checkpointctl", []string{"verify", "--trust", "trust.cbor", "--root", "auth/root.pub"}, "--text"},
			{"checkpointctl", []string{"verify", "--bogus"}, "bogus"},
			{"checkpointctl", []string{"frobnicate"}, "frobnicate"},
			{"authority", []string{"issue", "--issuer", "nosuch.key", "--holder", "phone/holder.pub", "--id-number", "11010519491231002X",
				"--name", "x", "--colour", "green", "--region", "44", "--out", "x.cbor"}, "nosuch.key"},
			{"authority", []string{"issue", "--issuer", "auth/issuer.key", "--holder", "phone/holder.pub", "--id-number", "11010519491231002X",
				"--name", "x", "--colour", "purple", "--region", "44", "--out", "x.cbor"}, "purple"},
			{"authority", []string{"issue", "--issuer", "auth/issuer.key", "--holder", "phone/holder.pub", "--id-number", "11010519491231002X",
				"--name", "x", "--colour", "green", "--out", "x.cbor"}, "--region is required: the issuing region code, e.g. 44"},
			{"authority", []string{"issue", "--issuer", "auth/issuer.key", "--holder", "phone/holder.pub", "--id-number", "440305zz1224",
				"--name", "x", "--colour", "green", "--region", "44", "--out", "x.cbor"}, "--id-number: not a valid ID number"},
			{"authority", []string{"issue", "--issuer", "auth/issuer.key", "--holder", "phone/holder.pub", "--id-number", "110105491231002",
				"--name", "x", "--colour", "green", "--region", "44", "--out", "x.cbor"}, "first-generation"},
			{"authority", []string{"issue", "--issuer", "auth/issuer.key", "--holder", "phone/holder.pub", "--id-number", "110105194912310021",
				"--name", "x", "--colour", "green", "--region", "44", "--out", "x.cbor"}, "check character"},
			{"authority", []string{"revoke", "--root", "auth/root.key", "--id-number", "440305zz1224", "--list", "r.cbor"}, "--id-number"},
			{"authority", []string{"revoke", "--server", "http://127.0.0.1:9", "--token", "auth/admin.token", "--id-number", "110105491231002"},
				"first-generation"},
			{"checkpointctl", []string{"verify", "--text", green, "--trust", "trust.cbor", "--root", "auth/root.pub",
				"--id-number", "440305zz1224"}, "--id-number: not a valid ID number"},
			{"authority", []string{"trust", "--root", "auth/root.key", "--out", "t.cbor"}, "--issuer"},
			{"holder", []string{"present", "--credential", "nosuch.cbor", "--key", "phone/holder.key"}, "nosuch.cbor"},
			{"holder", []string{"present", "--credential", "green.cbor", "--key", "forger/issuer.key"}, "not the holder key"},
		} {
			r := runTool(t, dir, tc.tool, tc.args...)
			if r.code != 2 || !strings.Contains(r.stderr, tc.mention) {
				t.Errorf("%s %v: exit %d, stderr %q; want exit 2 naming %q", tc.tool, tc.args, r.code, r.stderr, tc.mention)
			}
		}
	})

	t.Run("private keys others can read are refused", func(t *testing.T) {
		must(t, dir, "authority", "keygen", "--out", "loose")
		if err := os.Chmod(filepath.Join(dir, "loose", "issuer.key"), 0o644); err != nil {
			t.Fatal(err)
		}
		r := runTool(t, dir, "authority", "issue", "--issuer", "loose/issuer.key", "--holder", "phone/holder.pub",
			"--id-number", "11010519491231002X", "--name", "张三丰", "--colour", "green", "--region", "44", "--out", "loose.cbor")
		if r.code == 0 || !strings.Contains(r.stderr, "readable by group or others") {
			t.Errorf("exit %d: %s", r.code, r.stderr)
		}
		if _, err := os.Stat(filepath.Join(dir, "loose.cbor")); err == nil {
			t.Error("a credential was written anyway")
		}
	})

	t.Run("keygen makes new pairs but keeps the pseudonym key", func(t *testing.T) {
		read := func(name string) string {
			b, err := os.ReadFile(filepath.Join(dir, "auth", name))
			if err != nil {
				t.Fatal(err)
			}
			return string(b)
		}
		root, pseudo := read("root.pub"), read("pseudonym.key")
		must(t, dir, "authority", "keygen", "--out", "auth")
		if read("root.pub") == root {
			t.Error("keygen kept the old root key")
		}
		if read("pseudonym.key") != pseudo {
			t.Error("keygen replaced the pseudonym key")
		}
	})
}

// TestCodeCarriesNothingOfTheIDNumber issues credentials to two people born
// in different regions, alike in everything else, and checks that only the
// subject pseudonym and the ID hash tell their codes apart: the region is
// the issuer's, and no text in a code holds any part of an ID number.
func TestCodeCarriesNothingOfTheIDNumber(t *testing.T) {
	readSources()
	dir := t.TempDir()
	must(t, dir, "authority", "keygen", "--out", "auth")
	must(t, dir, "holder", "keygen", "--out", "phone")
	ids := []string{"11010519491231002X", "44030519880506122X"} // born in Beijing and in Shenzhen
	var creds []credential.Credential
	for i, id := range ids {
		out := fmt.Sprintf("c%d.cbor", i)
		must(t, dir, "authority", "issue", "--issuer", "auth/issuer.key", "--holder", "phone/holder.pub", "--id-number", id,
			"--name", "张三丰", "--colour", "green", "--region", "44", "--at", issueAt, "--out", out)
		raw, err := os.ReadFile(filepath.Join(dir, out))
		if err != nil {
			t.Fatal(err)
		}
		code, err := credential.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		c := code.Credential
		if c.Region != "44" {
			t.Errorf("the code of an ID number starting %s carries region %s, want the issuing region 44", id[:6], c.Region)
		}
		fields := reflect.ValueOf(c)
		for f := 0; f < fields.NumField(); f++ {
			v := fields.Field(f)
			if v.Kind() != reflect.String || fields.Type().Field(f).Name == "Region" {
				continue
			}
			for j := 0; j+2 <= len(id); j++ {
				if strings.Contains(v.String(), id[j:j+2]) {
					t.Errorf("%s %q holds %q of the ID number", fields.Type().Field(f).Name, v.String(), id[j:j+2])
				}
			}
		}
		creds = append(creds, c)
	}
	a, b := creds[0], creds[1]
	if bytes.Equal(a.Subject, b.Subject) {
		t.Error("two ID numbers have one subject")
	}
	// The subject and ID hash come from the ID number; the credential id
	// is random.
	b.Subject, b.IDHash, b.ID = a.Subject, a.IDHash, a.ID
	if !reflect.DeepEqual(a, b) {
		t.Errorf("the codes differ in more than the subject and ID hash:\n%+v\n%+v", a, b)
	}

	r := runTool(t, dir, "authority", "issue", "--issuer", "auth/issuer.key", "--holder", "phone/holder.pub", "--id-number", ids[0],
		"--name", "张三丰", "--colour", "green", "--region", "440305", "--out", "county.cbor")
	if r.code != 0 || !strings.Contains(r.stderr, "warning: region 440305") || !strings.Contains(r.stderr, "3.65×10^7") {
		t.Errorf("issue for a county region: exit %d, stderr %q; want a warning", r.code, r.stderr)
	}
}

// TestDecodeAndDaemon runs checkpointctl decode on pictures and checkpointd
// on a rendered video, as processes.
func TestDecodeAndDaemon(t *testing.T) {
	readSources()
	dir := t.TempDir()
	must(t, dir, "authority", "keygen", "--out", "auth")
	must(t, dir, "holder", "keygen", "--out", "phone")
	must(t, dir, "authority", "trust", "--root", "auth/root.key", "--issuer", "auth/issuer.pub", "--out", "trust.cbor")
	must(t, dir, "authority", "issue", "--issuer", "auth/issuer.key", "--holder", "phone/holder.pub",
		"--id-number", "11010519491231002X", "--name", "张三丰", "--colour", "green", "--region", "44", "--out", "c.cbor")
	text := strings.TrimSpace(must(t, dir, "holder", "present", "--credential", "c.cbor", "--key", "phone/holder.key", "--png", "code.png"))

	// An image with no code at all.
	blank, _, err := scene.Render(scene.Params{NoPhone: true, Ambient: 1, Background: 4})
	if err != nil {
		t.Fatal(err)
	}
	gocv.IMWrite(filepath.Join(dir, "blank.jpg"), blank)
	blank.Close()

	out := must(t, dir, "checkpointctl", "decode", "--json", "code.png", "blank.jpg")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("decode printed %d lines, want one per image: %q", len(lines), out)
	}
	var got [2]struct {
		File     string   `json:"file"`
		Texts    []string `json:"texts"`
		DecodeMS *float64 `json:"decode_ms"`
	}
	for i, l := range lines {
		if err := json.Unmarshal([]byte(l), &got[i]); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
	}
	if got[0].File != "code.png" || len(got[0].Texts) != 1 || got[0].Texts[0] != text || got[0].DecodeMS == nil || *got[0].DecodeMS <= 0 {
		t.Errorf("code.png: %+v", got[0])
	}
	if got[1].File != "blank.jpg" || got[1].Texts == nil || len(got[1].Texts) != 0 {
		t.Errorf("blank.jpg: %+v (want an empty list of texts)", got[1])
	}
	if r := runTool(t, dir, "checkpointctl", "decode", "nosuch.png"); r.code != 2 || !strings.Contains(r.stderr, "nosuch.png") {
		t.Errorf("decode of a missing file: exit %d, %q", r.code, r.stderr)
	}

	// checkpointd on a video of the holder showing the code.
	video := filepath.Join(dir, "gate.avi")
	pose := scene.Params{ModulePx: 3.5, CenterX: 0.5, CenterY: 0.5, Ambient: 1, Screen: 1, Gamma: 1, Noise: 2}
	if err := scene.WriteVideo(video, 10, 2*time.Second, 5, []scene.Appearance{
		{Text: text, Start: 200 * time.Millisecond, End: 1800 * time.Millisecond, Pose: pose},
	}); err != nil {
		t.Fatal(err)
	}
	must(t, dir, "authority", "revoke", "--root", "auth/root.key", "--id-number", "110101199001010015", "--list", "revs.cbor")
	// A box without a thermometer, whose policy takes no temperature.
	if err := os.WriteFile(filepath.Join(dir, "policy.json"), []byte(`{"temperature_required": false}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cp.toml"), []byte(`name = "e2e"
[trust]
root_key = "auth/root.pub"
trust_list = "trust.cbor"
revocations = "revs.cbor"
policy = "policy.json"
[camera]
device = "gate.avi"
[store]
path = "cp.db"
`), 0o644); err != nil {
		t.Fatal(err)
	}
	r := runTool(t, dir, "checkpointd", "--config", "cp.toml", "--json")
	if r.code != 0 {
		t.Fatalf("checkpointd: exit %d: %s", r.code, r.stderr)
	}
	var dec struct {
		Decision string   `json:"decision"`
		Reasons  []string `json:"reasons"`
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(r.stdout)), &dec); err != nil || dec.Decision != "pass" {
		t.Errorf("checkpointd showed %q (%v)", r.stdout, err)
	}
	if strings.Contains(r.stderr, "CP2:") || strings.Contains(r.stderr, "张") {
		t.Error("checkpointd logged a code or a name")
	}
	if r := runTool(t, dir, "checkpointd", "--config", "nosuch.toml"); r.code != 2 || !strings.Contains(r.stderr, "nosuch.toml") {
		t.Errorf("checkpointd without its configuration: exit %d, %q", r.code, r.stderr)
	}
}
