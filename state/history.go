package state

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The change log is kept per run (bucket changes, keyed by run and sequence) and indexed per
// user, so `scimsync history USER` reads one user's entries without scanning every run:
//
//	changes_by_user  ukey(externalId) be64(run) be64(seq) -> ""   every change of one user
//	user_names       ukey(lower(userName)) externalId -> ""       every userName a user had
//
// ukey(s) is a big-endian uint16 length followed by s, so one id is never a prefix of another.

var (
	bucketChangesByUser = []byte("changes_by_user")
	bucketUserNames     = []byte("user_names")
)

// ErrNotFound means the run (or other record) asked for does not exist.
var ErrNotFound = errors.New("not found")

// HistoryEntry is one change-log entry with the run that made it.
type HistoryEntry struct {
	Run uint64 `json:"run"`
	Seq uint64 `json:"seq"`
	Change
}

func ukey(s string) []byte {
	if len(s) > 0xffff {
		s = s[:0xffff]
	}
	k := make([]byte, 2, 2+len(s))
	binary.BigEndian.PutUint16(k, uint16(len(s)))
	return append(k, s...)
}

// putChange appends ch to run's change log and indexes it by user, in the caller's transaction.
func putChange(tx *bolt.Tx, runID uint64, ch Change) error {
	changes := tx.Bucket(bucketChanges)
	seq, err := changes.NextSequence()
	if err != nil {
		return err
	}
	key := append(be64(runID), be64(seq)...)
	if err := putJSON(changes, key, ch); err != nil {
		return err
	}
	return indexChange(tx, key, ch)
}

// indexChange records the change stored under key (be64(run) be64(seq)) in the per-user
// index. Every writer of the change log calls it in the same transaction as the write.
func indexChange(tx *bolt.Tx, key []byte, ch Change) error {
	if ch.ExternalID == "" {
		return nil // nothing to find it by
	}
	if err := tx.Bucket(bucketChangesByUser).Put(append(ukey(ch.ExternalID), key...), nil); err != nil {
		return fmt.Errorf("index change of %q: %w", ch.ExternalID, err)
	}
	if ch.UserName != "" {
		if err := tx.Bucket(bucketUserNames).Put(append(ukey(strings.ToLower(ch.UserName)), ch.ExternalID...), nil); err != nil {
			return fmt.Errorf("index userName %q: %w", ch.UserName, err)
		}
	}
	return nil
}

// unindexChange removes what indexChange wrote for the change stored under key. The userName
// entry is kept while the user has other changes: it still leads to them.
func unindexChange(tx *bolt.Tx, key []byte, ch Change) error {
	if ch.ExternalID == "" {
		return nil
	}
	byUser := tx.Bucket(bucketChangesByUser)
	prefix := ukey(ch.ExternalID)
	if err := byUser.Delete(append(bytes.Clone(prefix), key...)); err != nil {
		return err
	}
	if ch.UserName == "" {
		return nil
	}
	if k, _ := byUser.Cursor().Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) {
		return nil
	}
	return tx.Bucket(bucketUserNames).Delete(append(ukey(strings.ToLower(ch.UserName)), ch.ExternalID...))
}

// RecordFailures adds to run's change log the writes that were tried and failed, each with its
// Error set, so a user's history shows them next to what succeeded.
func (s *Store) RecordFailures(runID uint64, failed []Change) error {
	if len(failed) == 0 {
		return nil
	}
	err := s.update(func(tx *bolt.Tx) error {
		for _, ch := range failed {
			if err := putChange(tx, runID, ch); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("state: record %d failed changes of run %d: %w", len(failed), runID, err)
	}
	return nil
}

// History returns the change-log entries of one user, oldest first, at most limit (the most
// recent ones; limit <= 0 means all). user is a userName (case-insensitive; every name the
// user had is followed, so a rename does not hide older entries) or an externalId.
func (s *Store) History(user string, limit int) ([]HistoryEntry, error) {
	var out []HistoryEntry
	err := s.view(func(tx *bolt.Tx) error {
		ids := map[string]bool{}
		prefix := ukey(strings.ToLower(user))
		c := tx.Bucket(bucketUserNames).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			ids[string(k[len(prefix):])] = true
		}
		ids[user] = true
		var keys [][]byte
		byUser := tx.Bucket(bucketChangesByUser).Cursor()
		for id := range ids {
			p := ukey(id)
			for k, _ := byUser.Seek(p); k != nil && bytes.HasPrefix(k, p); k, _ = byUser.Next() {
				keys = append(keys, bytes.Clone(k[len(p):]))
			}
		}
		sort.Slice(keys, func(i, j int) bool { return bytes.Compare(keys[i], keys[j]) < 0 })
		if limit > 0 && len(keys) > limit {
			keys = keys[len(keys)-limit:]
		}
		changes := tx.Bucket(bucketChanges)
		for _, k := range keys {
			v := changes.Get(k)
			if v == nil {
				continue // pruned under a stale index entry: nothing to show
			}
			e := HistoryEntry{Run: binary.BigEndian.Uint64(k[:8]), Seq: binary.BigEndian.Uint64(k[8:])}
			if err := json.Unmarshal(v, &e.Change); err != nil {
				return fmt.Errorf("change %d/%d: %w", e.Run, e.Seq, err)
			}
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("state: history of %q: %w", user, err)
	}
	return out, nil
}

// Run returns one run by id, or ErrNotFound.
func (s *Store) Run(id uint64) (Run, error) {
	var r Run
	found := false
	err := s.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketRuns).Get(be64(id))
		if v == nil {
			return nil
		}
		found = true
		return json.Unmarshal(v, &r)
	})
	if err != nil {
		return Run{}, fmt.Errorf("state: read run %d: %w", id, err)
	}
	if !found {
		return Run{}, fmt.Errorf("state: run %d: %w", id, ErrNotFound)
	}
	return r, nil
}

// PruneResult says what Prune removed.
type PruneResult struct {
	Runs    []uint64 // ids of the runs removed, oldest first
	Changes int      // change-log entries removed with them
}

// pruneBatch bounds one transaction of Prune, so a first prune of a years-old file does not
// hold the write lock for long or build one huge transaction.
const pruneBatch = 200

// Prune removes runs that started before cutoff, with their change log and its index. The
// newest run is always kept, so `scimsync status` never goes blank on an idle install.
func (s *Store) Prune(cutoff time.Time) (PruneResult, error) {
	var res PruneResult
	for {
		n := 0
		err := s.update(func(tx *bolt.Tx) error {
			runs := tx.Bucket(bucketRuns)
			lastKey, _ := runs.Cursor().Last()
			var victims [][]byte
			c := runs.Cursor()
			for k, v := c.First(); k != nil && len(victims) < pruneBatch; k, v = c.Next() {
				if bytes.Equal(k, lastKey) {
					break
				}
				var r Run
				if err := json.Unmarshal(v, &r); err != nil {
					return fmt.Errorf("run %d: %w", binary.BigEndian.Uint64(k), err)
				}
				if !r.Started.Before(cutoff) {
					break // runs are in id order, which is start order
				}
				victims = append(victims, bytes.Clone(k))
			}
			changes := tx.Bucket(bucketChanges)
			for _, k := range victims {
				var keys [][]byte
				var vals []Change
				cc := changes.Cursor()
				for ck, cv := cc.Seek(k); ck != nil && bytes.HasPrefix(ck, k); ck, cv = cc.Next() {
					var ch Change
					if err := json.Unmarshal(cv, &ch); err != nil {
						return fmt.Errorf("change %x: %w", ck, err)
					}
					keys, vals = append(keys, bytes.Clone(ck)), append(vals, ch)
				}
				for i, ck := range keys {
					if err := changes.Delete(ck); err != nil {
						return err
					}
					if err := unindexChange(tx, ck, vals[i]); err != nil {
						return err
					}
				}
				if err := runs.Delete(k); err != nil {
					return err
				}
				res.Runs = append(res.Runs, binary.BigEndian.Uint64(k))
				res.Changes += len(keys)
			}
			n = len(victims)
			return nil
		})
		if err != nil {
			return res, fmt.Errorf("state: prune history before %s: %w", cutoff.UTC().Format(time.RFC3339), err)
		}
		if n < pruneBatch {
			return res, nil
		}
	}
}

// migrateIndexChanges (schema 1 -> 2) creates the per-user index and fills it from the change
// log written so far, so `history USER` also finds changes made before the upgrade.
func migrateIndexChanges(tx *bolt.Tx) error {
	for _, b := range [][]byte{bucketChangesByUser, bucketUserNames} {
		if _, err := tx.CreateBucketIfNotExists(b); err != nil {
			return err
		}
	}
	return tx.Bucket(bucketChanges).ForEach(func(k, v []byte) error {
		var ch Change
		if err := json.Unmarshal(v, &ch); err != nil {
			return fmt.Errorf("change %x: %w", k, err)
		}
		return indexChange(tx, bytes.Clone(k), ch)
	})
}

// RunChanges returns the change log of one run with each entry's place in the log, in order.
func (s *Store) RunChanges(runID uint64) ([]HistoryEntry, error) {
	out := []HistoryEntry{}
	prefix := be64(runID)
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketChanges).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			e := HistoryEntry{Run: runID, Seq: binary.BigEndian.Uint64(k[8:])}
			if err := json.Unmarshal(v, &e.Change); err != nil {
				return fmt.Errorf("change %d/%d: %w", runID, e.Seq, err)
			}
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("state: read changes of run %d: %w", runID, err)
	}
	return out, nil
}
