package state

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func openTemp(t *testing.T) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, path
}

func TestOpenLockedFailsFast(t *testing.T) {
	_, path := openTemp(t)
	start := time.Now()
	_, err := Open(path, Options{LockTimeout: 200 * time.Millisecond})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: got %v, want ErrLocked", err)
	}
	if waited := time.Since(start); waited > 5*time.Second {
		t.Fatalf("second open waited %v; it must give up after its timeout", waited)
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		return b.Put(keySchema, []byte("99"))
	})
	if err != nil {
		t.Fatal(err)
	}
	_ = db.Close()
	if _, err := Open(path, Options{}); !errors.Is(err, ErrNewerSchema) {
		t.Fatalf("got %v, want ErrNewerSchema", err)
	}
}

func TestMigrationFromEmptyFileCreatesEveryBucket(t *testing.T) {
	s, _ := openTemp(t)
	err := s.db.View(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketMeta, bucketLinks, bucketOverrides, bucketRuns, bucketChanges, []byte(KindUser), []byte(KindGroup),
			bucketIntents, bucketCursors, []byte("link_names"), []byte("group_links"), []byte("group_link_targets"),
			bucketChangesByUser, bucketUserNames} {
			if tx.Bucket(b) == nil {
				t.Errorf("bucket %s missing after migration", b)
			}
		}
		v, err := readVersion(tx)
		if v != SchemaVersion {
			t.Errorf("schema version %d, want %d", v, SchemaVersion)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestReadOnlyMissingFileIsEmptyAndNotCreated(t *testing.T) {
	path := filepath.Join(t.TempDir(), "absent.db")
	s, err := Open(path, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	links, err := s.Links()
	if err != nil || len(links) != 0 {
		t.Fatalf("links %v err %v, want empty", links, err)
	}
	if err := s.SetOverride("a", ModeCMS, time.Now()); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("write on read-only store: %v", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("read-only open created the file: %v", err)
	}
}

func TestCommitLinkAndChangeTogether(t *testing.T) {
	s, _ := openTemp(t)
	run, err := s.BeginRun(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	l := Link{ExternalID: "u-1", TargetID: "t-1", UserName: "alice", Origin: OriginCreated}
	if err := s.Commit(run, l, false, Change{Action: "create", ExternalID: "u-1", New: map[string]string{"userName": "alice"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(run, l, true, Change{Action: "delete", ExternalID: "u-1"}); err != nil {
		t.Fatal(err)
	}
	links, _ := s.Links()
	if _, ok := links["u-1"]; ok {
		t.Fatal("forgotten link still present")
	}
	changes, err := s.Changes(run)
	if err != nil {
		t.Fatal(err)
	}
	if len(changes) != 2 || changes[0].Action != "create" || changes[1].Action != "delete" {
		t.Fatalf("changes %+v", changes)
	}
	if err := s.FinishRun(Run{ID: run, Result: "ok", Counts: map[string]int{"create": 1}}); err != nil {
		t.Fatal(err)
	}
	runs, _ := s.Runs(10)
	if len(runs) != 1 || runs[0].Result != "ok" || runs[0].Counts["create"] != 1 {
		t.Fatalf("runs %+v", runs)
	}
}

func TestOverridesCaseInsensitive(t *testing.T) {
	s, _ := openTemp(t)
	if err := s.SetOverride("Alice", ModeCMS, time.Now()); err != nil {
		t.Fatal(err)
	}
	o, _ := s.Overrides()
	if o["alice"].Mode != ModeCMS || o["alice"].UserName != "Alice" {
		t.Fatalf("overrides %+v", o)
	}
	if err := s.ClearOverride("ALICE"); err != nil {
		t.Fatal(err)
	}
	if o, _ := s.Overrides(); len(o) != 0 {
		t.Fatalf("override not cleared: %+v", o)
	}
}

func TestCommitResourcesAtomic(t *testing.T) {
	s, _ := openTemp(t)
	err := s.CommitResources(context.Background(), ResourceWrite{Kind: KindUser, ID: "1", Data: []byte(`{}`)}, ResourceWrite{Kind: "nope", ID: "x", Data: []byte(`{}`)})
	if err == nil {
		t.Fatal("write to unknown kind succeeded")
	}
	n := 0
	_ = s.ForEachResource(KindUser, func(string, []byte) error { n++; return nil })
	if n != 0 {
		t.Fatal("first write of a failed transaction was kept")
	}
}
