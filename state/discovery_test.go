package state

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func readDiscovery(t *testing.T, s *Store) (Discovery, bool) {
	t.Helper()
	var d Discovery
	var ok bool
	err := s.View(func(v *View) error {
		var err error
		d, ok, err = v.Discovery()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return d, ok
}

func TestDiscoveryKeptAcrossReopenAndCleared(t *testing.T) {
	s, path := openTemp(t)
	if _, ok := readDiscovery(t, s); ok {
		t.Fatal("a new file has a target discovery")
	}
	at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.FixedZone("CET", 3600))
	want := Discovery{Data: json.RawMessage(`{"format":1,"serviceProviderConfig":"e30="}`), FetchedAt: at, Config: "abc|overrides=def"}
	if err := s.SetDiscovery(want); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, ok := readDiscovery(t, s)
	if !ok || string(got.Data) != string(want.Data) || !got.FetchedAt.Equal(at) || got.FetchedAt.Location() != time.UTC || got.Config != want.Config {
		t.Fatalf("kept %+v %v", got, ok)
	}
	// a second one replaces the first
	if err := s.SetDiscovery(Discovery{Data: json.RawMessage(`{}`), FetchedAt: at.Add(time.Hour), Config: "other"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := readDiscovery(t, s); got.Config != "other" || string(got.Data) != `{}` {
		t.Fatalf("replaced: %+v", got)
	}
	if err := s.ClearDiscovery(); err != nil {
		t.Fatal(err)
	}
	if _, ok := readDiscovery(t, s); ok {
		t.Fatal("a cleared discovery remains")
	}
	if err := s.ClearDiscovery(); err != nil {
		t.Fatalf("clearing twice: %v", err)
	}
}

// TestDiscoveryReadOnly: a dry run reads what is kept and can write nothing; a missing file
// keeps nothing.
func TestDiscoveryReadOnly(t *testing.T) {
	s, path := openTemp(t)
	if err := s.SetDiscovery(Discovery{Data: json.RawMessage(`{"k":1}`), Config: "c"}); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	ro, err := Open(path, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if d, ok := readDiscovery(t, ro); !ok || d.Config != "c" {
		t.Fatalf("read-only: %+v %v", d, ok)
	}
	if err := ro.SetDiscovery(Discovery{}); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("set on a read-only store: %v", err)
	}
	if err := ro.ClearDiscovery(); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("clear on a read-only store: %v", err)
	}
	missing, err := Open(filepath.Join(t.TempDir(), "none.db"), Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := readDiscovery(t, missing); ok {
		t.Fatal("a missing file keeps a discovery")
	}
}

// TestDiscoveryInAFileFromVersion1: the key lives in the meta bucket every schema has, so a
// migrated file keeps one with no migration of its own.
func TestDiscoveryInAFileFromVersion1(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v1.db")
	writeVersion1(t, path, nil)
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, ok := readDiscovery(t, s); ok {
		t.Fatal("a migrated file has a target discovery")
	}
	if err := s.SetDiscovery(Discovery{Data: json.RawMessage(`{}`), Config: "c"}); err != nil {
		t.Fatal(err)
	}
	if d, ok := readDiscovery(t, s); !ok || d.Config != "c" {
		t.Fatalf("%+v %v", d, ok)
	}
}

func TestDiscoveryUnreadableIsAnError(t *testing.T) {
	s, _ := openTemp(t)
	err := s.update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keyDiscovery, []byte("{not json")) })
	if err != nil {
		t.Fatal(err)
	}
	err = s.View(func(v *View) error { _, _, err := v.Discovery(); return err })
	if err == nil {
		t.Fatal("an unreadable discovery read")
	}
}
