package sync

import (
	"context"
	"strings"
	"testing"

	"github.com/scimsync/scimsync/scim"
	"github.com/scimsync/scimsync/scimclient"
)

func TestIDKeyRoundTrip(t *testing.T) {
	for _, id := range []string{"", "00000000-0000-4000-8000-000000000042", "6b1f3c2a-0000-4000-8000-00000000000d",
		"6B1F3C2A-0000-4000-8000-00000000000D", "not-a-uuid", "0000000000-00-4000-8000-000000000042", "123",
		"00000000-0000-0000-0000-000000000000"} {
		if got := keyOf(id).String(); got != id {
			t.Errorf("keyOf(%q).String() = %q", id, got)
		}
	}
	if keyOf("00000000-0000-4000-8000-000000000042").s != "" || keyOf("NOT").s != "NOT" {
		t.Error("UUIDs are not kept compact")
	}
}

func FuzzIDKey(f *testing.F) {
	f.Add("00000000-0000-4000-8000-000000000042")
	f.Add("zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz")
	f.Fuzz(func(t *testing.T, id string) {
		if got := keyOf(id).String(); got != id {
			t.Fatalf("keyOf(%q).String() = %q", id, got)
		}
		if keyOf(id) != keyOf(keyOf(id).String()) {
			t.Fatal("not stable")
		}
	})
}

// listingTarget lists fixed users; the rest of Target is not used by listTarget.
type listingTarget struct {
	Target
	users []scim.Doc
}

func (l listingTarget) ListWith(_ context.Context, _ scimclient.Endpoint, _ scimclient.ListOptions, fn func(scimclient.Resource) error) error {
	for _, d := range l.users {
		if err := fn(scimclient.Resource{Doc: d}); err != nil {
			return err
		}
	}
	return nil
}

// TestLongTargetKeysAreDigested: a target listing huge externalIds or userNames costs the
// planner a digest each, and still matches exactly; an id too long to be a handle is refused.
func TestLongTargetKeysAreDigested(t *testing.T) {
	longExt, longName := strings.Repeat("e", 100_000), strings.Repeat("N", 100_000)
	tgt := listingTarget{users: []scim.Doc{
		{"id": "t-1", "externalId": longExt, "userName": longName},
		{"id": "t-2", "externalId": "short", "userName": "bob"},
	}}
	ix, err := listTarget(context.Background(), tgt, payload{}, 10)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(ix.recs[0].ext.s) + len(ix.names[0]); n > 2*(maxKeyLen) {
		t.Errorf("the index keeps %d bytes of a user's keys", n)
	}
	ctx := context.Background()
	for _, tt := range []struct {
		got    func() (*targetRec, error)
		wantID string
	}{
		{func() (*targetRec, error) { return ix.byExternalID(ctx, longExt) }, "t-1"},
		{func() (*targetRec, error) { return ix.byName(ctx, strings.ToLower(longName)) }, "t-1"},
		{func() (*targetRec, error) { return ix.byExternalID(ctx, longExt+"x") }, ""},
		{func() (*targetRec, error) { return ix.byName(ctx, longName[1:]) }, ""},
		{func() (*targetRec, error) { return ix.byExternalID(ctx, "short") }, "t-2"},
	} {
		rec, err := tt.got()
		if err != nil {
			t.Fatal(err)
		}
		got := ""
		if rec != nil {
			got = rec.ID()
		}
		if got != tt.wantID {
			t.Errorf("found %q, want %q", got, tt.wantID)
		}
	}
	if r := ix.byIDKey(keyOf("t-1")); r.otherExternalID(longExt) || !r.otherExternalID(longExt[1:]) {
		t.Error("otherExternalID does not compare digested externalIds exactly")
	}
	tgt.users = append(tgt.users, scim.Doc{"id": strings.Repeat("i", maxTargetIDLen+1), "userName": "x"})
	if _, err := listTarget(ctx, tgt, payload{}, 10); err == nil || !strings.Contains(err.Error(), "ids longer than 1024 bytes") {
		t.Errorf("a 1 KiB id is not refused: %v", err)
	}
}
