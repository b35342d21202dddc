package verify

import (
	"encoding/json"
	"flag"
	"os"
	"testing"
)

var update = flag.Bool("update", false, "rewrite configs/policy.json")

// The example policy in configs/ is the built-in one, written out: a
// technician can start from it and know what they change.
func TestExamplePolicyIsTheDefault(t *testing.T) {
	want, err := json.MarshalIndent(DefaultPolicy(), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	want = append(want, '\n')
	const path = "../configs/policy.json"
	if *update {
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Errorf("%s differs from DefaultPolicy (go test ./verify -update rewrites it)", path)
	}
	p, err := ParsePolicy(got)
	if err != nil || p != DefaultPolicy() {
		t.Errorf("%s parses to %+v, %v", path, p, err)
	}
}
