package state

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

var (
	bucketIntents = []byte("intents")
	bucketCursors = []byte("cursors")
)

// Intent is a target write about to be sent. It is recorded (in one transaction for a whole
// batch) before the requests go out and removed by the write's Commit, so a process killed
// between a target write and its commit leaves a trace: the next run looks the resource up on
// the target and records what really happened instead of writing it twice.
type Intent struct {
	Kind       LinkKind  `json:"kind"`
	Action     string    `json:"action"` // create, update, disable, delete
	ExternalID string    `json:"externalId"`
	Name       string    `json:"name"`
	DN         string    `json:"dn,omitempty"`
	TargetID   string    `json:"targetId,omitempty"` // known for every action but create
	RunID      uint64    `json:"runId"`
	At         time.Time `json:"at"`
}

func intentKey(kind LinkKind, externalID string) []byte {
	return append(append([]byte(kind), 0), externalID...)
}

// PutIntents records intents in one transaction.
func (s *Store) PutIntents(intents []Intent) error {
	if len(intents) == 0 {
		return nil
	}
	err := s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketIntents)
		for _, in := range intents {
			if err := putJSON(b, intentKey(in.Kind, in.ExternalID), in); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("state: record %d intents: %w", len(intents), err)
	}
	return nil
}

// ClearIntents removes intents whose write turned out to need no record (it failed, or the
// next run found nothing happened).
func (s *Store) ClearIntents(kind LinkKind, externalIDs ...string) error {
	if len(externalIDs) == 0 {
		return nil
	}
	err := s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketIntents)
		for _, id := range externalIDs {
			if err := b.Delete(intentKey(kind, id)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("state: clear intents: %w", err)
	}
	return nil
}

// Intents returns the unfinished writes of kind.
func (v *View) Intents(kind LinkKind) ([]Intent, error) {
	b := v.bucket(bucketIntents)
	if b == nil {
		return nil, nil
	}
	var out []Intent
	prefix := append([]byte(kind), 0)
	c := b.Cursor()
	for k, raw := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, raw = c.Next() {
		var in Intent
		if err := json.Unmarshal(raw, &in); err != nil {
			return nil, fmt.Errorf("state: intent %q: %w", k, err)
		}
		out = append(out, in)
	}
	return out, nil
}

// Cursor is where the next directory delta of one kind starts, and when both sides were last
// read in full. Data is the directory client's own cursor, opaque here.
type Cursor struct {
	Data   json.RawMessage `json:"data,omitempty"`
	FullAt time.Time       `json:"fullAt,omitzero"` // the last full reconcile
	// Config fingerprints the settings the last full reconcile ran with (mapping, override
	// rules, deprovisioning, target): a different one means the next run reconciles in full.
	Config    string    `json:"config,omitempty"`
	UpdatedAt time.Time `json:"updatedAt,omitzero"` // when Data last advanced
	// TargetUsers is how many users the target listed at the last full reconcile: the next
	// listing may not run far beyond it (a listing that never ends is refused).
	TargetUsers int `json:"targetUsers,omitempty"`
}

// Cursor returns kind's cursor.
func (v *View) Cursor(kind LinkKind) (Cursor, bool, error) {
	b := v.bucket(bucketCursors)
	if b == nil {
		return Cursor{}, false, nil
	}
	raw := b.Get([]byte(kind))
	if raw == nil {
		return Cursor{}, false, nil
	}
	var c Cursor
	if err := json.Unmarshal(raw, &c); err != nil {
		return Cursor{}, false, fmt.Errorf("state: %s cursor: %w", kind, err)
	}
	c.Data = bytes.Clone(c.Data)
	return c, true, nil
}

// SetCursor stores kind's cursor. The caller does so only once every change it covers has been
// applied and committed, so a crash replays the delta rather than skipping it.
func (s *Store) SetCursor(kind LinkKind, c Cursor) error {
	err := s.update(func(tx *bolt.Tx) error { return putJSON(tx.Bucket(bucketCursors), []byte(kind), c) })
	if err != nil {
		return fmt.Errorf("state: store %s cursor: %w", kind, err)
	}
	return nil
}

// ClearCursor forgets kind's cursor: the next run reads the directory in full.
func (s *Store) ClearCursor(kind LinkKind) error {
	err := s.update(func(tx *bolt.Tx) error { return tx.Bucket(bucketCursors).Delete([]byte(kind)) })
	if err != nil {
		return fmt.Errorf("state: clear %s cursor: %w", kind, err)
	}
	return nil
}
