package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/checkpointd/checkpoint/internal/cli"
	"github.com/checkpointd/checkpoint/internal/export"
	"github.com/checkpointd/checkpoint/internal/keyfile"
	"github.com/checkpointd/checkpoint/store"
)

// apiCommands are the supervisor's commands that talk to a box.
var apiCommands = map[string]func(context.Context, []string, env) error{
	"status":     statusCmd,
	"logs":       logsCmd,
	"stats":      statsCmd,
	"export":     exportCmd,
	"verify-log": verifyLogCmd,
	"sync":       syncCmd,
	"purge":      purgeCmd,
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// parseArgs parses flags that may come before or after the positional
// arguments, and returns those.
func parseArgs(fl *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fl.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, cli.UsageError{Msg: err.Error()}
		}
		if fl.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fl.Arg(0))
		args = fl.Args()[1:]
	}
}

// clockText formats a time for a person, in the local zone.
func (e env) clockText(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.In(e.loc).Format("2006-01-02 15:04:05")
}

func ago(now, t time.Time) string {
	d := now.Sub(t)
	switch {
	case d < 0:
		return "in " + (-d).Round(time.Second).String()
	case d < time.Minute:
		return d.Round(time.Second).String() + " ago"
	case d < 48*time.Hour:
		return d.Round(time.Minute).String() + " ago"
	}
	return fmt.Sprintf("%d days ago", int(d/(24*time.Hour)))
}

func statusCmd(ctx context.Context, args []string, e env) error {
	fl := flag.NewFlagSet("checkpointctl status", flag.ContinueOnError)
	fl.SetOutput(e.stderr)
	c := addConn(fl)
	savePub := fl.String("save-device-pub", "", "write the box's device public key (which signs its exports) to this file, for verify-export")
	if err := cli.Parse(fl, args); err != nil {
		return err
	}
	cl, done, err := c.open(ctx, fl, e)
	if err != nil {
		return err
	}
	defer done()
	st, err := cl.Status(ctx)
	if err != nil {
		return err
	}
	if *savePub != "" {
		raw, err := hex.DecodeString(st.DeviceKey)
		if err != nil || len(raw) != ed25519.PublicKeySize {
			return errors.New("the box gave no device key")
		}
		if err := keyfile.WritePublic(*savePub, ed25519.PublicKey(raw)); err != nil {
			return err
		}
	}
	if c.json {
		return printJSON(e.stdout, st)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	row := func(k, format string, a ...any) { fmt.Fprintf(tw, "%s\t%s\n", k, fmt.Sprintf(format, a...)) }
	name := st.Checkpoint
	if st.Device != "" {
		name += " (device " + st.Device + ")"
	}
	row("checkpoint", "%s", name)
	clk := "± " + (time.Duration(st.Clock.UncertaintyMS) * time.Millisecond).String()
	if st.Clock.UncertaintyMS < 0 {
		clk = "NOT TRUSTED"
	}
	if st.Clock.OffsetMS != nil {
		clk += fmt.Sprintf("; the authority's clock minus the box's: %v", time.Duration(*st.Clock.OffsetMS)*time.Millisecond)
	}
	if st.Clock.StepMS != 0 {
		clk += fmt.Sprintf("; the wall clock was stepped %v", time.Duration(st.Clock.StepMS)*time.Millisecond)
	}
	row("time", "%s %s", st.Time.In(e.loc).Format("2006-01-02 15:04:05 -07:00"), clk)
	for _, l := range st.Lanes {
		state := l.Camera.State
		if state != "running" && state != "ended" {
			state = strings.ToUpper(state)
		}
		cam := "camera " + state
		if !l.Camera.Since.IsZero() {
			cam += " since " + e.clockText(l.Camera.Since)
		}
		cam += fmt.Sprintf(", %d frames, %d dropped", l.Camera.Frames, l.Camera.Dropped)
		if l.Camera.Error != "" {
			cam += " (" + l.Camera.Error + ")"
		}
		for _, d := range l.Devices {
			state := "up"
			if !d.Up {
				state = "DOWN"
			}
			if d.Error != "" {
				state += " (" + d.Error + ")"
			}
			cam += "; " + d.Kind + " " + state
		}
		row("lane "+l.Name, "%s; %d passages since start", cam, l.Passages)
	}
	if p := st.LastPassage; p != nil {
		row("last passage", "%s %s %s (event %d)", e.clockText(p.Time), p.Lane, p.Outcome, p.Seq)
	} else {
		row("last passage", "none")
	}
	row("events", "%d recorded, %d unsent", st.Recorded, st.Unsent)
	switch {
	case st.Sync != nil:
		s := st.Sync
		line := "last good " + e.clockText(s.LastOK)
		if !s.LastOK.IsZero() {
			line += " (" + ago(st.Time, s.LastOK) + ")"
		}
		if s.Error != "" {
			line += fmt.Sprintf("; FAILING: %s (%d in a row)", s.Error, s.Failures)
		}
		row("sync", "%s", line)
	case st.LastSync != nil:
		row("sync", "last good %s; no authority configured now", e.clockText(st.LastSync.LastOK))
	default:
		row("sync", "no authority")
	}
	if t := st.Trust; t != nil {
		row("trust list", "version %d, issued %s (%s)%s", t.Version, e.clockText(t.IssuedAt), ago(st.Time, t.IssuedAt), staleText(t.Stale))
	}
	r := st.Revocations
	if r.Expires.IsZero() {
		row("revocations", "none%s", staleText(true))
	} else {
		row("revocations", "version %d, %d entries, current until %s%s", r.Version, r.Entries, e.clockText(r.Expires), staleText(r.Stale))
	}
	disk := fmt.Sprintf("%d MB free", st.Disk.Free>>20)
	if st.Disk.Low {
		disk += " LOW: the disk alarm is raised"
	}
	if st.Disk.Err != "" {
		disk += " (" + st.Disk.Err + ")"
	}
	if !st.ReadOnly {
		row("disk", "%s", disk)
	}
	if st.Fingerprint != "" {
		row("https", "%s", st.Fingerprint)
	}
	if st.DeviceKey != "" {
		row("device key", "%s", st.DeviceKey)
	}
	if st.ReadOnly {
		row("database", "open read-only")
	}
	return tw.Flush()
}

func staleText(stale bool) string {
	if stale {
		return " STALE"
	}
	return ""
}

func logsCmd(ctx context.Context, args []string, e env) error {
	fl := flag.NewFlagSet("checkpointctl logs", flag.ContinueOnError)
	fl.SetOutput(e.stderr)
	c := addConn(fl)
	ff := addFilter(fl)
	limit := fl.Int("limit", 50, fmt.Sprintf("events a page (at most %d)", store.MaxPage))
	before := fl.Uint64("before", 0, "the page before this event (the next page's hint)")
	if err := cli.Parse(fl, args); err != nil {
		return err
	}
	f, err := ff.filter(e)
	if err != nil {
		return err
	}
	if *limit < 1 || *limit > store.MaxPage {
		return cli.Usagef("--limit: 1 to %d", store.MaxPage)
	}
	f.Limit, f.Before = *limit, *before
	cl, done, err := c.open(ctx, fl, e)
	if err != nil {
		return err
	}
	defer done()
	page, err := cl.Logs(ctx, f)
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(e.stdout, page)
	}
	rows := [][]string{{"SEQ", "TIME", "LANE", "OUTCOME", "REASONS", "COLOUR", "NAME", "TEMP", "GUARDS"}}
	for _, ev := range page.Events {
		outcome, reasons := ev.Outcome, strings.Join(ev.Reasons, ",")
		switch {
		case ev.Audit != nil:
			a := ev.Audit
			outcome = "audit"
			reasons = fmt.Sprintf("%s by %s (%s), %d rows", a.Action, a.Who, a.User, a.Rows)
			if a.Query != "" {
				reasons += " " + a.Query
			}
		case outcome == "":
			outcome, reasons = ev.Kind, ev.GateAction
		}
		name := ev.MaskedName
		if name == "" {
			name = ev.IDMasked
		}
		temp := ""
		if ev.Temperature != nil {
			temp = fmt.Sprintf("%.1f", *ev.Temperature)
		}
		rows = append(rows, []string{fmt.Sprint(ev.Seq), e.clockText(ev.Time), ev.Lane, outcome, reasons, ev.Colour, name, temp,
			strings.Join(ev.Guards, ",")})
	}
	writeTable(e.stdout, rows)
	if len(page.Events) == 0 {
		fmt.Fprintln(e.stdout, "no events")
	}
	if page.Next != 0 {
		fmt.Fprintf(e.stdout, "more: the next page is --before %d\n", page.Next)
	}
	if page.Unreadable > 0 {
		fmt.Fprintf(e.stdout, "%d events do not decode: run checkpointctl verify-log\n", page.Unreadable)
	}
	if page.Sealed > 0 {
		fmt.Fprintf(e.stdout, "%d events' masked names stayed sealed\n", page.Sealed)
	}
	return nil
}

func statsCmd(ctx context.Context, args []string, e env) error {
	fl := flag.NewFlagSet("checkpointctl stats", flag.ContinueOnError)
	fl.SetOutput(e.stderr)
	c := addConn(fl)
	fromText := fl.String("from", "today", "from this time (RFC 3339, today, yesterday, 2026-11-30)")
	toText := fl.String("to", "", "to this time; a day counts whole (default: the end of the --from day)")
	step := fl.String("step", "", "hour or day (default: hour for up to two days, else day)")
	if err := cli.Parse(fl, args); err != nil {
		return err
	}
	now := e.clock.Now()
	from, err := when(*fromText, now, e.loc, false)
	if err != nil {
		return cli.Usagef("--from: %v", err)
	}
	to := from.AddDate(0, 0, 1)
	if *toText != "" {
		if to, err = when(*toText, now, e.loc, true); err != nil {
			return cli.Usagef("--to: %v", err)
		}
	}
	if !to.After(from) {
		return cli.Usagef("--to must be after --from")
	}
	st := store.Step(*step)
	switch st {
	case "":
		st = store.Hour
		if to.Sub(from) > 48*time.Hour {
			st = store.Day
		}
	case store.Hour, store.Day:
	default:
		return cli.Usagef("--step: hour or day")
	}
	cl, done, err := c.open(ctx, fl, e)
	if err != nil {
		return err
	}
	defer done()
	stats, err := cl.Stats(ctx, from, to, st)
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(e.stdout, stats)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "PERIOD\tPASSES\tREFUSALS\tREFERRALS\tFEVERS\tID-ONLY\tOVERRIDES\tOFFLINE\tREFUSED FOR\t")
	layout := "2006-01-02 15:04"
	if st == store.Day {
		layout = "2006-01-02"
	}
	line := func(label string, p store.Period) {
		reasons := make([]string, 0, len(p.RefusedFor))
		for r := range p.RefusedFor {
			reasons = append(reasons, r)
		}
		slices.SortFunc(reasons, func(a, b string) int {
			if n := p.RefusedFor[b] - p.RefusedFor[a]; n != 0 {
				return n
			}
			return strings.Compare(a, b)
		})
		for i, r := range reasons {
			reasons[i] = fmt.Sprintf("%s %d", r, p.RefusedFor[r])
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t\n", label, p.Passes, p.Refusals, p.Referrals, p.Fevers, p.IDOnly,
			p.Overrides, p.Offline.Round(time.Minute), strings.Join(reasons, ", "))
	}
	for _, p := range stats.Periods {
		line(p.Start.Format(layout), p)
	}
	line("total", stats.Total)
	return tw.Flush()
}

func exportCmd(ctx context.Context, args []string, e env) error {
	fl := flag.NewFlagSet("checkpointctl export", flag.ContinueOnError)
	fl.SetOutput(e.stderr)
	c := addConn(fl)
	ff := addFilter(fl)
	formatText := fl.String("format", "csv", "csv or jsonl")
	out := fl.String("out", "", "the file to write (and FILE.manifest.json beside it), e.g. on a USB stick")
	encryptTo := fl.String("encrypt-to", "", "encrypt the file to this supervisor's public key (checkpointctl keygen)")
	if err := cli.Parse(fl, args, "out"); err != nil {
		return err
	}
	format, err := export.ParseFormat(*formatText)
	if err != nil {
		return cli.UsageError{Msg: err.Error()}
	}
	f, err := ff.filter(e)
	if err != nil {
		return err
	}
	var to *[32]byte
	if *encryptTo != "" {
		if to, err = export.ReadBoxPublic(*encryptTo); err != nil {
			return cli.Usagef("--encrypt-to: %v", err)
		}
	}
	manifestPath := *out + ".manifest.json"
	for _, p := range []string{*out, manifestPath} {
		if _, err := os.Stat(p); err == nil {
			return cli.Usagef("%s exists: not overwriting it", p)
		}
	}
	cl, done, err := c.open(ctx, fl, e)
	if err != nil {
		return err
	}
	defer done()
	part := *out + ".part"
	file, err := os.OpenFile(part, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer os.Remove(part)
	buf := bufio.NewWriterSize(file, 64<<10)
	var sealer io.WriteCloser
	encrypted := false
	ex, err := cl.Export(ctx, f, format, func(byBox bool) (io.Writer, error) {
		encrypted = byBox || to != nil
		switch {
		case byBox && to != nil:
			fmt.Fprintln(e.stderr, "checkpointctl: the box encrypts this supervisor's exports to the key in its configuration; --encrypt-to is not applied")
		case to != nil:
			var err error
			sealer, err = export.Encrypt(buf, to)
			return sealer, err
		}
		return buf, nil
	})
	if err == nil && sealer != nil {
		err = sealer.Close()
	}
	if err == nil {
		err = buf.Flush()
	}
	if err == nil {
		err = file.Sync()
	}
	if cerr := file.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.WriteFile(manifestPath, ex.Manifest, 0o644); err != nil {
		return err
	}
	if err := os.Rename(part, *out); err != nil {
		return err
	}
	if c.json {
		return printJSON(e.stdout, exportResult{File: *out, Manifest: manifestPath, Rows: ex.Rows, Format: format, Encrypted: encrypted})
	}
	how := string(format)
	if encrypted {
		how += ", encrypted"
	}
	fmt.Fprintf(e.stdout, "wrote %s (%d rows, %s) and %s\n", *out, ex.Rows, how, manifestPath)
	fmt.Fprintf(e.stdout, "check it with: checkpointctl verify-export %s --device-pub device.pub", *out)
	if encrypted {
		fmt.Fprint(e.stdout, " --key supervisor.key")
	}
	fmt.Fprintln(e.stdout)
	return nil
}

type exportResult struct {
	File      string        `json:"file"`
	Manifest  string        `json:"manifest"`
	Rows      int           `json:"rows"`
	Format    export.Format `json:"format"`
	Encrypted bool          `json:"encrypted"`
}

// verifyExportCmd checks an export file against its manifest and the
// box's public key; the exit status is 1 when it does not verify.
func verifyExportCmd(args []string, e env) error {
	fl := flag.NewFlagSet("checkpointctl verify-export", flag.ContinueOnError)
	fl.SetOutput(e.stderr)
	manifestPath := fl.String("manifest", "", "the signed manifest (default FILE.manifest.json)")
	devicePub := fl.String("device-pub", "", "the box's device public key (checkpointctl status --save-device-pub)")
	keyPath := fl.String("key", "", "the supervisor's private key, for an encrypted export")
	asJSON := fl.Bool("json", false, "print JSON")
	pos, err := parseArgs(fl, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return cli.Usagef("give one export file")
	}
	if *devicePub == "" {
		return cli.Usagef("--device-pub is required: the box's public key, as checkpointctl status --save-device-pub writes it")
	}
	path := pos[0]
	if *manifestPath == "" {
		*manifestPath = path + ".manifest.json"
	}
	signed, err := readFile("manifest", *manifestPath)
	if err != nil {
		return err
	}
	pub, err := keyfile.ReadPublic(*devicePub)
	if err != nil {
		return cli.Usagef("--device-pub: %v", err)
	}
	file, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return cli.Usagef("export file %s does not exist", path)
	}
	if err != nil {
		return err
	}
	defer file.Close()
	in := bufio.NewReaderSize(file, 64<<10)
	var data io.Reader = in
	head, _ := in.Peek(16)
	if export.IsEncrypted(head) {
		if *keyPath == "" {
			return cli.Usagef("%s is encrypted: give --key, the supervisor's private key", path)
		}
		priv, err := export.ReadBoxPrivate(*keyPath)
		if err != nil {
			return cli.Usagef("--key: %v", err)
		}
		if data, err = export.Decrypt(in, priv); err != nil {
			return reportExport(e, *asJSON, export.Manifest{}, err)
		}
	}
	m, err := export.Check(data, signed, pub)
	return reportExport(e, *asJSON, m, err)
}

// report2 says how an export's check went.
func reportExport(e env, asJSON bool, m export.Manifest, err error) error {
	if asJSON {
		r := struct {
			OK       bool             `json:"ok"`
			Error    string           `json:"error,omitempty"`
			Manifest *export.Manifest `json:"manifest,omitempty"`
		}{OK: err == nil}
		if err != nil {
			r.Error = err.Error()
		} else {
			r.Manifest = &m
		}
		if perr := printJSON(e.stdout, r); perr != nil {
			return perr
		}
	} else if err != nil {
		fmt.Fprintf(e.stdout, "FAILED: %v\n", err)
	} else {
		filter := m.Filter
		if filter == "" {
			filter = "the whole log kept"
		}
		fmt.Fprintf(e.stdout, "OK: %d rows (events %d to %d), %s, from checkpoint %s", m.Count, m.FirstSeq, m.LastSeq, m.Format, m.Checkpoint)
		if m.Device != "" {
			fmt.Fprintf(e.stdout, " (device %s)", m.Device)
		}
		fmt.Fprintf(e.stdout, "\n    exported by %s at %s; filter: %s\n", m.Who, e.clockText(m.Created), filter)
	}
	if err != nil {
		return errBadNews
	}
	return nil
}

func verifyLogCmd(ctx context.Context, args []string, e env) error {
	fl := flag.NewFlagSet("checkpointctl verify-log", flag.ContinueOnError)
	fl.SetOutput(e.stderr)
	c := addConn(fl)
	if err := cli.Parse(fl, args); err != nil {
		return err
	}
	cl, done, err := c.open(ctx, fl, e)
	if err != nil {
		return err
	}
	defer done()
	lc, err := cl.VerifyLog(ctx)
	if err != nil {
		return err
	}
	if c.json {
		if err := printJSON(e.stdout, lc); err != nil {
			return err
		}
	} else {
		if lc.OK {
			fmt.Fprintf(e.stdout, "OK: %d events checked (%d to %d), chained without a gap\n", lc.Checked, lc.First, lc.Last)
		} else {
			fmt.Fprintf(e.stdout, "PROBLEM: %s at event %d: %s\n", strings.ToUpper(lc.Problem), lc.At, lc.Detail)
		}
		fmt.Fprintf(e.stdout, "the box recorded %d events; the authority acknowledged %d; retention removed events through %d\n",
			lc.Recorded, lc.Acknowledged, lc.Pruned)
		for _, f := range lc.Forced {
			fmt.Fprintf(e.stdout, "forced purge at %s: events %d to %d, never acknowledged by the authority\n", e.clockText(f.At), f.From, f.To)
		}
	}
	if !lc.OK {
		return errBadNews
	}
	return nil
}

func syncCmd(ctx context.Context, args []string, e env) error {
	fl := flag.NewFlagSet("checkpointctl sync", flag.ContinueOnError)
	fl.SetOutput(e.stderr)
	c := addConn(fl)
	if err := cli.Parse(fl, args); err != nil {
		return err
	}
	cl, done, err := c.open(ctx, fl, e)
	if err != nil {
		return err
	}
	defer done()
	res, err := cl.Sync(ctx)
	if err != nil {
		return err
	}
	if c.json {
		if err := printJSON(e.stdout, res); err != nil {
			return err
		}
	} else if res.OK {
		s := res.Status
		fmt.Fprintf(e.stdout, "synced: the authority holds the events through %d; %d unsent; trust list version %d; revocations version %d; "+
			"the authority's clock minus the box's: %v\n", s.Mark, s.Unsent, s.TrustVersion, s.RevocationVersion, s.Offset.Round(time.Millisecond))
	} else {
		fmt.Fprintf(e.stdout, "sync FAILED: %s (%d failures in a row)\n", res.Error, res.Status.Failures)
	}
	if !res.OK {
		return errBadNews
	}
	return nil
}

func purgeCmd(ctx context.Context, args []string, e env) error {
	fl := flag.NewFlagSet("checkpointctl purge", flag.ContinueOnError)
	fl.SetOutput(e.stderr)
	c := addConn(fl)
	unsent := fl.Bool("unsent", false, "also delete events older than the retention that the authority never acknowledged")
	yes := fl.Bool("yes", false, "confirm --unsent")
	if err := cli.Parse(fl, args); err != nil {
		return err
	}
	if *unsent && !*yes {
		return cli.Usagef("--unsent deletes events the authority never received, for good: add --yes to confirm")
	}
	cl, done, err := c.open(ctx, fl, e)
	if err != nil {
		return err
	}
	defer done()
	res, err := cl.Purge(ctx, *unsent)
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(e.stdout, res)
	}
	keep := time.Duration(res.RetentionS) * time.Second
	fmt.Fprintf(e.stdout, "deleted %d events older than the retention (%v)", res.Deleted, keep)
	if res.Through != 0 {
		fmt.Fprintf(e.stdout, "; the log now begins after event %d", res.Through)
	}
	fmt.Fprintln(e.stdout)
	if f := res.Forced; f != nil {
		fmt.Fprintf(e.stdout, "of them %d never acknowledged by the authority (events %d to %d): recorded as a forced purge\n",
			res.Unsent, f.From, f.To)
	}
	return nil
}

// keygenCmd makes a supervisor's X25519 key pair for encrypted exports.
func keygenCmd(args []string, e env) error {
	fl := flag.NewFlagSet("checkpointctl keygen", flag.ContinueOnError)
	fl.SetOutput(e.stderr)
	out := fl.String("out", "", "NAME: writes NAME.key (secret, mode 0600) and NAME.pub")
	asJSON := fl.Bool("json", false, "print JSON")
	if err := cli.Parse(fl, args, "out"); err != nil {
		return err
	}
	priv, pub := *out+".key", *out+".pub"
	if err := export.GenerateBoxKey(priv, pub); err != nil {
		return cli.UsageError{Msg: err.Error()}
	}
	if *asJSON {
		return printJSON(e.stdout, map[string]string{"private": priv, "public": pub})
	}
	fmt.Fprintf(e.stdout, "wrote %s (keep it secret) and %s (box_key of your [[api.supervisor]], or --encrypt-to)\n", priv, pub)
	return nil
}

// writeTable writes rows in columns two spaces apart, padded by the width
// the characters take on a terminal: a Chinese character takes two.
func writeTable(w io.Writer, rows [][]string) {
	var widths []int
	for _, r := range rows {
		for i, cell := range r {
			if i == len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], displayWidth(cell))
		}
	}
	for _, r := range rows {
		var b strings.Builder
		for i, cell := range r {
			b.WriteString(cell)
			if i < len(r)-1 {
				b.WriteString(strings.Repeat(" ", widths[i]-displayWidth(cell)+2))
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
}

// displayWidth is how many columns s takes on a terminal: two for the
// wide characters of East Asian scripts, one for others.
func displayWidth(s string) int {
	n := 0
	for _, r := range s {
		switch {
		case unicode.Is(unicode.Han, r), unicode.Is(unicode.Hangul, r), unicode.Is(unicode.Hiragana, r),
			unicode.Is(unicode.Katakana, r), r >= 0x3000 && r <= 0x303f, r >= 0xff01 && r <= 0xff60:
			n += 2
		default:
			n++
		}
	}
	return n
}
