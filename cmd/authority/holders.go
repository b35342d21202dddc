package main

import (
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/checkpointd/checkpoint/internal/authority"
	"github.com/checkpointd/checkpoint/internal/cli"
	"github.com/checkpointd/checkpoint/internal/clock"
	"github.com/checkpointd/checkpoint/internal/credential"
	"github.com/checkpointd/checkpoint/internal/feed"
	"github.com/checkpointd/checkpoint/internal/identity"
	"github.com/checkpointd/checkpoint/internal/protocol"
	"github.com/checkpointd/checkpoint/internal/rules"
)

// holderOptions reads what serve needs to take holders and feeds: the
// rules (the built-in ones without a file) and the feed and real-name
// service keys.
func holderOptions(rulesPath string, feedKeys, realnameKeys []string) (authority.Options, error) {
	var opts authority.Options
	if rulesPath != "" {
		data, err := os.ReadFile(rulesPath)
		if err != nil {
			return opts, cli.Usagef("rules file: %v", err)
		}
		r, err := rules.Parse(data)
		if err != nil {
			return opts, cli.Usagef("rules file %s: %v", rulesPath, err)
		}
		opts.Rules = &r
	}
	for _, arg := range feedKeys {
		kinds, p := feedKeyArg(arg)
		k, err := readPublic(p)
		if err != nil {
			return opts, err
		}
		opts.FeedKeys = append(opts.FeedKeys, k)
		if kinds != nil {
			if opts.FeedKinds == nil {
				opts.FeedKinds = map[string][]string{}
			}
			opts.FeedKinds[hex.EncodeToString(credential.KeyIDOf(k))] = kinds
		}
	}
	for _, p := range realnameKeys {
		k, err := readPublic(p)
		if err != nil {
			return opts, err
		}
		opts.RealnameKeys = append(opts.RealnameKeys, k)
	}
	return opts, nil
}

// feedKeyArg splits a --feed-key argument, [KIND,KIND...=]FILE, into the
// kinds of feed the key may send (nil: every kind) and its file. A prefix
// that is not a list of kinds is a part of the file's name.
func feedKeyArg(arg string) ([]string, string) {
	before, path, ok := strings.Cut(arg, "=")
	if !ok {
		return nil, arg
	}
	kinds := strings.Split(before, ",")
	for _, k := range kinds {
		if !slices.Contains(feed.Kinds, k) {
			return nil, arg
		}
	}
	return kinds, path
}

// registrationCode asks the serving authority for a one-time registration
// code, as an operator at a community office who has checked the person's
// ID card; it prints the code to give them.
func registrationCode(args []string, _ clock.Clock, stdout io.Writer) error {
	fl := newFlags("registration-code")
	server := fl.String("server", "", "the serving authority")
	token := fl.String("token", "", "its admin token file")
	idNumber := fl.String("id-number", "", "the person's ID number, as on the card")
	name := fl.String("name", "", "the person's name, as on the card")
	operator := fl.String("operator", "", "the office or operator issuing the code, for the audit")
	if err := cli.Parse(fl, args, "server", "token", "id-number", "name", "operator"); err != nil {
		return err
	}
	id, err := credential.ParseID(*idNumber)
	if err != nil {
		return cli.Usagef("--id-number: %v", err)
	}
	var res protocol.AdminRegistrationCodeResponse
	if err := adminCall(*server, *token, protocol.PathAdminRegistrationCode,
		protocol.AdminRegistrationCode{IDNumber: id, Name: *name, Operator: *operator}, &res); err != nil {
		return err
	}
	fmt.Fprintln(stdout, res.Code)
	return nil
}

// realnameAssert is the demo's stand-in real-name service: it signs an
// assertion that the person with this ID number and name controls this
// holder key.
func realnameAssert(args []string, clk clock.Clock, stdout io.Writer) error {
	fl := newFlags("realname-assert")
	keyPath := fl.String("key", "", "the real-name service's private key (authority keygen --kind realname)")
	idNumber := fl.String("id-number", "", "the person's ID number")
	name := fl.String("name", "", "the person's name")
	holderPath := fl.String("holder", "", "the holder public key the person showed they control")
	method := fl.String("method", "face", "how the service checked the person")
	var at cli.Time
	fl.Var(&at, "at", "when the service checked the person (default now)")
	valid := fl.Duration("valid", 10*time.Minute, "how long the assertion is good for (the authority takes at most 1h)")
	out := fl.String("out", "", "file to write the assertion to")
	if err := cli.Parse(fl, args, "key", "id-number", "name", "holder", "out"); err != nil {
		return err
	}
	id, err := credential.ParseID(*idNumber)
	if err != nil {
		return cli.Usagef("--id-number: %v", err)
	}
	if *valid <= 0 {
		return cli.Usagef("--valid must be positive")
	}
	key, err := readPrivate(*keyPath)
	if err != nil {
		return err
	}
	holder, err := readPublic(*holderPath)
	if err != nil {
		return err
	}
	verified := at.Or(clk.Now()).UTC().Truncate(time.Second)
	a := identity.Assertion{IDNumber: id, Name: *name, HolderKey: holder, VerifiedAt: verified, Expires: verified.Add(*valid), Method: *method}
	raw, err := identity.SignAssertion(a, key)
	if errors.Is(err, identity.ErrMalformed) {
		return cli.UsageError{Msg: err.Error()}
	}
	if err != nil {
		return err
	}
	if err := os.WriteFile(*out, raw, 0o600); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "real-name assertion for %s (checked by %s), good until %s: %s\n", credential.MaskName(*name), *method,
		a.Expires.Format(time.RFC3339), *out)
	return nil
}

// feedCmd signs a feed with a health department's feed key and sends it
// to the serving authority: the demo's stand-in health department.
func feedCmd(args []string, clk clock.Clock, stdout io.Writer) error {
	fl := newFlags("feed")
	server := fl.String("server", "", "the serving authority")
	token := fl.String("token", "", "its admin token file")
	keyPath := fl.String("key", "", "the health department's feed private key (authority keygen --kind feed)")
	kind := fl.String("kind", "", "risk_areas, cases or close_contacts")
	version := fl.Uint64("version", 0, "the feed's version: higher than the last of its kind sent with this key")
	csvPath := fl.String("csv", "", "the table, CSV with a header line (region,from,to or id_number,since)")
	jsonPath := fl.String("json", "", "the table, a JSON array of objects with those fields")
	var at cli.Time
	fl.Var(&at, "at", "the feed's issue time (default now)")
	if err := cli.Parse(fl, args, "server", "token", "key", "kind", "version"); err != nil {
		return err
	}
	if (*csvPath == "") == (*jsonPath == "") {
		return cli.Usagef("one of --csv and --json is required")
	}
	path, format := *csvPath, feed.CSV
	if *jsonPath != "" {
		path, format = *jsonPath, feed.JSON
	}
	content, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return cli.Usagef("table %s does not exist", path)
	}
	if err != nil {
		return err
	}
	key, err := readPrivate(*keyPath)
	if err != nil {
		return err
	}
	f := feed.Feed{Kind: *kind, Version: *version, Issued: at.Or(clk.Now()), Format: format, Content: content}
	// Check the table here, as the authority will: a mistake is the
	// sender's to see.
	switch *kind {
	case feed.RiskAreas:
		_, err = feed.ParseAreas(&f)
	case feed.Cases, feed.CloseContacts:
		_, err = feed.ParseListings(&f, func(string) []byte { return make([]byte, 10) })
	default:
		return cli.Usagef("--kind %q is not risk_areas, cases or close_contacts", *kind)
	}
	if err != nil {
		return cli.Usagef("%s: %v", path, err)
	}
	raw, err := feed.Sign(f, key)
	if errors.Is(err, feed.ErrMalformed) {
		return cli.UsageError{Msg: err.Error()}
	}
	if err != nil {
		return err
	}
	b, err := adminPostRaw(*server, *token, protocol.PathAdminFeed, raw)
	if err != nil {
		return err
	}
	var res protocol.FeedResponse
	if err := protocol.Dec.Unmarshal(b, &res); err != nil {
		return err
	}
	if !res.Applied {
		fmt.Fprintf(stdout, "%s feed version %d: already applied; nothing done\n", *kind, *version)
		return nil
	}
	fmt.Fprintf(stdout, "%s feed version %d applied: %d rows", *kind, *version, res.Rows)
	if *kind != feed.RiskAreas {
		fmt.Fprintf(stdout, ", %d people named, %d colours changed", res.Subjects, res.Changed)
		if res.RevocationVersion > 0 {
			fmt.Fprintf(stdout, " (their credentials revoked: revocation list version %d)", res.RevocationVersion)
		}
	} else {
		fmt.Fprint(stdout, " (they apply at the holders' next declarations)")
	}
	fmt.Fprintln(stdout)
	return nil
}

// keygenSigner makes a feed or real-name service key pair: kind.key and
// kind.pub in dir.
func keygenSigner(dir, kind string, stdout io.Writer) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		return err
	}
	if err := writeKeyPair(dir, kind, pub, priv); err != nil {
		return err
	}
	what := "feed key (a health department's: authority serve --feed-key " + kind + ".pub)"
	if kind == "realname" {
		what = "real-name service key (authority serve --realname-key " + kind + ".pub)"
	}
	fmt.Fprintf(stdout, "%s: %s.key, %s.pub\n", what, kind, kind)
	return nil
}
