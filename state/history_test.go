package state

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// writeVersion1 builds a schema-1 file at path the way a version-1 build left it (the first
// migration's buckets, schema "1"), with fill's contents (nil: none).
func writeVersion1(t *testing.T, path string, fill func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		if err := migrations[0](tx); err != nil {
			return err
		}
		if err := tx.Bucket(bucketMeta).Put(keySchema, []byte("1")); err != nil {
			return err
		}
		if fill == nil {
			return nil
		}
		return fill(tx)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// writeV1 builds a schema-1 file with a run and its change log, and no per-user index.
func writeV1(t *testing.T, path string) {
	t.Helper()
	writeVersion1(t, path, func(tx *bolt.Tx) error {
		if err := putJSON(tx.Bucket(bucketRuns), be64(1), Run{ID: 1, Started: time.Now().UTC(), Result: "ok"}); err != nil {
			return err
		}
		ch := Change{Action: "update", ExternalID: "ext-alice", UserName: "Alice",
			Old: map[string]string{"title": "Engineer"}, New: map[string]string{"title": "Principal Engineer"}}
		return putJSON(tx.Bucket(bucketChanges), append(be64(1), be64(1)...), ch)
	})
}

func TestMigrationFrom1IndexesTheExistingChangeLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v1.db")
	writeV1(t, path)
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	err = s.db.View(func(tx *bolt.Tx) error {
		v, err := readVersion(tx)
		if v != SchemaVersion {
			t.Errorf("schema %d after migration, want %d", v, SchemaVersion)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, who := range []string{"alice", "ALICE", "ext-alice"} {
		h, err := s.History(who, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(h) != 1 || h[0].Run != 1 || h[0].Old["title"] != "Engineer" || h[0].New["title"] != "Principal Engineer" {
			t.Fatalf("history(%q) after migration: %+v", who, h)
		}
	}
}

func TestReadOnlyOpenOfV1FileAsksForMigration(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v1.db")
	writeV1(t, path)
	if _, err := Open(path, Options{ReadOnly: true}); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("read-only open of a v1 file: %v", err)
	}
}

func TestHistoryFollowsRenamesAndShowsFailures(t *testing.T) {
	s, _ := openTemp(t)
	r1, _ := s.BeginRun(time.Now())
	l := Link{ExternalID: "ext-1", TargetID: "t-1", UserName: "jdoe"}
	must(t, s.Commit(r1, l, false, Change{Action: "create", ExternalID: "ext-1", UserName: "jdoe", New: map[string]string{"userName": "jdoe"}}))
	// someone else, so the index must keep users apart
	must(t, s.Commit(r1, Link{ExternalID: "ext-2", UserName: "jdoe2"}, false, Change{Action: "create", ExternalID: "ext-2", UserName: "jdoe2"}))
	r2, _ := s.BeginRun(time.Now())
	l.UserName = "john.doe"
	must(t, s.Commit(r2, l, false, Change{Action: "update", ExternalID: "ext-1", UserName: "john.doe",
		Old: map[string]string{"userName": "jdoe"}, New: map[string]string{"userName": "john.doe"}}))
	must(t, s.RecordFailures(r2, []Change{{Action: "update", ExternalID: "ext-1", UserName: "john.doe",
		Old: map[string]string{"title": "A"}, New: map[string]string{"title": "B"}, Error: "scim: PATCH: HTTP 400"}}))

	for _, who := range []string{"jdoe", "John.Doe", "ext-1"} {
		h, err := s.History(who, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(h) != 3 || h[0].Action != "create" || h[0].Run != r1 || h[1].Run != r2 || h[2].Error == "" {
			t.Fatalf("history(%q): %+v", who, h)
		}
	}
	if h, _ := s.History("john.doe", 1); len(h) != 1 || h[0].Error == "" {
		t.Fatalf("limit 1 must keep the newest entry: %+v", h)
	}
	if h, _ := s.History("nobody", 0); len(h) != 0 {
		t.Fatalf("history of nobody: %+v", h)
	}
	if h, _ := s.History("jdoe2", 0); len(h) != 1 {
		t.Fatalf("history of jdoe2: %+v", h)
	}
	rc, err := s.RunChanges(r2)
	if err != nil || len(rc) != 2 || rc[0].Seq != 3 || rc[1].Error == "" {
		t.Fatalf("run %d changes: %+v %v", r2, rc, err)
	}
}

func TestRunByID(t *testing.T) {
	s, _ := openTemp(t)
	id, _ := s.BeginRun(time.Now())
	if r, err := s.Run(id); err != nil || r.Result != "running" {
		t.Fatalf("run %d: %+v %v", id, r, err)
	}
	if _, err := s.Run(id + 1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing run: %v", err)
	}
}

func TestPruneRemovesOldRunsWithTheirChangesAndIndex(t *testing.T) {
	s, _ := openTemp(t)
	old := time.Now().Add(-100 * 24 * time.Hour)
	// more old runs than one prune batch, each with a change of the same user
	var ids []uint64
	for i := 0; i < pruneBatch+5; i++ {
		id, _ := s.BeginRun(old.Add(time.Duration(i) * time.Minute))
		must(t, s.Commit(id, Link{ExternalID: "ext-old"}, false, Change{Action: "update", ExternalID: "ext-old", UserName: "olduser",
			New: map[string]string{"title": strconv.Itoa(i)}}))
		ids = append(ids, id)
	}
	recent, _ := s.BeginRun(time.Now())
	must(t, s.Commit(recent, Link{ExternalID: "ext-new"}, false, Change{Action: "create", ExternalID: "ext-new", UserName: "newuser"}))

	res, err := s.Prune(time.Now().Add(-90 * 24 * time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Runs) != len(ids) || res.Changes != len(ids) || res.Runs[0] != ids[0] {
		t.Fatalf("pruned %d runs (%d changes), want %d", len(res.Runs), res.Changes, len(ids))
	}
	runs, _ := s.Runs(1000)
	if len(runs) != 1 || runs[0].ID != recent {
		t.Fatalf("runs left: %+v", runs)
	}
	if h, _ := s.History("olduser", 0); len(h) != 0 {
		t.Fatalf("old history left: %d entries", len(h))
	}
	if h, _ := s.History("newuser", 0); len(h) != 1 {
		t.Fatalf("recent history lost: %+v", h)
	}
	err = s.db.View(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketChangesByUser, bucketUserNames} {
			n := 0
			_ = tx.Bucket(b).ForEach(func(_, _ []byte) error { n++; return nil })
			if n != 1 {
				t.Errorf("%s has %d entries after prune, want 1", b, n)
			}
		}
		return nil
	})
	must(t, err)
}

func TestPruneKeepsTheNewestRunEvenWhenOld(t *testing.T) {
	s, _ := openTemp(t)
	for i := 0; i < 3; i++ {
		_, _ = s.BeginRun(time.Now().Add(-time.Duration(200-i) * 24 * time.Hour))
	}
	res, err := s.Prune(time.Now())
	if err != nil || len(res.Runs) != 2 {
		t.Fatalf("prune: %+v %v", res, err)
	}
	if runs, _ := s.Runs(10); len(runs) != 1 || runs[0].ID != 3 {
		t.Fatalf("runs left: %+v", runs)
	}
}

func TestUkeyKeepsIdsApart(t *testing.T) {
	// "ab" must not be a prefix match of "abc" in the per-user index
	a, b := ukey("ab"), ukey("abc")
	if string(b[:len(a)]) == string(a) {
		t.Fatalf("ukey(%q) is a prefix of ukey(%q)", "ab", "abc")
	}
	if got := fmt.Sprintf("%x", ukey("")); got != "0000" {
		t.Fatalf("ukey of empty: %s", got)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
