package state

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Run is one sync run's history entry.
type Run struct {
	ID       uint64         `json:"id"`
	Started  time.Time      `json:"started"`
	Finished time.Time      `json:"finished,omitzero"`
	Result   string         `json:"result"` // running | ok | error | stopped | cancelled
	Counts   map[string]int `json:"counts,omitempty"`
	Errors   []string       `json:"errors,omitempty"`
}

// BeginRun stores a new run in the "running" result and returns its id.
func (s *Store) BeginRun(started time.Time) (uint64, error) {
	var id uint64
	err := s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRuns)
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		id = seq
		return putJSON(b, be64(id), Run{ID: id, Started: started.UTC(), Result: "running"})
	})
	if err != nil {
		return 0, fmt.Errorf("state: begin run: %w", err)
	}
	return id, nil
}

// FinishRun overwrites the run's entry with its outcome.
func (s *Store) FinishRun(r Run) error {
	r.Finished = r.Finished.UTC()
	err := s.update(func(tx *bolt.Tx) error { return putJSON(tx.Bucket(bucketRuns), be64(r.ID), r) })
	if err != nil {
		return fmt.Errorf("state: finish run %d: %w", r.ID, err)
	}
	return nil
}

// Runs returns up to limit most recent runs, newest first.
func (s *Store) Runs(limit int) ([]Run, error) {
	var out []Run
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketRuns).Cursor()
		for k, v := c.Last(); k != nil && len(out) < limit; k, v = c.Prev() {
			var r Run
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("run %d: %w", binary.BigEndian.Uint64(k), err)
			}
			out = append(out, r)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("state: read runs: %w", err)
	}
	return out, nil
}
