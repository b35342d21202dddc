package store_test

import (
	"path/filepath"
	"testing"

	"github.com/checkpointd/checkpoint/internal/authority/storagetest"
	"github.com/checkpointd/checkpoint/store"
)

// TestAuthorityStorage runs the authority's storage suite on bbolt; the
// same suite runs on PostgreSQL in store/postgres.
func TestAuthorityStorage(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storagetest.Storage {
		a, err := store.OpenAuthority(filepath.Join(t.TempDir(), "authority.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { a.Close() })
		return a
	})
}
