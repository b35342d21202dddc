// Package store keeps the checkpoint's state on disk in bbolt, and the
// reference authority's: it is the only package that imports bbolt, so
// that every transaction, fsync and crash rule lives in one place.
//
// A checkpoint's Box holds its event log (sequence-numbered and
// hash-chained, recorded by a single writer with group commit: nothing
// counts as recorded before its commit is fsynced), its revocations
// (versioned entries in 256 partitions, so that lookups stay fast at ten
// million and updates run in bounded transactions), its trust list, its
// sync cursors and its clock anchors. The daemon and the sync package use
// it; docs/store.md describes the layout and what happens when the disk is
// full.
//
// An Authority holds the authority's side: enrolled devices, their
// uploaded events, revocations by version, and holders' declarations.
// cmd/authority's server uses it through a small interface of its own.
package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/checkpointd/checkpoint/internal/clock"
)

// Errors.
var (
	ErrClosed = errors.New("store: closed")
	// ErrCorrupt means the event log does not verify: an event was
	// deleted, edited or reordered.
	ErrCorrupt = errors.New("store: event log does not verify")
	// ErrLocked means another process holds the database file: bbolt
	// allows one process at a time, and OpenBox and OpenAuthority give up
	// after lockWait.
	ErrLocked = errors.New("store: the database is held by another process")
)

// lockWait is how long an open waits for another process to let go of the
// database file.
const lockWait = 2 * time.Second

// openDB opens a bbolt file, turning a lock held elsewhere into ErrLocked
// with a hint at who holds it.
func openDB(path, holder string) (*bolt.DB, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:        lockWait,
		NoFreelistSync: true, // rebuilt on open; saves a write per commit
		FreelistType:   bolt.FreelistMapType,
	})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("%w: %s is locked (is another %s running?)", ErrLocked, path, holder)
	}
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	return db, nil
}

// Options configure a Box.
type Options struct {
	Clock clock.Clock
	Log   *slog.Logger
	// DiskLow is the free space below which the disk alarm is raised;
	// 0 means 256 MiB.
	DiskLow int64
	// MaxBatch bounds how many events share one commit; 0 means 512.
	MaxBatch int
	// NoGroupCommit commits every event on its own: for benchmarks that
	// measure what group commit saves.
	NoGroupCommit bool
	// Key encrypts the events' private fields at rest (masked names);
	// nil: they are not kept. keyfile.StoreKey reads or makes it.
	Key *[32]byte
}

// Box is a checkpoint's store.
type Box struct {
	db    *bolt.DB
	path  string
	opts  Options
	log   *slog.Logger
	clock clock.Clock

	writes chan *write
	done   chan struct{}
	wg     sync.WaitGroup

	mu       sync.Mutex
	closed   bool
	lastSeq  uint64
	lastHash [32]byte
	disk     DiskStatus
	revState revState

	dicts    *dicts
	readOnly bool
}

// Buckets.
var (
	bucketMeta   = []byte("meta")
	bucketEvents = []byte("events")
	bucketRevs   = []byte("revocations")
	// bucketAcks holds when the authority acknowledged what: unix
	// microseconds -> mark, for the retention to count from.
	bucketAcks = []byte("acks")
)

// Meta keys.
var (
	keyLastSeq  = []byte("events.last_seq")
	keyLastHash = []byte("events.last_hash")
	keyMark     = []byte("upload.mark")
	keyDevice   = []byte("device.id")
	keyTrust    = []byte("trust.list")
	keyAnchor   = []byte("clock.anchor")
	keyHigh     = []byte("clock.high_water")
	keyRevState = []byte("revocations.state")
	keyStaging  = []byte("revocations.staging")
	keySyncLog  = []byte("sync.last")
	keyPruned   = []byte("events.pruned")
	keyForced   = []byte("events.forced_purges")
)

// OpenBox opens (or creates) the checkpoint store at path. If another
// process holds it, it fails with ErrLocked after two seconds.
func OpenBox(path string, opts Options) (*Box, error) {
	if opts.Clock == nil {
		opts.Clock = clock.System{}
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.DiskLow <= 0 {
		opts.DiskLow = 256 << 20
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 512
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	db, err := openDB(path, "checkpointd")
	if err != nil {
		return nil, err
	}
	b := &Box{db: db, path: path, opts: opts, log: opts.Log.With("component", "store"), clock: opts.Clock,
		writes: make(chan *write, 1024), done: make(chan struct{}), dicts: newDicts()}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketMeta, bucketEvents, bucketAcks, bucketSummaries, bucketHours, bucketLinks, bucketDicts} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		revs, err := tx.CreateBucketIfNotExists(bucketRevs)
		if err != nil {
			return err
		}
		for i := 0; i < 256; i++ {
			if _, err := revs.CreateBucketIfNotExists([]byte{byte(i)}); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		if v := meta.Get(keyLastSeq); v != nil {
			b.lastSeq = binary.BigEndian.Uint64(v)
			copy(b.lastHash[:], meta.Get(keyLastHash))
		}
		// A box from before acknowledgements had times: retention counts
		// from now for what was acknowledged then.
		if mark := getU64(meta, keyMark); mark > 0 {
			if k, _ := tx.Bucket(bucketAcks).Cursor().First(); k == nil {
				if err := tx.Bucket(bucketAcks).Put(u64(uint64(opts.Clock.Now().UnixMicro())), u64(mark)); err != nil {
					return err
				}
			}
		}
		if err := b.dicts.load(tx); err != nil {
			return err
		}
		return b.loadRevState(meta)
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store: %w", err)
	}
	if n, err := b.reindex(); err != nil {
		b.log.Error("events not indexed: reading them is slower", "err", err)
	} else if n > 0 {
		b.log.Info("indexed the events recorded before the index", "events", n)
	}
	b.checkDisk()
	b.wg.Add(1)
	go b.writer()
	return b, nil
}

// ErrReadOnly is a change asked of a box opened read-only.
var ErrReadOnly = errors.New("store: opened read-only")

// OpenBoxReadOnly opens a checkpoint store for reading only: a copy of a
// box's database brought in for repair, or a box whose daemon is
// stopped. Nothing is written to the file; Record and the other changes
// fail with ErrReadOnly. Events the index lacks are read decoded.
func OpenBoxReadOnly(path string, opts Options) (*Box, error) {
	if opts.Clock == nil {
		opts.Clock = clock.System{}
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: lockWait, ReadOnly: true})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("%w: %s is locked (is checkpointd running? ask it through its socket)", ErrLocked, path)
	}
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	b := &Box{db: db, path: path, opts: opts, log: opts.Log.With("component", "store"), clock: opts.Clock,
		dicts: newDicts(), readOnly: true, closed: true}
	err = db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil || tx.Bucket(bucketEvents) == nil {
			return fmt.Errorf("%s is not a checkpoint's database", path)
		}
		if v := meta.Get(keyLastSeq); v != nil {
			b.lastSeq = binary.BigEndian.Uint64(v)
			copy(b.lastHash[:], meta.Get(keyLastHash))
		}
		if err := b.loadRevState(meta); err != nil {
			return err
		}
		return b.dicts.load(tx)
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store: %w", err)
	}
	b.checkDisk()
	return b, nil
}

// ReadOnly reports whether the box was opened with OpenBoxReadOnly.
func (b *Box) ReadOnly() bool { return b.readOnly }

// Close stops the writer after the events already handed to it and closes
// the database.
func (b *Box) Close() error {
	if b.readOnly {
		return b.db.Close()
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.mu.Unlock()
	close(b.done)
	b.wg.Wait()
	return b.db.Close()
}

func u64(v uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return b[:]
}

func getU64(m *bolt.Bucket, key []byte) uint64 {
	v := m.Get(key)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}
