package authority

import (
	"encoding/hex"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/checkpointd/checkpoint/internal/credential"
	"github.com/checkpointd/checkpoint/internal/feed"
	"github.com/checkpointd/checkpoint/internal/protocol"
	"github.com/checkpointd/checkpoint/internal/rules"
	"github.com/checkpointd/checkpoint/store"
)

// adminFeed takes a health department's feed (docs/authority.md), sent
// with the admin token: signed by a configured feed key, issued within
// MaxFeedAge, its table parsed (ID numbers turned into pseudonyms as they
// are read, never kept), and applied once per version of its kind and
// issuer. Every subject a case or close-contact feed names is reassessed
// by the rules at once, in the same transaction: a colour made worse
// revokes the subject's credentials issued at or before the transaction
// (and the second after the subject's cut-off, which a credential issued
// on a colour change is dated), so checkpoints refuse them after their
// next sync. A risk-area feed applies at the holders' next declarations.
func (s *Server) adminFeed(w http.ResponseWriter, r *http.Request) {
	if !s.admin(w, r) {
		return
	}
	body, ok := readBody(w, r, s.lim.MaxUpload)
	if !ok {
		return
	}
	o, err := feed.Open(body, s.opts.FeedKeys)
	switch {
	case errors.Is(err, feed.ErrBadSignature):
		s.log.Warn("feed refused: not signed by a configured feed key")
		http.Error(w, err.Error(), http.StatusForbidden)
		return
	case err != nil:
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	now := s.clock.Now().Truncate(time.Second)
	lg := s.log.With("kind", o.Kind, "issuer", o.Issuer, "version", o.Version)
	if kinds, ok := s.opts.FeedKinds[o.Issuer]; ok && !slices.Contains(kinds, o.Kind) {
		lg.Warn("feed refused: its key may not send this kind", "kinds", strings.Join(kinds, ","))
		http.Error(w, "this feed key may send "+strings.Join(kinds, ", ")+" feeds only, not "+o.Kind, http.StatusForbidden)
		return
	}
	switch {
	case o.Issued.Before(now.Add(-s.opts.MaxFeedAge)):
		lg.Warn("feed refused: issued too long ago", "issued", o.Issued)
		http.Error(w, "feed issued at "+o.Issued.UTC().Format(time.RFC3339)+", longer ago than the authority takes: refused",
			http.StatusConflict)
		return
	case o.Issued.After(now.Add(s.lim.RequestWindow)):
		http.Error(w, "feed issued in the future", http.StatusBadRequest)
		return
	}
	fu := store.FeedUpdate{Kind: o.Kind, Issuer: o.Issuer, Version: o.Version, Digest: o.Digest, Applied: now}
	if o.Kind == feed.RiskAreas {
		areas, err := feed.ParseAreas(&o.Feed)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		for _, a := range areas {
			fu.Areas = append(fu.Areas, store.RiskArea{Region: a.Region, From: a.From, To: a.To})
		}
	} else {
		ls, err := feed.ParseListings(&o.Feed, func(id string) []byte { return credential.Pseudonym(s.keys.Pseudonym, id) })
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		for _, l := range ls {
			fu.Listings = append(fu.Listings, store.Listing{Subject: [store.SubjectSize]byte(l.Subject), Since: l.Since})
		}
	}
	o.Content = nil
	if !s.storing.take(r.Context(), s.clock, s.lim.Queue) {
		busy(w)
		return
	}
	type colourChange struct{ from, to string }
	// By subject: a retried transaction calls again, and its last call
	// for a subject is what was recorded.
	changes := map[[store.SubjectSize]byte]colourChange{}
	res, err := s.st.ApplyFeed(fu, func(h store.Holder) (*store.HolderUpdate, error) {
		delete(changes, h.Subject)
		// The time of the transaction, not of the request: a declaration
		// may have been issued a credential while the table was parsed or
		// the feed waited for its slot.
		now := s.clock.Now().Truncate(time.Second)
		prev := stateOf(h.Colour)
		st, changed := s.rules.Reassess(prev, rules.Facts{Case: h.Case, CloseContact: h.CloseContact}, now)
		if !changed {
			return nil, nil
		}
		u := &store.HolderUpdate{Colour: recordOf(st), Change: changeOf(prev, st, now, "feed")}
		if st.Colour != prev.Colour {
			// A declaration that changed the colour in this very second
			// dated its credential the second after its cut-off.
			cut := now
			if c := h.RevokedBefore.Add(time.Second); c.After(cut) {
				cut = c
			}
			rev := s.revocation(h.Subject, cut)
			u.Revoke = &rev
			changes[h.Subject] = colourChange{colourName(prev.Colour), colourName(st.Colour)}
		}
		return u, nil
	})
	s.storing.give()
	switch {
	case errors.Is(err, store.ErrFeedVersion):
		lg.Warn("feed refused: version already applied with other content, or older than the last applied")
		http.Error(w, err.Error(), http.StatusConflict)
		return
	case err != nil:
		s.internalError(w, r, err)
		return
	}
	rows := len(fu.Areas) + len(fu.Listings)
	if res.Applied {
		for sub, c := range changes {
			// For audit: whose colour a feed changed, by pseudonym.
			lg.Info("colour changed by a feed", "subject", hex.EncodeToString(sub[:]), "from", c.from, "colour", c.to)
		}
		lg.Info("feed applied", "rows", rows, "subjects", res.Subjects, "changed", res.Changed, "revocation_version", res.Version)
	} else {
		// A retried transaction may have found it applied: what an
		// earlier attempt reassessed was not recorded.
		lg.Info("feed already applied: nothing done")
	}
	s.writeCBOR(w, r, protocol.FeedResponse{Applied: res.Applied, Rows: rows, Subjects: res.Subjects, Changed: res.Changed,
		RevocationVersion: res.Version})
}
