package scimserver

import (
	"fmt"
	"slices"
	"strings"
	gosync "sync"
	"testing"

	"github.com/scimsync/scimsync/scim"
	"github.com/scimsync/scimsync/state"
)

// TestDeleteRacingMembershipLeavesNoDanglingMember: a user deleted while a group PATCH adds it
// either never joins the group or leaves it with the delete; never both "deleted" and "member".
func TestDeleteRacingMembershipLeavesNoDanglingMember(t *testing.T) {
	ts := startTestServer(t, "")
	g := ts.mustStatus(ts.do("POST", "/Groups", map[string]any{"schemas": []string{scim.GroupSchema}, "displayName": "race"}), 201).body["id"].(string)
	for round := 0; round < 20; round++ {
		var ids []string
		for i := 0; i < 4; i++ {
			ids = append(ids, ts.mustStatus(ts.do("POST", "/Users", userBody(fmt.Sprintf("r%d-%d", round, i), "")), 201).body["id"].(string))
		}
		var wg gosync.WaitGroup
		for _, id := range ids {
			wg.Add(2)
			go func(id string) {
				defer wg.Done()
				ts.do("PATCH", "/Groups/"+g, patchOps(map[string]any{"op": "add", "path": "members", "value": []any{map[string]any{"value": id}}}))
			}(id)
			go func(id string) {
				defer wg.Done()
				ts.do("DELETE", "/Users/"+id, nil)
			}(id)
		}
		wg.Wait()
	}
	grp := ts.srv.store.get(state.KindGroup, g)
	for _, m := range grp.members {
		if ts.srv.store.get(state.KindUser, m.value) == nil {
			t.Fatalf("group keeps deleted user %s", m.value)
		}
	}
	ts.srv.store.mu.RLock()
	defer ts.srv.store.mu.RUnlock()
	for uid, gids := range ts.srv.store.memberOf {
		if ts.srv.store.users[uid] == nil && ts.srv.store.groups[uid] == nil {
			t.Fatalf("memberOf keeps deleted %s -> %v", uid, gids)
		}
	}
	ts.srv.store.pinMu.Lock()
	defer ts.srv.store.pinMu.Unlock()
	if len(ts.srv.store.pinned) != 0 || len(ts.srv.store.slots) != 0 || len(ts.srv.store.deleting) != 0 {
		t.Fatalf("bookkeeping left behind: pinned %v slots %d deleting %v", ts.srv.store.pinned, len(ts.srv.store.slots), ts.srv.store.deleting)
	}
}

// TestRestartRebuildsMembershipAndOrder: what is rebuilt at start-up matches what was built by
// the writes (memberOf, creation order, name and externalId indexes).
func TestRestartRebuildsMembershipAndOrder(t *testing.T) {
	ts := startTestServer(t, "")
	var ids []string
	for i := 0; i < 5; i++ {
		ids = append(ids, ts.mustStatus(ts.do("POST", "/Users", userBody(fmt.Sprint("o", i), "dup")), 201).body["id"].(string))
	}
	ts.mustStatus(ts.do("POST", "/Groups", map[string]any{"schemas": []string{scim.GroupSchema}, "displayName": "G",
		"members": []any{map[string]any{"value": ids[1]}, map[string]any{"value": ids[3]}}}), 201)
	path := ts.path
	ts.stop()
	ts2 := startTestServer(t, path)
	rep := ts2.mustStatus(ts2.do("GET", "/Users?attributes=userName", nil), 200)
	for i, r := range rep.body["Resources"].([]any) {
		if r.(map[string]any)["id"] != ids[i] {
			t.Fatalf("order after restart: %v", rep.raw)
		}
	}
	if n := total(ts2.do("GET", filterQ(`externalId eq "dup"`), nil)); n != 5 {
		t.Fatalf("externalId index after restart: %d", n)
	}
	if gs := ts2.do("GET", "/Users/"+ids[3], nil).body["groups"]; gs == nil {
		t.Fatal("groups of a member lost after restart")
	}
}

// TestSortMembersKeepsTheFirst: of members given twice with one id the first one given stays,
// however many members the sort sees (a Group POST listing a member twice, a PATCH renaming
// one member onto another's id).
func TestSortMembersKeepsTheFirst(t *testing.T) {
	var ms []member
	for i := 0; i < 200; i++ {
		ms = append(ms, member{value: fmt.Sprintf("id-%02d", (i*7)%20), display: fmt.Sprintf("given %d", i)})
	}
	got := sortMembers(slices.Clone(ms))
	if len(got) != 20 || !slices.IsSortedFunc(got, func(a, b member) int { return strings.Compare(a.value, b.value) }) {
		t.Fatalf("got %d members (want 20, sorted): %v", len(got), got)
	}
	for _, m := range got {
		first := ms[slices.IndexFunc(ms, func(x member) bool { return x.value == m.value })]
		if m != first {
			t.Errorf("kept %v, the first given was %v", m, first)
		}
	}
}
