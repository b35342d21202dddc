// Command gatesim plays the devices of a lane for the demo, on a machine
// that has none: an infrared thermometer and an ID-card reader, each on a
// pseudo-terminal that checkpointd opens as its serial port. The
// thermometer answers each query with the next reading of a script; the
// card reader reads the script's cards at their cue: before a given
// reading (the person puts the card down, then is measured) or once a
// given number of passages have been decided (a person without a phone,
// stepping up 1.5 s later).
// It also prints the demo's table of decisions. make demo runs it.
//
//	gatesim serve -script sim.json -paths devices.txt -decisions decisions.jsonl [-loop]
//	gatesim table decisions.jsonl WHO...
//
// With -loop (make demo-live, whose video plays again and again) the script
// starts again from its first reading on SIGHUP, sent as the video starts
// again, and after its last reading; the card cues count from there.
//
// The script:
//
//	{"query": "M", "readings": ["36.5", "38.2", ...],
//	 "card_before_reading": {"6": "NUMBER,NAME"}, "card_after_decisions": {"11": "NAME,NUMBER"}}
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	stdsync "sync"
	"syscall"
	"time"

	"github.com/creack/pty"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "table":
		err = table(os.Args[2:], os.Stdout)
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gatesim:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: gatesim serve -script FILE -paths FILE -decisions FILE [-loop] | gatesim table DECISIONS WHO...")
	os.Exit(2)
}

// stepUp is how long after the passage before a person without a phone
// puts the card down.
const stepUp = 1500 * time.Millisecond

type script struct {
	Query              string            `json:"query"`
	Readings           []string          `json:"readings"`
	CardBeforeReading  map[string]string `json:"card_before_reading"`
	CardAfterDecisions map[string]string `json:"card_after_decisions"`
}

func serve(args []string) error {
	fl := flag.NewFlagSet("serve", flag.ContinueOnError)
	scriptPath := fl.String("script", "", "the script (JSON)")
	pathsPath := fl.String("paths", "", "file to write the devices' paths to")
	decisions := fl.String("decisions", "", "checkpointd's decisions (JSON lines), counted for the card cues")
	loop := fl.Bool("loop", false, "start the script again on SIGHUP and after its last reading")
	if err := fl.Parse(args); err != nil || *scriptPath == "" || *pathsPath == "" || *decisions == "" {
		usage()
	}
	raw, err := os.ReadFile(*scriptPath)
	if err != nil {
		return err
	}
	var sc script
	if err := json.Unmarshal(raw, &sc); err != nil {
		return fmt.Errorf("%s: %w", *scriptPath, err)
	}
	therm, thermSlave, err := pty.Open()
	if err != nil {
		return err
	}
	cards, cardsSlave, err := pty.Open()
	if err != nil {
		return err
	}
	// The slaves stay open here too, so that the terminals live until the
	// demo ends, whenever checkpointd opens and closes them.
	defer thermSlave.Close()
	defer cardsSlave.Close()
	paths := fmt.Sprintf("thermometer=%s\nid_reader=%s\n", thermSlave.Name(), cardsSlave.Name())
	if err := os.WriteFile(*pathsPath, []byte(paths), 0o644); err != nil {
		return err
	}

	// One round of the script: the readings given, and the decisions and
	// the cards sent since it started.
	var mu stdsync.Mutex
	var n, base int
	sent := map[string]bool{}
	restart := func() {
		n, base, sent = 0, countLines(*decisions), map[string]bool{}
	}
	// Cards for people without a phone, once enough passages are decided.
	go func() {
		for {
			time.Sleep(100 * time.Millisecond)
			mu.Lock()
			d := countLines(*decisions) - base
			for at, card := range sc.CardAfterDecisions {
				if k, _ := strconv.Atoi(at); d >= k && !sent[at] {
					sent[at] = true
					// The person steps up once the one before has gone.
					time.AfterFunc(stepUp, func() { io.WriteString(cards, card+"\r\n") })
				}
			}
			mu.Unlock()
		}
	}()
	// The thermometer answers each query with the next reading.
	go func() {
		in := bufio.NewScanner(therm)
		for in.Scan() {
			if strings.TrimSpace(in.Text()) != sc.Query {
				continue
			}
			mu.Lock()
			if *loop && n == len(sc.Readings) {
				restart()
			}
			n++
			card, cue := sc.CardBeforeReading[strconv.Itoa(n)]
			var reading string
			if n <= len(sc.Readings) {
				reading = sc.Readings[n-1]
			}
			mu.Unlock()
			if cue {
				io.WriteString(cards, card+"\r\n")
				time.Sleep(300 * time.Millisecond) // the card goes down before the forehead comes up
			}
			if reading != "" {
				io.WriteString(therm, reading+"\r\n")
			}
		}
	}()
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	for sig := range signals {
		if sig != syscall.SIGHUP {
			return nil
		}
		if *loop {
			mu.Lock()
			restart()
			mu.Unlock()
		}
	}
	return nil
}

// countLines counts the lines of a file (0 if it is not there yet).
func countLines(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	return strings.Count(string(b), "\n")
}

// decision is what the table needs of checkpointd's JSON display.
type decision struct {
	Decision string   `json:"decision"`
	Reasons  []string `json:"reasons"`
	Code     *struct {
		MaskedName string `json:"masked_name"`
	} `json:"code"`
	Temperatures []struct {
		Celsius float64 `json:"celsius"`
	} `json:"temperatures"`
	ID       string `json:"id"`
	IDMasked string `json:"id_masked"`
	Gate     string `json:"gate"`
}

// table prints one row per decided passage: the decision, the reasons,
// the temperatures, what the gate did, and who it was.
func table(args []string, out io.Writer) error {
	if len(args) < 1 {
		usage()
	}
	f, err := os.Open(args[0])
	if err != nil {
		return err
	}
	defer f.Close()
	who := args[1:]
	fmt.Fprintf(out, "   %-8s %-20s %-11s %-6s %s\n", "DECISION", "REASONS", "TEMPERATURE", "GATE", "WHO (AS THE GUARD SEES IT)")
	in := bufio.NewScanner(f)
	for i := 0; in.Scan(); i++ {
		var d decision
		if err := json.Unmarshal(in.Bytes(), &d); err != nil {
			return fmt.Errorf("%s: line %d: %w", args[0], i+1, err)
		}
		reasons := strings.Join(d.Reasons, ",")
		if reasons == "" {
			reasons = "-"
		}
		var temps []string
		for _, t := range d.Temperatures {
			temps = append(temps, strconv.FormatFloat(t.Celsius, 'f', 1, 64))
		}
		temp := strings.Join(temps, ">")
		if temp == "" {
			temp = "-"
		}
		shown := "-"
		switch {
		case d.Code != nil:
			shown = d.Code.MaskedName
		case d.IDMasked != "":
			shown = d.IDMasked + ", ID card"
		}
		if d.ID == "only" {
			shown += ", ID number sealed"
		}
		name := "?"
		if i < len(who) {
			name = who[i]
		}
		gate := d.Gate
		if gate == "" {
			gate = "-"
		}
		fmt.Fprintf(out, "   %-8s %-20s %-11s %-6s %s (%s)\n", strings.ToUpper(d.Decision), reasons, temp, gate, name, shown)
	}
	return in.Err()
}
