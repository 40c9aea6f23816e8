// Package state is scimsync's persistent memory, kept in one bbolt file. Nothing else in the
// project imports bbolt.
//
// Layout (schema version 4); every value is JSON, copied out of its transaction:
//
//	meta                "schema_version" -> decimal string
//	                    "target_discovery" -> Discovery    the target's discovery documents,
//	                                                        kept between full reconciles
//	links               externalId -> Link        users the sync created or adopted on the target
//	link_names          lower(userName) -> externalId      index of links (v2)
//	link_targets        target id -> externalId            index of links (v2)
//	link_uuids          source entry UUID -> externalId    index of links: syncrepl deletes (v2)
//	group_links         externalId -> Link        groups the sync created or adopted (v2)
//	group_link_names    lower(displayName) -> externalId   … and their indexes (v2)
//	group_link_targets  target id -> externalId
//	group_link_uuids    source entry UUID -> externalId
//	intents             kind 0x00 externalId -> Intent   writes sent but not yet recorded (v2)
//	cursors             kind -> Cursor             where the next directory delta starts (v2)
//	overrides           lower(userName) -> Override   administrator's managementMode overrides
//	runs                be64(run id) -> Run           run history, oldest first
//	changes             be64(run id) be64(seq) -> Change   per-run change log (old -> new)
//	changes_by_user     ukey(externalId) be64(run id) be64(seq) -> ""   per-user index of changes (v3)
//	user_names          ukey(lower(userName)) externalId -> ""          names leading to users (v3)
//	scim_users          id -> resource JSON           the built-in SCIM server's users (never a
//	                                                  password: at most a salted argon2id hash) (v4)
//	scim_groups         id -> resource JSON           … and groups, members inline
//
// Runs, their changes and the index are pruned together (Prune, state.history_retention).
package state

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// SchemaVersion is the layout this build writes. Files from a newer build are refused.
const SchemaVersion = 4

var (
	bucketMeta      = []byte("meta")
	bucketLinks     = []byte("links")
	bucketOverrides = []byte("overrides")
	bucketRuns      = []byte("runs")
	bucketChanges   = []byte("changes")
	keySchema       = []byte("schema_version")
)

// ErrLocked means another process (usually the running daemon) holds the state file.
var ErrLocked = errors.New("state file is locked by another scimsync process (is the daemon running?)")

// ErrReadOnly is returned by writes on a store opened read-only.
var ErrReadOnly = errors.New("state store is read-only")

// ErrNewerSchema means the file was written by a newer scimsync.
var ErrNewerSchema = errors.New("state file was written by a newer scimsync")

// Options tune Open.
type Options struct {
	// ReadOnly opens without writing anything; a missing file then reads as empty, so a dry
	// run against a fresh install neither fails nor creates the file.
	ReadOnly bool
	// LockTimeout bounds the wait for the file lock (default 2s): never hang behind a daemon.
	LockTimeout time.Duration
}

// Store is an open state file. It is safe for concurrent use.
type Store struct {
	db      *bolt.DB // nil for a read-only view of a missing file
	path    string
	ro      bool
	commits *committer // group commit of SCIM server resources; nil when read-only
	// touches counts lookups and writes since the file's mapped pages were last released
	// from the resident set (see touched)
	touches atomic.Int64
}

// releaseAfter is how many lookups (or writes, weighted) a process makes through the memory
// map before its pages are dropped from the resident set. Random lookups over a large file
// (a group's members, one link each) otherwise leave the whole file resident: 200 MB at
// 100,000 users and 2,000 groups. The pages stay in the kernel's page cache, so touching one
// again costs a minor fault, not a disk read.
const releaseAfter = 1024

// touched adds n to the count of map accesses and reports whether the pages are due to be
// released (by the caller, which holds a transaction and so a stable mapping).
func (s *Store) touched(n int64) bool {
	if s == nil {
		return false
	}
	return s.touches.Add(n)%releaseAfter < n
}

// Open opens (creating when writable) the state file at path and migrates it.
func Open(path string, opts Options) (*Store, error) {
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = 2 * time.Second
	}
	if opts.ReadOnly {
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			return &Store{path: path, ro: true}, nil
		}
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:      opts.LockTimeout,
		ReadOnly:     opts.ReadOnly,
		FreelistType: bolt.FreelistMapType,
	})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("state: open %s: %w", path, ErrLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("state: open %s: %w", path, err)
	}
	s := &Store{db: db, path: path, ro: opts.ReadOnly}
	if err := s.checkSchema(); err != nil {
		_ = db.Close()
		return nil, err
	}
	if !opts.ReadOnly {
		s.commits = newCommitter(db)
	}
	return s, nil
}

// Path is the file this store reads.
func (s *Store) Path() string { return s.path }

// Close releases the file and its lock.
func (s *Store) Close() error {
	if s.db == nil {
		return nil
	}
	if s.commits != nil {
		s.commits.close()
	}
	return s.db.Close()
}

// migrations[i] upgrades a file from version i to i+1. Each runs in its own transaction with
// the version bump, so a crash leaves either the old or the new layout, never a mix.
var migrations = []func(tx *bolt.Tx) error{
	// 0 -> 1: the initial layout.
	func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketMeta, bucketLinks, bucketOverrides, bucketRuns, bucketChanges,
			[]byte(KindUser), []byte(KindGroup)} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	},
	// 1 -> 2: link indexes (by name, target id, source UUID), group links, the intent journal and
	// directory cursors. The indexes of existing links are built from them.
	migrateLinkIndexes,
	// 2 -> 3: index the change log by user, for `scimsync history USER`.
	migrateIndexChanges,
	// 3 -> 4: the SCIM server stored a POSTed password in plain text; drop it. (RFC 7643
	// defines password returned:never; scimsync now discards it or keeps only a hash.)
	dropStoredPasswords,
}

func (s *Store) checkSchema() error {
	version := 0
	err := s.db.View(func(tx *bolt.Tx) error {
		v, err := readVersion(tx)
		version = v
		return err
	})
	if err != nil {
		return fmt.Errorf("state: %s: %w", s.path, err)
	}
	if version > SchemaVersion {
		return fmt.Errorf("state: %s has schema %d, this build knows %d: %w", s.path, version, SchemaVersion, ErrNewerSchema)
	}
	if version == SchemaVersion {
		return nil
	}
	if s.ro {
		return fmt.Errorf("state: %s has schema %d and needs migrating; run scimsync once without --dry-run: %w", s.path, version, ErrReadOnly)
	}
	for v := version; v < SchemaVersion; v++ {
		err := s.db.Update(func(tx *bolt.Tx) error {
			if err := migrations[v](tx); err != nil {
				return err
			}
			return tx.Bucket(bucketMeta).Put(keySchema, []byte(strconv.Itoa(v+1)))
		})
		if err != nil {
			return fmt.Errorf("state: migrate %s to schema %d: %w", s.path, v+1, err)
		}
	}
	return nil
}

func readVersion(tx *bolt.Tx) (int, error) {
	b := tx.Bucket(bucketMeta)
	if b == nil {
		return 0, nil
	}
	raw := b.Get(keySchema)
	if raw == nil {
		return 0, nil
	}
	v, err := strconv.Atoi(string(raw))
	if err != nil {
		return 0, fmt.Errorf("corrupt schema_version %q", raw)
	}
	return v, nil
}

func (s *Store) view(fn func(tx *bolt.Tx) error) error {
	if s.db == nil {
		return nil // missing file, read-only: everything is empty
	}
	return s.db.View(fn)
}

func (s *Store) update(fn func(tx *bolt.Tx) error) error {
	if s.ro || s.db == nil {
		return ErrReadOnly
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		// a write reads the B-tree's pages through the map too; a commit is weighted as a few
		// dozen lookups
		if s.touched(64) {
			releaseMapped(tx.DB().Info().Data, uintptr(tx.Size()))
		}
		return nil
	})
}

func be64(n uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, n)
	return b
}

func putJSON(b *bolt.Bucket, key []byte, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(key, raw)
}
