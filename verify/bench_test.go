package verify

import (
	"crypto/ed25519"
	"fmt"
	"testing"
	"time"

	"github.com/checkpointd/checkpoint/internal/credential"
	"github.com/checkpointd/checkpoint/internal/credential/credentialtest"
)

// BenchmarkVerify measures whole verifications of phone presentations,
// from QR text to decision: parsing, both Ed25519 signatures, freshness,
// the replay cache and a revocation lookup. Each iteration verifies a
// different presentation (1,000 holders' codes in turn), as at a gate.
// Run it with -cpu 1 for the one-core figure.
func BenchmarkVerify(b *testing.B) {
	f := credentialtest.New()
	texts := make([]string, 1000)
	for i := range texts {
		c := f.Credential(func(c *credential.Credential) { c.ID = []byte(fmt.Sprintf("id%06d", i)) })
		texts[i] = f.Present(f.Issue(c), f.Now.Add(-time.Duration(i%20)*time.Second))
	}
	// A list of one revoked subject, not among the holders.
	revs := revocations([]byte("nobody-yet"), f.Now, f.Now.Add(time.Hour))
	in := Input{Trust: f.Trust, Revocations: revs, Replay: NewReplayCache(4096), Policy: DefaultPolicy()}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		in.Text = texts[i%len(texts)]
		// Advance time so that the same text seen again is a repeat
		// sighting, not a replay.
		in.Now = Instant{Time: f.Now.Add(time.Duration(i/len(texts)) * time.Millisecond)}
		if d := Verify(in); d.Outcome != Pass {
			b.Fatalf("decision %v %v", d.Outcome, d.Reasons)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "verifications/s")
}

// BenchmarkTwoSignatures is the floor under BenchmarkVerify: the two
// Ed25519 verifications every presentation needs, with nothing else.
func BenchmarkTwoSignatures(b *testing.B) {
	f := credentialtest.New()
	msg := make([]byte, 300)
	sig := ed25519.Sign(f.Issuer, msg)
	pub := f.Issuer.Public().(ed25519.PublicKey)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if !ed25519.Verify(pub, msg, sig) || !ed25519.Verify(pub, msg, sig) {
			b.Fatal("signature does not verify")
		}
	}
}
