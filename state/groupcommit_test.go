package state

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	gosync "sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestCommitResourcesConcurrentWritersAllDurable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	const writers, each = 32, 20
	var wg gosync.WaitGroup
	errs := make(chan error, writers*each)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				id := fmt.Sprintf("%02d-%02d", w, i)
				errs <- s.CommitResources(context.Background(), ResourceWrite{Kind: KindUser, ID: id, Data: []byte(`{"id":"` + id + `"}`)})
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	n := 0
	_ = s.ForEachResource(KindUser, func(string, []byte) error { n++; return nil })
	if n != writers*each {
		t.Fatalf("%d resources after reopen, want %d", n, writers*each)
	}
}

func TestCommitResourcesIsolatesAFailingRequest(t *testing.T) {
	s, _ := openTemp(t)
	// a request for an unknown bucket fails; queue it among good ones so they share a batch
	var wg gosync.WaitGroup
	results := make([]error, 16)
	for i := range results {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			kind := KindUser
			if i == 7 {
				kind = "nope"
			}
			results[i] = s.CommitResources(context.Background(), ResourceWrite{Kind: kind, ID: fmt.Sprint(i), Data: []byte(`{}`)})
		}(i)
	}
	wg.Wait()
	for i, err := range results {
		if (i == 7) != (err != nil) {
			t.Errorf("request %d: %v", i, err)
		}
	}
}

func TestCommitAfterCloseFails(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	if err := s.CommitResources(context.Background(), ResourceWrite{Kind: KindUser, ID: "x", Data: []byte(`{}`)}); err == nil {
		t.Fatal("commit on a closed store succeeded")
	}
}

// TestMigrationFromVersion1DropsPasswords builds a version-1 file by hand, as the previous
// build wrote it, and checks the upgrade keeps everything but the plain-text password.
func TestMigrationFromVersion1DropsPasswords(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	writeVersion1(t, path, func(tx *bolt.Tx) error {
		users := tx.Bucket([]byte(KindUser))
		if err := users.Put([]byte("u1"), []byte(`{"id":"u1","seq":1,"version":2,"attrs":{"userName":"alice","Password":"Hunter2!","title":"x"}}`)); err != nil {
			return err
		}
		if err := users.Put([]byte("u2"), []byte(`{"id":"u2","seq":2,"version":1,"attrs":{"userName":"bob"}}`)); err != nil {
			return err
		}
		return tx.Bucket([]byte(KindGroup)).Put([]byte("g1"), []byte(`{"id":"g1","attrs":{"displayName":"G","members":[{"value":"u1"}]}}`))
	})
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got := map[string][]byte{}
	_ = s.ForEachResource(KindUser, func(id string, data []byte) error { got[id] = data; return nil })
	if bytes.Contains(bytes.ToLower(got["u1"]), []byte("hunter2")) || bytes.Contains(bytes.ToLower(got["u1"]), []byte("password")) {
		t.Fatalf("password kept: %s", got["u1"])
	}
	for _, want := range []string{`"userName":"alice"`, `"title":"x"`, `"version":2`, `"seq":1`} {
		if !bytes.Contains(got["u1"], []byte(want)) {
			t.Errorf("migration lost %s: %s", want, got["u1"])
		}
	}
	if string(got["u2"]) != `{"id":"u2","seq":2,"version":1,"attrs":{"userName":"bob"}}` {
		t.Errorf("user without password rewritten: %s", got["u2"])
	}
	err = s.db.View(func(tx *bolt.Tx) error {
		v, err := readVersion(tx)
		if v != SchemaVersion {
			t.Errorf("schema %d, want %d", v, SchemaVersion)
		}
		if g := tx.Bucket([]byte(KindGroup)).Get([]byte("g1")); g == nil {
			t.Error("group lost")
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestObserveCommitsCountsEveryWrite: the observer hears of every transaction, and the writes
// it reports add up to what was committed.
func TestObserveCommitsCountsEveryWrite(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "state.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var mu gosync.Mutex
	writes, commits := 0, 0
	s.ObserveCommits(func(took time.Duration, n int) {
		mu.Lock()
		defer mu.Unlock()
		if took <= 0 || n <= 0 {
			t.Errorf("observed %s and %d writes", took, n)
		}
		writes += n
		commits++
	})
	var wg gosync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10 {
				id := fmt.Sprintf("%d-%d", w, i)
				if err := s.CommitResources(context.Background(), ResourceWrite{Kind: KindUser, ID: id, Data: []byte("{}")},
					ResourceWrite{Kind: KindGroup, ID: id, Data: []byte("{}")}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if writes != 160 || commits == 0 || commits > 80 {
		t.Fatalf("observed %d writes in %d commits, want 160 in 1 to 80", writes, commits)
	}
}
