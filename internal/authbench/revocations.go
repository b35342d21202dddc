package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/checkpointd/checkpoint/internal/protocol"
	"github.com/checkpointd/checkpoint/store"
	"github.com/checkpointd/checkpoint/store/postgres"
)

// keep is how long after its cut-off a revocation stays on the list: the
// authority's default (authority.Options.Keep), as its admin API dates
// the entries it adds.
const keep = 30 * 24 * time.Hour

// bulkEntries are the revocations loaded through the Storage: n subjects
// (pseudonyms, as the authority makes them from ID numbers) revoked in the
// last day, in versions of batch entries.
func bulkEntries(n, batch int, now time.Time) [][]store.RevEntry {
	var out [][]store.RevEntry
	for from := 0; from < n; from += batch {
		es := make([]store.RevEntry, min(batch, n-from))
		for j := range es {
			i := from + j
			h := sha256.Sum256(binary.BigEndian.AppendUint64([]byte("authbench subject"), uint64(i)))
			before := now.Add(-time.Duration(i%86400) * time.Second)
			es[j] = store.RevEntry{Subject: [store.SubjectSize]byte(h[:store.SubjectSize]), Before: before.Unix(),
				DropAfter: before.Add(keep).Unix()}
		}
		// In subject order, as an import would be: the bbolt file's
		// pages are then written in order, not at random.
		slices.SortFunc(es, func(a, b store.RevEntry) int { return bytes.Compare(a.Subject[:], b.Subject[:]) })
		out = append(out, es)
	}
	return out
}

// revoker is what loading revocations needs of a Storage.
type revoker interface {
	Revoke(entries []store.RevEntry) (uint64, error)
	Close() error
}

// loadRevocations revokes the batches, each a version, through the
// backend's Storage directly (the authority is not running: bbolt's file
// is its alone while it runs), and returns the last version.
func loadRevocations(ctx context.Context, backend, db string, batches [][]store.RevEntry) (uint64, error) {
	var st revoker
	if backend == "bbolt" {
		a, err := store.OpenAuthority(db)
		if err != nil {
			return 0, fmt.Errorf("opening the bbolt file: %w", err)
		}
		st = a
	} else {
		pg, err := postgres.Open(ctx, db, postgres.Options{Timeout: 10 * time.Minute})
		if err != nil {
			return 0, fmt.Errorf("opening the database: %w", err)
		}
		st = pg
	}
	var version uint64
	for _, es := range batches {
		if ctx.Err() != nil {
			st.Close()
			return 0, ctx.Err()
		}
		v, err := st.Revoke(es)
		if err != nil {
			st.Close()
			return 0, fmt.Errorf("revoking: %w", err)
		}
		version = v
	}
	if err := st.Close(); err != nil {
		return 0, fmt.Errorf("closing the store: %w", err)
	}
	return version, nil
}

// idWeights and idCheck make the check character of a GB 11643 ID number.
var idWeights = [17]int{7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2}

const idCheck = "10X98765432"

// idNumber is a valid ID number, a different one for each i below 10^7:
// a Shenzhen region code, a birth date from 1950 on, a sequence number.
func idNumber(i int) string {
	born := time.Date(1950, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, i/1000)
	s := fmt.Sprintf("440305%s%03d", born.Format("20060102"), i%1000)
	sum := 0
	for j, w := range idWeights {
		sum += int(s[j]-'0') * w
	}
	return s + string(idCheck[sum%11])
}

// apiRevoke revokes the holders of ID numbers from..to-1 through the admin
// API, one request each (the API takes one ID number a request), from
// workers at once.
func (s *sim) apiRevoke(ctx context.Context, from, to, workers int, now time.Time) error {
	var mu sync.Mutex
	var first error
	errs := 0
	forEach(ctx, to-from, workers, func(i int) {
		body, err := protocol.Enc.Marshal(protocol.AdminRevoke{IDNumber: idNumber(from + i), Before: now})
		if err == nil {
			_, _, err = s.do(ctx, s.adminHC, "revoke", http.MethodPost, protocol.PathAdminRevoke, body, authAdmin, nil, 0)
		}
		if err != nil {
			mu.Lock()
			errs++
			if first == nil {
				first = err
			}
			mu.Unlock()
		}
	})
	if first != nil {
		return fmt.Errorf("%d admin revocations failed, the first: %w", errs, first)
	}
	return ctx.Err()
}
