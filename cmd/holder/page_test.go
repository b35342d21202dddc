package main

import (
	"bytes"
	"image/png"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/checkpointd/checkpoint/internal/clock/clocktest"
	"github.com/checkpointd/checkpoint/internal/credential"
	"github.com/checkpointd/checkpoint/internal/credential/credentialtest"
	"github.com/checkpointd/checkpoint/scanner"
	"github.com/checkpointd/checkpoint/verify"
)

func get(t *testing.T, srv *httptest.Server, path string) []byte {
	t.Helper()
	res, err := http.Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", path, res.StatusCode, err)
	}
	if path != "/" && res.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("GET %s may be cached", path)
	}
	return body
}

// The page renews the code: every request made at a later time yields a new
// presentation, and each verifies as fresh at that time.
func TestShowRenewsTheCode(t *testing.T) {
	f := credentialtest.New()
	w := &wallet{credential: f.Issue(f.Credential(nil)), key: f.Holder}
	clk := clocktest.New(f.Now)
	srv := httptest.NewServer(newPage(w, clk, slog.New(slog.NewTextHandler(io.Discard, nil))))
	defer srv.Close()

	page := string(get(t, srv, "/"))
	if !strings.Contains(page, `src="/code.png"`) || !strings.Contains(page, "setInterval") {
		t.Fatalf("page does not show and renew the code:\n%s", page)
	}
	seen := map[string]bool{}
	for i := 0; i < 3; i++ {
		img, err := png.Decode(bytes.NewReader(get(t, srv, "/code.png")))
		if err != nil {
			t.Fatal(err)
		}
		texts, err := scanner.DecodeImage(img)
		if err != nil || len(texts) != 1 {
			t.Fatalf("decoding the page's code: %v %v", texts, err)
		}
		text := texts[0]
		if txt := strings.TrimSpace(string(get(t, srv, "/code.txt"))); txt != text {
			t.Error("/code.txt and /code.png show different codes at the same time")
		}
		if seen[text] {
			t.Fatal("the code did not change between refreshes")
		}
		seen[text] = true
		d := verify.Verify(verify.Input{Text: text, Trust: f.Trust, Policy: verify.DefaultPolicy(),
			Now: verify.Instant{Time: clk.Now().Add(2 * time.Second)}})
		if d.Outcome != verify.Pass {
			t.Fatalf("refresh %d: %v %v", i, d.Outcome, d.Reasons)
		}
		clk.Advance(Refresh * time.Second)
	}
}

func TestShowPaperCode(t *testing.T) {
	f := credentialtest.New()
	static := f.Issue(f.Credential(func(c *credential.Credential) { c.HolderKey = nil }))
	srv := httptest.NewServer(newPage(&wallet{credential: static, static: true}, clocktest.New(f.Now),
		slog.New(slog.NewTextHandler(io.Discard, nil))))
	defer srv.Close()
	if page := string(get(t, srv, "/")); strings.Contains(page, "setInterval") {
		t.Error("a paper code page pretends to renew")
	}
	if got := strings.TrimSpace(string(get(t, srv, "/code.txt"))); got != credential.EncodeText(static) {
		t.Errorf("paper code text %q", got)
	}
}
