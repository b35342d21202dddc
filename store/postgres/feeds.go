package postgres

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/checkpointd/checkpoint/store"
)

// RiskAreas returns the listed areas that concern a visit to any of
// regions, as store.Authority.RiskAreas does: those whose code is a
// prefix of a region's (the region lies within them) and those whose code
// starts with a region's (they lie within it), each listing once.
func (s *Store) RiskAreas(regions []string) ([]store.RiskArea, error) {
	var exact, within []string
	for _, r := range regions {
		if !utf8.ValidString(r) || strings.ContainsRune(r, 0) {
			continue // no such region can be held
		}
		within = append(within, r)
		for n := 1; n < len(r); n++ {
			if utf8.ValidString(r[:n]) {
				exact = append(exact, r[:n])
			}
		}
	}
	if len(within) == 0 {
		return nil, nil
	}
	ctx, cancel := s.ctx()
	defer cancel()
	rows, err := s.pool.Query(ctx, `SELECT region, starts, ends FROM risk_areas
		WHERE region = ANY($1) OR EXISTS (SELECT 1 FROM unnest($2::TEXT[]) AS q (r) WHERE left(region, length(q.r)) = q.r)
		ORDER BY region, starts`, exact, within)
	if err != nil {
		return nil, wrap("risk areas", err)
	}
	var out []store.RiskArea
	var region string
	var starts int64
	var ends *time.Time
	_, err = pgx.ForEachRow(rows, []any{&region, &starts, &ends}, func() error {
		out = append(out, store.RiskArea{Region: region, From: time.Unix(starts, 0).UTC(), To: timeOf(ends)})
		return nil
	})
	if err != nil {
		return nil, wrap("risk areas", err)
	}
	return out, nil
}

// areaStart is the key of an area's start, as the bbolt store keys it:
// Unix seconds, none before 1970.
func areaStart(from time.Time) int64 { return max(from.Unix(), 0) }

// ApplyFeed applies a feed in one transaction, as store.Authority.ApplyFeed
// does: a version at or below the last applied for its kind and issuer
// does nothing (Applied false) if that version was applied with the same
// digest, and is store.ErrFeedVersion otherwise; a new version's rows are
// recorded (a later row for the same area or subject replacing an
// earlier), and each subject a case or close-contact feed names is read,
// once, in the order of first appearance, and passed to reassess, whose
// updates are recorded as UpdateHolder records them, with their
// revocations added as one new version. If reassess fails nothing of the
// feed is recorded and its error is returned as it is.
//
// The transaction locks the row of the feed's kind and issuer in
// feed_versions first (feeds of one kind and issuer are applied one at a
// time, and a version sent twice at once is applied once), then the rows
// of the subjects it names, in subject order (a declaration of one of
// them waits for the feed, or the feed for it, and the second sees what
// the first recorded), then the revocation state. reassess must not use
// the storage; it may be called again for every subject if the
// transaction is retried (a deadlock, or on CockroachDB a serialisation
// failure).
func (s *Store) ApplyFeed(f store.FeedUpdate, reassess func(store.Holder) (*store.HolderUpdate, error)) (store.FeedResult, error) {
	list := ""
	switch f.Kind {
	case store.FeedRiskAreas:
	case store.FeedCases, store.FeedCloseContacts:
		list = f.Kind
	default:
		return store.FeedResult{}, fmt.Errorf("%w: %q", store.ErrFeedKind, f.Kind)
	}
	// The rows as they stand at the end of the feed, in key order (which
	// is also the order rows are locked in).
	type areaKey struct {
		region string
		starts int64
	}
	lastArea := map[areaKey]time.Time{}
	for _, a := range f.Areas {
		lastArea[areaKey{a.Region, areaStart(a.From)}] = a.To
	}
	areaKeys := make([]areaKey, 0, len(lastArea))
	for k := range lastArea {
		areaKeys = append(areaKeys, k)
	}
	slices.SortFunc(areaKeys, func(a, b areaKey) int {
		return cmp.Or(strings.Compare(a.region, b.region), cmp.Compare(a.starts, b.starts))
	})
	areaRegions, areaStarts, areaEnds := make([]string, len(areaKeys)), make([]int64, len(areaKeys)), make([]*time.Time, len(areaKeys))
	for i, k := range areaKeys {
		areaRegions[i], areaStarts[i], areaEnds[i] = k.region, k.starts, nullTime(lastArea[k])
	}
	var order, sorted []subject // named, in the order of first appearance; and in subject order
	since := map[subject]time.Time{}
	if list != "" {
		for _, l := range f.Listings {
			if _, ok := since[l.Subject]; !ok {
				order = append(order, l.Subject)
			}
			since[l.Subject] = l.Since
		}
		sorted = slices.Clone(order)
		slices.SortFunc(sorted, func(a, b subject) int { return bytes.Compare(a[:], b[:]) })
	}
	listSubs, listSince := make([][]byte, len(sorted)), make([]time.Time, len(sorted))
	for i := range sorted {
		listSubs[i], listSince[i] = sorted[i][:], since[sorted[i]].UTC()
	}
	version := int64(f.Version) // the bits of the uint64

	var res store.FeedResult
	var fnErr error
	err := s.write(func(ctx context.Context, tx pgx.Tx) error {
		res, fnErr = store.FeedResult{}, nil
		b := &pgx.Batch{}
		b.Queue("INSERT INTO feed_versions (kind, issuer, last_version) VALUES ($1, $2, 0) ON CONFLICT (kind, issuer) DO NOTHING", f.Kind, f.Issuer)
		b.Queue("SELECT last_version FROM feed_versions WHERE kind = $1 AND issuer = $2 FOR UPDATE", f.Kind, f.Issuer)
		b.Queue("SELECT digest FROM feeds WHERE kind = $1 AND issuer = $2 AND version = $3", f.Kind, f.Issuer, version)
		br := tx.SendBatch(ctx, b)
		var last int64
		var digest []byte
		_, err := br.Exec()
		if err == nil {
			err = br.QueryRow().Scan(&last)
		}
		if err == nil {
			if err = br.QueryRow().Scan(&digest); errors.Is(err, pgx.ErrNoRows) {
				digest, err = nil, nil
			}
		}
		if cerr := br.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		if f.Version <= uint64(last) {
			switch {
			case digest == nil:
				return fmt.Errorf("%w: version %d, last applied %d", store.ErrFeedVersion, f.Version, uint64(last))
			case !bytes.Equal(digest, f.Digest[:]):
				return fmt.Errorf("%w: version %d", store.ErrFeedVersion, f.Version)
			}
			return errNothing // applied before, as it is
		}
		res.Applied = true
		b = &pgx.Batch{}
		b.Queue("INSERT INTO feeds (kind, issuer, version, digest, applied, row_count) VALUES ($1, $2, $3, $4, $5, $6)",
			f.Kind, f.Issuer, version, f.Digest[:], f.Applied, len(f.Areas)+len(f.Listings))
		b.Queue("UPDATE feed_versions SET last_version = $3 WHERE kind = $1 AND issuer = $2", f.Kind, f.Issuer, version)
		if len(areaKeys) > 0 {
			b.Queue(`INSERT INTO risk_areas (region, starts, ends, issuer, version)
				SELECT u.region, u.starts, u.ends, $4, $5 FROM unnest($1::TEXT[], $2::BIGINT[], $3::TIMESTAMPTZ[]) AS u (region, starts, ends)
				ON CONFLICT (region, starts) DO UPDATE SET ends = excluded.ends, issuer = excluded.issuer, version = excluded.version`,
				areaRegions, areaStarts, areaEnds, f.Issuer, version)
		}
		if len(sorted) > 0 {
			b.Queue(`INSERT INTO risk_listings (subject, kind, since, issuer, version)
				SELECT u.subject, $3, u.since, $4, $5 FROM unnest($1::BYTEA[], $2::TIMESTAMPTZ[]) AS u (subject, since) ORDER BY u.subject
				ON CONFLICT (subject, kind) DO UPDATE SET since = excluded.since, issuer = excluded.issuer, version = excluded.version`,
				listSubs, listSince, list, f.Issuer, version)
		}
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return err
		}
		if len(sorted) == 0 {
			return nil
		}
		held, made, err := readHolders(ctx, tx, sorted, true)
		if err != nil {
			return err
		}
		var ups []pending
		var revs []store.RevEntry
		var unused [][]byte // rows made for the lock, with nothing recorded
		for _, sub := range order {
			h := held[sub]
			res.Subjects++
			u, err := reassess(h.h)
			if err != nil {
				fnErr = err
				return err
			}
			if u == nil {
				if made[sub] {
					unused = append(unused, sub[:])
				}
				continue
			}
			res.Changed++
			ups = append(ups, pending{sub, h.changes, u})
			if u.Revoke != nil {
				revs = append(revs, *u.Revoke)
			}
		}
		if err := recordUpdates(ctx, tx, ups); err != nil {
			return err
		}
		if len(unused) > 0 {
			if _, err := tx.Exec(ctx, "DELETE FROM holder_subjects WHERE subject = ANY($1)", unused); err != nil {
				return err
			}
		}
		if len(revs) > 0 {
			res.Version, err = revoke(ctx, tx, revs)
		}
		return err
	})
	switch {
	case errors.Is(err, errNothing):
		return store.FeedResult{}, nil
	case err != nil && fnErr != nil:
		return store.FeedResult{}, fnErr
	case err != nil:
		return store.FeedResult{}, wrap("apply feed", err)
	}
	return res, nil
}
