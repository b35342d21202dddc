package store

import (
	"bytes"
	"crypto/ed25519"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The holders' side is tested on bbolt and on PostgreSQL alike by the
// storage suite (internal/authority/storagetest, run by
// storage_suite_test.go); what is bbolt's own is here.

// TestLegacyDeclarationBuckets: a database from before holders declared
// themselves keeps the buckets of the operator's declarations ("holders",
// "colours") as they were, unread, and its holders work beside them.
func TestLegacyDeclarationBuckets(t *testing.T) {
	path := filepath.Join(t.TempDir(), "authority.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := subj('l')
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range []string{"holders", "colours"} {
			b, err := tx.CreateBucket([]byte(name))
			if err != nil {
				return err
			}
			if err := b.Put(s[:], []byte(name+" record")); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()

	a, err := OpenAuthority(path)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if _, err := a.Holder(s); err != ErrUnknownHolder {
		t.Errorf("a subject known only to the old buckets: %v, want ErrUnknownHolder", err)
	}
	key := ed25519.PublicKey(bytes.Repeat([]byte{1}, ed25519.PublicKeySize))
	if _, err := a.Register(Registration{Subject: s, Key: key, MaskedName: "王*", IDHash: []byte{1}, At: t0,
		AssertionID: []byte("a"), AssertionExpires: t0.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if h, err := a.Holder(s); err != nil || !h.Key.Equal(key) || h.Colour.Colour != "" {
		t.Errorf("registered beside the old buckets: %+v, %v", h, err)
	}
	err = a.db.View(func(tx *bolt.Tx) error {
		for _, name := range []string{"holders", "colours"} {
			if got := tx.Bucket([]byte(name)).Get(s[:]); string(got) != name+" record" {
				t.Errorf("bucket %s holds %q", name, got)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
