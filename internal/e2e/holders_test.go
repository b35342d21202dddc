package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/checkpointd/checkpoint/internal/pgtest"
	"github.com/checkpointd/checkpoint/internal/scene"
)

// holderAuthority makes an authority's keys, a feed key and a real-name
// service key, a trust list and rules.json (rules), and starts the
// authority with them and the flags extra. It returns its URL.
func holderAuthority(t *testing.T, dir, rules string, extra ...string) (string, *authorityProc) {
	t.Helper()
	must(t, dir, "authority", "keygen", "--out", "auth")
	must(t, dir, "authority", "keygen", "--kind", "feed", "--out", "health")
	must(t, dir, "authority", "keygen", "--kind", "realname", "--out", "realname")
	must(t, dir, "authority", "trust", "--root", "auth/root.key", "--issuer", "auth/issuer.pub", "--region", "44", "--out", "trust.cbor")
	if err := os.WriteFile(filepath.Join(dir, "rules.json"), []byte(rules), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freePort(t)
	auth := startAuthority(t, dir, addr, append([]string{"--region", "44", "--feed-key", "health/feed.pub",
		"--realname-key", "realname/realname.pub", "--rules", "rules.json"}, extra...)...)
	return "http://" + addr, auth
}

func writeFile(t *testing.T, dir, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestHolderCommands: the phone's and the operator's commands against a
// serving authority: a person registers with an office's code or a
// real-name assertion, declares, and gets the colour the rules give;
// a used code, another person's code and a second declaration the same
// day are refused, and say why.
func TestHolderCommands(t *testing.T) { testHolderCommands(t) }

// TestHolderCommandsPostgres is TestHolderCommands with the authority's
// database on PostgreSQL (a throwaway server of the test's own).
func TestHolderCommandsPostgres(t *testing.T) { testHolderCommands(t, "--db", pgtest.New(t)) }

func testHolderCommands(t *testing.T, extra ...string) {
	readSources()
	dir := t.TempDir()
	server, auth := holderAuthority(t, dir, `{"close_contact": {"quarantine": "1h"}}`, extra...)
	defer auth.kill()
	const id, name = "11010519491231002X", "张三丰"
	const other, otherName = "44030519880506122X", "王芳"
	must(t, dir, "holder", "keygen", "--out", "phone")
	must(t, dir, "holder", "keygen", "--out", "phone2")
	code := func(id, name string) string {
		return strings.TrimSpace(must(t, dir, "authority", "registration-code", "--server", server, "--token", "auth/admin.token",
			"--id-number", id, "--name", name, "--operator", "office-1"))
	}
	mine, theirs := code(id, name), code(other, otherName)
	register := func(key, id, name string, proof ...string) result {
		return runTool(t, dir, "holder", append([]string{"register", "--server", server, "--key", key, "--id-number", id,
			"--name", name}, proof...)...)
	}
	if r := register("phone/holder.key", id, name, "--code", theirs); r.code != 1 || !strings.Contains(r.stderr, "403") {
		t.Errorf("registration with another person's code: exit %d: %s", r.code, r.stderr)
	}
	if r := register("phone/holder.key", id, name); r.code != 2 || !strings.Contains(r.stderr, "--code") {
		t.Errorf("registration without a proof: exit %d: %s", r.code, r.stderr)
	}
	if r := register("phone/holder.key", id, name, "--code", mine); r.code != 0 || !strings.Contains(r.stdout, "registered with a registration code") {
		t.Fatalf("registration: exit %d: %s %s", r.code, r.stdout, r.stderr)
	}
	if r := register("phone2/holder.key", id, name, "--code", mine); r.code != 1 || !strings.Contains(r.stderr, "403") {
		t.Errorf("a used code: exit %d: %s", r.code, r.stderr)
	}
	out := must(t, dir, "holder", "declare", "--key", "phone/holder.key", "--out", "c1.cbor")
	if !strings.HasPrefix(out, "green (clean_declaration)") {
		t.Errorf("declare: %s", out)
	}
	r := runTool(t, dir, "holder", "declare", "--key", "phone/holder.key", "--fever", "--out", "c2.cbor")
	if r.code != 1 || !strings.Contains(r.stderr, "next declaration is allowed at") {
		t.Errorf("second declaration the same day: exit %d: %s", r.code, r.stderr)
	}
	if r := runTool(t, dir, "holder", "declare", "--key", "phone2/holder.key", "--out", "c2.cbor"); r.code != 2 ||
		!strings.Contains(r.stderr, "register first") {
		t.Errorf("declare before registering: exit %d: %s", r.code, r.stderr)
	}

	// The other person registers with the real-name service's assertion,
	// and declares a visit to an area the health department lists.
	must(t, dir, "authority", "realname-assert", "--key", "realname/realname.key", "--id-number", other, "--name", otherName,
		"--holder", "phone2/holder.pub", "--out", "assertion.cbor")
	if r := register("phone2/holder.key", other, otherName, "--assertion", "assertion.cbor"); r.code != 0 {
		t.Fatalf("registration with an assertion: exit %d: %s", r.code, r.stderr)
	}
	if r := register("phone2/holder.key", other, otherName, "--assertion", "assertion.cbor"); r.code != 1 {
		t.Errorf("the assertion used again: exit %d: %s", r.code, r.stderr)
	}
	today := time.Now().In(time.FixedZone("CST", 8*3600)).Format("2006-01-02")
	writeFile(t, dir, "areas.csv", "region,from,to\n440111,"+today+",\n")
	feed := func(kind, version, table string) result {
		return runTool(t, dir, "authority", "feed", "--server", server, "--token", "auth/admin.token", "--key", "health/feed.key",
			"--kind", kind, "--version", version, "--csv", table)
	}
	if r := feed("risk_areas", "1", "areas.csv"); r.code != 0 || !strings.Contains(r.stdout, "risk_areas feed version 1 applied: 1 rows") {
		t.Errorf("risk areas: exit %d: %s %s", r.code, r.stdout, r.stderr)
	}
	out = must(t, dir, "holder", "declare", "--key", "phone2/holder.key", "--travel", "440111:"+today, "--out", "w.cbor")
	if !strings.HasPrefix(out, "yellow (risk_area_travel), quarantine until ") {
		t.Errorf("a visit to a listed area: %s", out)
	}

	// A close contacts feed names the first person; sent again, it is
	// applied once; signed by another key, it is refused.
	writeFile(t, dir, "contacts.csv", "id_number,since\n"+id+","+time.Now().UTC().Format(time.RFC3339)+"\n")
	if r := feed("close_contacts", "1", "contacts.csv"); r.code != 0 || !strings.Contains(r.stdout, "1 people named, 1 colours changed") {
		t.Errorf("close contacts: exit %d: %s %s", r.code, r.stdout, r.stderr)
	}
	if r := feed("close_contacts", "1", "contacts.csv"); r.code != 0 || !strings.Contains(r.stdout, "already applied") {
		t.Errorf("the same feed again: exit %d: %s %s", r.code, r.stdout, r.stderr)
	}
	must(t, dir, "authority", "keygen", "--kind", "feed", "--out", "forger")
	if r := runTool(t, dir, "authority", "feed", "--server", server, "--token", "auth/admin.token", "--key", "forger/feed.key",
		"--kind", "close_contacts", "--version", "2", "--csv", "contacts.csv"); r.code != 1 || !strings.Contains(r.stderr, "403") {
		t.Errorf("a feed signed by an unknown key: exit %d: %s", r.code, r.stderr)
	}
	writeFile(t, dir, "bad.csv", "id_number,since\n110105194912310021,"+today+"\n")
	if r := feed("cases", "1", "bad.csv"); r.code != 2 || !strings.Contains(r.stderr, "line 2: id_number") || strings.Contains(r.stderr, "1101051949") {
		t.Errorf("a feed with a bad ID number: exit %d: %s", r.code, r.stderr)
	}
	var st struct {
		Colour          string    `json:"colour"`
		Reasons         []string  `json:"reasons"`
		QuarantineEnd   time.Time `json:"quarantine_end"`
		NextDeclaration time.Time `json:"next_declaration"`
		History         []struct {
			Colour string `json:"colour"`
			Cause  string `json:"cause"`
		} `json:"history"`
	}
	if err := json.Unmarshal([]byte(must(t, dir, "holder", "status", "--key", "phone/holder.key", "--json")), &st); err != nil {
		t.Fatal(err)
	}
	if st.Colour != "yellow" || !slices.Equal(st.Reasons, []string{"close_contact"}) || !st.NextDeclaration.IsZero() ||
		len(st.History) != 2 || st.History[1].Cause != "feed" {
		t.Errorf("status of the close contact: %+v", st)
	}
	out = must(t, dir, "holder", "status", "--key", "phone/holder.key")
	if !strings.Contains(out, "colour: yellow (close_contact)") || !strings.Contains(out, "quarantine until:") ||
		!strings.Contains(out, "next declaration: now") {
		t.Errorf("status: %s", out)
	}
	auth.kill()
	logged := auth.stderr.String()
	for _, secret := range []string{id, other, name, otherName, mine, theirs} {
		if strings.Contains(logged, secret) {
			t.Errorf("the authority logged %q", secret)
		}
	}
}

// TestCloseContactAtTheCheckpoint: a registered holder with a green
// credential is named by a close contacts feed; after its next sync the
// checkpoint refuses that credential as revoked; once the quarantine
// (3 s in this test's rules) is over, a clean declaration gives a green
// credential that passes.
func TestCloseContactAtTheCheckpoint(t *testing.T) {
	readSources()
	dir := t.TempDir()
	server, auth := holderAuthority(t, dir, `{"close_contact": {"quarantine": "3s"}}`)
	defer auth.kill()
	const id, name = "44030519880506122X", "王芳"
	must(t, dir, "holder", "keygen", "--out", "phone")
	code := strings.TrimSpace(must(t, dir, "authority", "registration-code", "--server", server, "--token", "auth/admin.token",
		"--id-number", id, "--name", name, "--operator", "office-1"))
	must(t, dir, "holder", "register", "--server", server, "--key", "phone/holder.key", "--id-number", id, "--name", name, "--code", code)
	if out := must(t, dir, "holder", "declare", "--key", "phone/holder.key", "--out", "green.cbor"); !strings.HasPrefix(out, "green") {
		t.Fatalf("declare: %s", out)
	}

	token := strings.TrimSpace(must(t, dir, "authority", "enroll-token", "--server", server, "--token", "auth/admin.token", "--name", "gate-1"))
	writeFile(t, dir, "policy.json", `{"temperature_required": false}`)
	writeFile(t, dir, "cp.toml", fmt.Sprintf(`name = "gate-1"
[trust]
root_key = "auth/root.pub"
policy = "policy.json"
[camera]
device = "gate.avi"
[store]
path = "cp.db"
[sync]
authority = "%s"
device_key = "device.key"
enroll_token = "%s"
`, server, token))
	must(t, dir, "checkpointd", "--config", "cp.toml", "--sync-once")

	writeFile(t, dir, "contacts.csv", "id_number,since\n"+id+","+time.Now().UTC().Format(time.RFC3339)+"\n")
	named := time.Now()
	out := must(t, dir, "authority", "feed", "--server", server, "--token", "auth/admin.token", "--key", "health/feed.key",
		"--kind", "close_contacts", "--version", "1", "--csv", "contacts.csv")
	if !strings.Contains(out, "1 colours changed") {
		t.Fatalf("feed: %s", out)
	}
	must(t, dir, "checkpointd", "--config", "cp.toml", "--sync-once")
	if r := runTool(t, dir, "holder", "declare", "--key", "phone/holder.key", "--out", "early.cbor"); r.code != 0 ||
		!strings.HasPrefix(r.stdout, "yellow (close_contact)") {
		t.Errorf("declared within the quarantine: exit %d: %s %s", r.code, r.stdout, r.stderr)
	}
	time.Sleep(time.Until(named.Add(4 * time.Second)))
	if out := must(t, dir, "holder", "declare", "--key", "phone/holder.key", "--out", "again.cbor"); !strings.HasPrefix(out, "green (clean_declaration)") {
		t.Fatalf("declared after the quarantine: %s", out)
	}

	// The gate camera sees the old code, then the new one.
	old := strings.TrimSpace(must(t, dir, "holder", "present", "--credential", "green.cbor", "--key", "phone/holder.key"))
	fresh := strings.TrimSpace(must(t, dir, "holder", "present", "--credential", "again.cbor", "--key", "phone/holder.key"))
	pose := scene.Params{ModulePx: 3.5, CenterX: 0.5, CenterY: 0.5, Ambient: 1, Screen: 1, Gamma: 1, Noise: 2}
	if err := scene.WriteVideo(filepath.Join(dir, "gate.avi"), 10, 5*time.Second, 5, []scene.Appearance{
		{Text: old, Start: 200 * time.Millisecond, End: 1500 * time.Millisecond, Pose: pose},
		{Text: fresh, Start: 3 * time.Second, End: 4300 * time.Millisecond, Pose: pose},
	}); err != nil {
		t.Fatal(err)
	}
	r := runTool(t, dir, "checkpointd", "--config", "cp.toml", "--json")
	if r.code != 0 {
		t.Fatalf("checkpointd: exit %d: %s", r.code, r.stderr)
	}
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		var d struct {
			Decision string   `json:"decision"`
			Reasons  []string `json:"reasons"`
		}
		if err := json.Unmarshal([]byte(line), &d); err != nil {
			t.Fatalf("checkpointd printed %q", line)
		}
		got = append(got, d.Decision+" "+strings.Join(d.Reasons, ","))
	}
	if want := []string{"refuse revoked", "pass "}; !slices.Equal(got, want) {
		t.Errorf("decisions %q, want %q", got, want)
	}
}
