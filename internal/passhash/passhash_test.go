package passhash

import (
	"strings"
	"testing"
)

func TestHashes(t *testing.T) {
	h, err := Hash("2468")
	if err != nil || !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("hash %q %v", h, err)
	}
	if !Matches(h, "2468") || Matches(h, "2469") {
		t.Error("the hash does not tell the PIN from another")
	}
	if h2, _ := Hash("2468"); h2 == h {
		t.Error("two hashes of one PIN are the same: no salt")
	}
	if _, err := Hash("12"); err == nil {
		t.Error("a 2-character PIN was hashed")
	}
	for _, bad := range []string{"", "2468", "$argon2i$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5a2V5",
		"$argon2id$v=19$m=999999999,t=2,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5a2V5",
		"$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$a2V5a2V5a2V5a2V5a2V5a2V5"} {
		if Check(bad) == nil {
			t.Errorf("hash %q accepted", bad)
		}
	}
}
