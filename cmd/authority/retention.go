package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/checkpointd/checkpoint/internal/clock"
)

// retentionEvery is how often serve removes the events past --keep-events.
const retentionEvery = time.Hour

// dropper is what the retention needs of the database.
type dropper interface {
	DropEventsBefore(before time.Time) (int, error)
}

// keepEvents removes, at once and then every retentionEvery until ctx
// ends, the events the authority has held longer than keep (by the
// checkpoint's time of the event on bbolt, by the day it was received on
// PostgreSQL: docs/database.md). A failure is logged and tried again at
// the next round: uploads go on either way.
func keepEvents(ctx context.Context, db dropper, clk clock.Clock, keep time.Duration, log *slog.Logger) {
	for {
		before := clk.Now().Add(-keep)
		n, err := db.DropEventsBefore(before)
		switch {
		case err != nil:
			log.Error("removing old events failed; trying again later", "component", "retention", "err", err)
		case n > 0:
			log.Info("old events removed", "component", "retention", "before", before.UTC().Format(time.RFC3339), "removed", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-clk.After(retentionEvery):
		}
	}
}
