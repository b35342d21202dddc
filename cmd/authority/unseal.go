package main

import (
	"fmt"
	"io"
	"path/filepath"
	"time"

	"golang.org/x/crypto/nacl/box"

	"github.com/checkpointd/checkpoint/internal/cli"
	"github.com/checkpointd/checkpoint/internal/clock"
	"github.com/checkpointd/checkpoint/internal/keyfile"
)

// unseal lists the passages of people without a code that the
// checkpoints uploaded, with the ID number each sealed to the authority's
// event key: the authority's record for contact tracing. It reads the
// database --db names: a bbolt file, of a stopped authority (the server
// holds the file), or a PostgreSQL database, while the servers run.
func unseal(args []string, clk clock.Clock, stdout io.Writer) error {
	fl := newFlags("unseal")
	keys := fl.String("keys", "", "directory of the authority's keys (event.key)")
	dbPath := fl.String("db", "", dbHelp+" (a bbolt file: the server stopped)")
	if err := cli.Parse(fl, args, "keys", "db"); err != nil {
		return err
	}
	k, err := keyfile.ReadEventPrivate(filepath.Join(*keys, "event.key"))
	if err != nil {
		return cli.UsageError{Msg: err.Error()}
	}
	var priv, pub [32]byte
	copy(priv[:], k.Bytes())
	copy(pub[:], k.PublicKey().Bytes())
	db, err := openStorage(*dbPath, clk)
	if err != nil {
		return err
	}
	defer db.Close()
	devices, err := db.Devices()
	if err != nil {
		return err
	}
	n := 0
	for _, d := range devices {
		for from := uint64(1); ; {
			evs, err := db.DeviceEvents(d.ID, from, 1000)
			if err != nil {
				return err
			}
			for _, e := range evs {
				if e.ID == nil || e.ID.Sealed == nil {
					continue
				}
				number, ok := box.OpenAnonymous(nil, e.ID.Sealed, &pub, &priv)
				if !ok {
					return fmt.Errorf("checkpoint %s event %d: the sealed ID number does not open with this event key", d.Name, e.Seq)
				}
				fmt.Fprintf(stdout, "checkpoint %s (%s), event %d, %s, lane %s, %s: ID number %s\n", d.Name, d.ID, e.Seq,
					e.Time.UTC().Format(time.RFC3339), e.Lane, e.Decision, number)
				n++
			}
			if len(evs) < 1000 {
				break
			}
			from = evs[len(evs)-1].Seq + 1
		}
	}
	fmt.Fprintf(stdout, "%d sealed ID numbers\n", n)
	return nil
}
