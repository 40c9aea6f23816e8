package scimserver

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/scimsync/scimsync/scim"
	"github.com/scimsync/scimsync/state"
)

// benchGroup is a sorted group of n members with display names, as the store holds one.
func benchGroup(n int) []member {
	ms := make([]member, n)
	for i := range ms {
		ms[i] = member{value: fmt.Sprintf("0190a1b2-c3d4-7e5f-8a9b-%012d", i), display: fmt.Sprintf("user %d", i), typ: "User"}
	}
	return ms
}

// memberPatch parses a PATCH of ops as the server does, for its member operations.
func memberPatch(tb testing.TB, ops []map[string]any) []memberOp {
	tb.Helper()
	body, _ := json.Marshal(map[string]any{"schemas": []string{scim.PatchOpSchema}, "Operations": ops})
	s := &Server{cfg: DefaultServerConfig()}
	pp, err := s.parsePatch(state.KindGroup, body)
	if err != nil {
		tb.Fatal(err)
	}
	return pp.members
}

// benchMemberForms are PATCHes of 1,000 member operations each, in the forms IdPs send: the
// form the review measured (a sub-attribute through a value filter on the member's id), a
// filter on another sub-attribute (no index can serve it), one add and one remove per member.
func benchMemberForms(n int) map[string][]map[string]any {
	forms := map[string][]map[string]any{}
	for i := 0; i < 1000; i++ {
		id := fmt.Sprintf("0190a1b2-c3d4-7e5f-8a9b-%012d", i*(n/1000))
		forms["value filter .display"] = append(forms["value filter .display"],
			map[string]any{"op": "replace", "path": fmt.Sprintf(`members[value eq "%s"].display`, id), "value": fmt.Sprintf("renamed %d", i)})
		forms["display filter .display"] = append(forms["display filter .display"],
			map[string]any{"op": "replace", "path": fmt.Sprintf(`members[display eq "user %d"].display`, i*(n/1000)), "value": fmt.Sprintf("renamed %d", i)})
		forms["add one each"] = append(forms["add one each"],
			map[string]any{"op": "add", "path": "members", "value": []any{map[string]any{"value": fmt.Sprintf("0290a1b2-c3d4-7e5f-8a9b-%012d", i)}}})
		forms["remove by value filter"] = append(forms["remove by value filter"],
			map[string]any{"op": "remove", "path": fmt.Sprintf(`members[value eq "%s"]`, id)})
	}
	return forms
}

// BenchmarkGroupMemberPatch applies one PATCH of 1,000 member operations to a group of
// 20,000 members: the work done while the request holds the group's write slot.
func BenchmarkGroupMemberPatch(b *testing.B) {
	const n = 20000
	ms := benchGroup(n)
	forms := benchMemberForms(n)
	for _, name := range []string{"value filter .display", "display filter .display", "add one each", "remove by value filter"} {
		ops := memberPatch(b, forms[name])
		b.Run(name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				if _, err := applyMembers(ms, ops, 1<<62); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
