package state

import (
	"context"
	"errors"
	"fmt"
	gosync "sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ErrClosed is returned by CommitResources once the store is closing.
var ErrClosed = errors.New("state store is closed")

// maxBatchWrites bounds one group-commit transaction, so a burst of writers cannot build a
// transaction whose dirty pages exceed what one fsync should carry.
const maxBatchWrites = 4096

// commitRequest is one caller's writes, applied atomically, and where to tell it the outcome.
type commitRequest struct {
	writes []ResourceWrite
	done   chan error
}

// committer shares one bbolt transaction (and so one fsync) among every writer that arrives
// while the previous transaction is being written: no added delay for a lone writer, and
// batches that grow with the load. bbolt's own Batch waits up to MaxBatchDelay before
// committing, which would put that delay on every single-client write.
type committer struct {
	db      *bolt.DB
	queue   chan *commitRequest
	stop    chan struct{}
	stopped chan struct{}
	once    gosync.Once
	mu      gosync.RWMutex // closing takes it exclusively; senders share it
	closed  bool
	// observe, when set, is told each transaction's duration (fsync included) and writes
	observe atomic.Pointer[func(time.Duration, int)]
}

// ObserveCommits has fn told, after every group-commit transaction, how long it took (its
// fsync included) and how many writes it carried: what a durable write waits for. One observer;
// a later call replaces it. A read-only store never commits.
func (s *Store) ObserveCommits(fn func(took time.Duration, writes int)) {
	if s.commits != nil {
		s.commits.observe.Store(&fn)
	}
}

func newCommitter(db *bolt.DB) *committer {
	c := &committer{db: db, queue: make(chan *commitRequest, 1024), stop: make(chan struct{}), stopped: make(chan struct{})}
	go c.loop()
	return c
}

// CommitResources applies writes in one transaction, sharing the fsync with concurrent callers,
// and returns only once they are durable (or failed). A failure of another caller's writes never
// fails these: a failed shared transaction is retried one request at a time.
func (s *Store) CommitResources(ctx context.Context, writes ...ResourceWrite) error {
	if s.ro || s.db == nil {
		return ErrReadOnly
	}
	if len(writes) == 0 {
		return nil
	}
	req := &commitRequest{writes: writes, done: make(chan error, 1)}
	c := s.commits
	c.mu.RLock()
	if c.closed {
		c.mu.RUnlock()
		return fmt.Errorf("state: commit resources: %w", ErrClosed)
	}
	select {
	case c.queue <- req:
	case <-ctx.Done():
		c.mu.RUnlock()
		return fmt.Errorf("state: commit resources: %w", ctx.Err())
	}
	c.mu.RUnlock()
	// Once queued, the write will be applied whatever the caller's context says; waiting for
	// the outcome (rather than returning early on ctx) keeps the caller's view of the store
	// in step with the file.
	if err := <-req.done; err != nil {
		return fmt.Errorf("state: commit resources: %w", err)
	}
	return nil
}

func (c *committer) loop() {
	defer close(c.stopped)
	for {
		var first *commitRequest
		select {
		case first = <-c.queue:
		case <-c.stop:
			// drain what was queued before close so no caller waits forever
			for {
				select {
				case r := <-c.queue:
					c.run([]*commitRequest{r})
				default:
					return
				}
			}
		}
		batch := []*commitRequest{first}
		n := len(first.writes)
	gather:
		for n < maxBatchWrites {
			select {
			case r := <-c.queue:
				batch = append(batch, r)
				n += len(r.writes)
			default:
				break gather
			}
		}
		c.run(batch)
	}
}

// run commits batch in one transaction; when that fails it commits each request alone so only
// the faulty one reports the error. The observer hears of a transaction before its writers are
// answered, so a caller that sees its write acknowledged also finds it counted.
func (c *committer) run(batch []*commitRequest) {
	err := c.commit(batch)
	if err == nil || len(batch) == 1 {
		for _, r := range batch {
			r.done <- err
		}
		return
	}
	for _, r := range batch {
		r.done <- c.commit([]*commitRequest{r})
	}
}

// commit applies batch in one transaction and tells the observer how long it took.
func (c *committer) commit(batch []*commitRequest) error {
	start := time.Now()
	err := c.db.Update(func(tx *bolt.Tx) error {
		for _, r := range batch {
			if err := applyWrites(tx, r.writes); err != nil {
				return err
			}
		}
		return nil
	})
	if fn := c.observe.Load(); fn != nil {
		n := 0
		for _, r := range batch {
			n += len(r.writes)
		}
		(*fn)(time.Since(start), n)
	}
	return err
}

// close stops accepting commits, finishes the queued ones and waits for the loop to end.
func (c *committer) close() {
	c.once.Do(func() {
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		close(c.stop)
		<-c.stopped
	})
}

func applyWrites(tx *bolt.Tx, writes []ResourceWrite) error {
	for _, w := range writes {
		b := tx.Bucket([]byte(w.Kind))
		if b == nil {
			return fmt.Errorf("unknown resource kind %q", w.Kind)
		}
		// new resources have time-ordered ids, so most inserts append: full pages on split
		// keep the file (and its start-up scan) about half the size of bbolt's 50% default
		b.FillPercent = 0.9
		var err error
		if w.Data == nil {
			err = b.Delete([]byte(w.ID))
		} else {
			err = b.Put([]byte(w.ID), w.Data)
		}
		if err != nil {
			return fmt.Errorf("%s %q: %w", w.Kind, w.ID, err)
		}
	}
	return nil
}
