package state

import (
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestMigrationFromVersion1IndexesExistingLinks writes a file as version 1 left it and opens it.
func TestMigrationFromVersion1IndexesExistingLinks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v1.db")
	writeVersion1(t, path, func(tx *bolt.Tx) error {
		raw, _ := json.Marshal(Link{ExternalID: "e1", TargetID: "t1", UserName: "Alice", Origin: OriginCreated})
		return tx.Bucket([]byte("links")).Put([]byte("e1"), raw)
	})
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	err = s.View(func(v *View) error {
		for name, get := range map[string]func() (Link, bool, error){
			"by name":   func() (Link, bool, error) { return v.LinkByName(LinkUser, "ALICE") },
			"by target": func() (Link, bool, error) { return v.LinkByTarget(LinkUser, "t1") },
			"by uuid":   func() (Link, bool, error) { return v.LinkByUUID(LinkUser, "e1") },
		} {
			l, ok, err := get()
			if err != nil || !ok || l.ExternalID != "e1" {
				t.Errorf("%s after migration: %+v %v %v", name, l, ok, err)
			}
		}
		if n := v.CountLinks(LinkGroup); n != 0 {
			t.Errorf("%d group links", n)
		}
		if n := v.CountLinks(LinkUser); n != 1 {
			t.Errorf("migration counted %d user links, want 1", n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestCommitBatchKeepsIndexesAndClearsIntents(t *testing.T) {
	s, _ := openTemp(t)
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := s.PutIntents([]Intent{{Kind: LinkUser, Action: "create", ExternalID: "e1", Name: "alice", At: at},
		{Kind: LinkGroup, Action: "create", ExternalID: "g1", Name: "staff", At: at}}); err != nil {
		t.Fatal(err)
	}
	run, err := s.BeginRun(at)
	if err != nil {
		t.Fatal(err)
	}
	alice := Link{ExternalID: "e1", TargetID: "t1", UserName: "alice", SourceUUID: "u1", Origin: OriginCreated}
	if err := s.CommitBatch(run, []Commit{
		{Kind: LinkUser, Link: alice, Change: &Change{Action: "create", ExternalID: "e1", UserName: "alice"}},
		{Kind: LinkUser, Link: Link{ExternalID: "e2", TargetID: "t2", UserName: "bob"}},
	}); err != nil {
		t.Fatal(err)
	}
	// alice renamed and re-pointed; bob forgotten
	renamed := alice
	renamed.UserName, renamed.TargetID = "alice.smith", "t9"
	if err := s.CommitBatch(run, []Commit{{Kind: LinkUser, Link: renamed}, {Kind: LinkUser, Link: Link{ExternalID: "e2"}, Forget: true}}); err != nil {
		t.Fatal(err)
	}
	err = s.View(func(v *View) error {
		if _, ok, _ := v.LinkByName(LinkUser, "alice"); ok {
			t.Error("the old name still finds the link")
		}
		if l, ok, _ := v.LinkByName(LinkUser, "Alice.Smith"); !ok || l.TargetID != "t9" {
			t.Errorf("new name: %+v %v", l, ok)
		}
		if _, ok, _ := v.LinkByTarget(LinkUser, "t1"); ok {
			t.Error("the old target id still finds the link")
		}
		if l, ok, _ := v.LinkByUUID(LinkUser, "u1"); !ok || l.ExternalID != "e1" {
			t.Errorf("by uuid: %+v %v", l, ok)
		}
		for _, k := range []string{"bob"} {
			if _, ok, _ := v.LinkByName(LinkUser, k); ok {
				t.Errorf("forgotten %s still indexed", k)
			}
		}
		if _, ok, _ := v.LinkByTarget(LinkUser, "t2"); ok {
			t.Error("forgotten target still indexed")
		}
		if n := v.CountLinks(LinkUser); n != 1 {
			t.Errorf("%d links counted after two creates, an update and a forget; want 1", n)
		}
		v.Release() // harmless: the pages come back from the page cache
		if l, ok, _ := v.Link(LinkUser, "e1"); !ok || l.UserName != "alice.smith" {
			t.Errorf("after releasing the mapped pages: %+v %v", l, ok)
		}
		users, _ := v.Intents(LinkUser)
		groups, _ := v.Intents(LinkGroup)
		if len(users) != 0 || len(groups) != 1 || groups[0].Name != "staff" {
			t.Errorf("intents after commit: users %+v groups %+v", users, groups)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	changes, err := s.Changes(run)
	if err != nil || len(changes) != 1 || changes[0].Kind != LinkUser {
		t.Fatalf("change log: %+v %v", changes, err)
	}
	if err := s.ClearIntents(LinkGroup, "g1"); err != nil {
		t.Fatal(err)
	}
	_ = s.View(func(v *View) error {
		if in, _ := v.Intents(LinkGroup); len(in) != 0 {
			t.Errorf("cleared intents remain: %+v", in)
		}
		return nil
	})
}

func TestCursorRoundTrip(t *testing.T) {
	s, _ := openTemp(t)
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	want := Cursor{Data: json.RawMessage(`{"mechanism":"syncrepl","cookie":"AQI="}`), FullAt: at, UpdatedAt: at}
	if err := s.SetCursor(LinkUser, want); err != nil {
		t.Fatal(err)
	}
	_ = s.View(func(v *View) error {
		got, ok, err := v.Cursor(LinkUser)
		if err != nil || !ok || string(got.Data) != string(want.Data) || !got.FullAt.Equal(at) {
			t.Errorf("cursor: %+v %v %v", got, ok, err)
		}
		if _, ok, _ := v.Cursor(LinkGroup); ok {
			t.Error("group cursor from nowhere")
		}
		return nil
	})
	if err := s.ClearCursor(LinkUser); err != nil {
		t.Fatal(err)
	}
	_ = s.View(func(v *View) error {
		if _, ok, _ := v.Cursor(LinkUser); ok {
			t.Error("cleared cursor remains")
		}
		return nil
	})
}

func TestExclusiveCommitRefusesATargetIDAnotherLinkHolds(t *testing.T) {
	s, _ := openTemp(t)
	if err := s.CommitBatch(0, []Commit{{Kind: LinkUser, Link: Link{ExternalID: "e1", TargetID: "t1", UserName: "alice"}, Exclusive: true}}); err != nil {
		t.Fatal(err)
	}
	commits := []Commit{
		{Kind: LinkUser, Link: Link{ExternalID: "e2", TargetID: "t1", UserName: "bob"}, Exclusive: true},    // t1 is alice's
		{Kind: LinkUser, Link: Link{ExternalID: "e1", TargetID: "t1", UserName: "alice2"}, Exclusive: true}, // alice again: fine
		{Kind: LinkUser, Link: Link{ExternalID: "e3", TargetID: "t3", UserName: "carol"}, Exclusive: true},
	}
	if err := s.CommitBatch(0, commits); err != nil {
		t.Fatal(err)
	}
	if commits[0].RefusedBy != "e1" || commits[1].RefusedBy != "" || commits[2].RefusedBy != "" {
		t.Fatalf("refusals: %+v", commits)
	}
	links, _ := s.Links()
	if _, ok := links["e2"]; ok || links["e1"].UserName != "alice2" || links["e3"].TargetID != "t3" {
		t.Fatalf("links: %+v", links)
	}
}

// TestTouchedReleasesEveryReleaseAfter: the mapped pages are released once per releaseAfter
// accesses, whatever the weights that add up to it.
func TestTouchedReleasesEveryReleaseAfter(t *testing.T) {
	s := &Store{}
	due := 0
	for range 10 * releaseAfter {
		if s.touched(1) {
			due++
		}
	}
	if due != 10 {
		t.Errorf("single lookups: released %d times over 10 x releaseAfter, want 10", due)
	}
	s, due = &Store{}, 0
	for range 10 * releaseAfter / 64 {
		if s.touched(64) {
			due++
		}
	}
	if due != 10 {
		t.Errorf("commits: released %d times, want 10", due)
	}
	if (*Store)(nil).touched(1) {
		t.Error("a nil store has nothing to release")
	}
}
