package main

import (
	"slices"
	"testing"
)

// TestFeedKeyArg: --feed-key takes the kinds a key may send before an
// "=", and a file name that happens to hold an "=" stays a file name.
func TestFeedKeyArg(t *testing.T) {
	for _, tc := range []struct {
		arg   string
		kinds []string
		path  string
	}{
		{"health/feed.pub", nil, "health/feed.pub"},
		{"close_contacts=cdc/feed.pub", []string{"close_contacts"}, "cdc/feed.pub"},
		{"cases,close_contacts=cdc/feed.pub", []string{"cases", "close_contacts"}, "cdc/feed.pub"},
		{"risk_areas=a=b.pub", []string{"risk_areas"}, "a=b.pub"},
		{"keys/v=2/feed.pub", nil, "keys/v=2/feed.pub"},
		{"cases,colours=feed.pub", nil, "cases,colours=feed.pub"},
	} {
		kinds, path := feedKeyArg(tc.arg)
		if !slices.Equal(kinds, tc.kinds) || path != tc.path {
			t.Errorf("%q: kinds %q, file %q; want %q, %q", tc.arg, kinds, path, tc.kinds, tc.path)
		}
	}
}
