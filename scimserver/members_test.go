package scimserver

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"testing"

	scimerr "github.com/elimity-com/scim/errors"

	"github.com/scimsync/scimsync/config"
	"github.com/scimsync/scimsync/scim"
)

// mergeMembers adds add to the sorted ms, skipping values already there (the reference's add).
func mergeMembers(ms, add []member) []member {
	out := make([]member, 0, len(ms)+len(add))
	i, j := 0, 0
	for i < len(ms) || j < len(add) {
		switch {
		case j == len(add):
			out = append(out, ms[i])
			i++
		case i == len(ms):
			out = append(out, add[j])
			j++
		case ms[i].value == add[j].value:
			out = append(out, ms[i])
			i++
			j++
		case ms[i].value < add[j].value:
			out = append(out, ms[i])
			i++
		default:
			out = append(out, add[j])
			j++
		}
	}
	return out
}

// dropMembers removes the members with the given values (the reference's removal by id).
func dropMembers(ms []member, values []string) []member {
	out := make([]member, 0, len(ms))
	for _, m := range ms {
		if !slices.Contains(values, m.value) {
			out = append(out, m)
		}
	}
	return out
}

// oneByOne is the reference applyMembers is measured against, the way the server applied
// member operations before it: each operation on its own, the set forms and Okta's removal
// by id (ids compared exactly) as one merge or drop each, every other form through the
// Patcher on the whole group, decoded and encoded again for each operation.
func oneByOne(ms []member, ops []memberOp) ([]member, error) {
	cur := ms
	p := scim.Patcher{Index: scim.GroupIndex()}
	for _, mo := range ops {
		if mo.path != nil && mo.op == scim.OpRemove && mo.path.SubAttribute == nil {
			if values, ok := eqValues(mo.path.ValueExpression, false); ok {
				cur = dropMembers(cur, values)
				continue
			}
		}
		if mo.path == nil {
			switch {
			case mo.op == scim.OpAdd:
				cur = mergeMembers(cur, mo.vals)
			case mo.op == scim.OpReplace:
				cur = slices.Clone(mo.vals)
			case mo.hasVal && len(mo.vals) > 0:
				cur = dropMembers(cur, memberValues(mo.vals))
			default:
				cur = []member{}
			}
			continue
		}
		doc, _ := decodeAttrs(&record{attrs: []byte("{}"), members: cur})
		if err := p.ApplyOp(doc, scim.Operation{Op: mo.op, Path: mo.path, Value: mo.generic}); err != nil {
			return nil, err
		}
		var err error
		if cur, err = membersOf(doc["members"]); err != nil {
			return nil, err
		}
	}
	return cur, nil
}

// randomMemberPatch is a PATCH of 1 to 12 member operations in the forms IdPs send and some
// they should not, over ids of which some are in the group.
func randomMemberPatch(r *rand.Rand, ids []string) []map[string]any {
	id := func() string {
		v := ids[r.IntN(len(ids))]
		if r.IntN(8) == 0 {
			v = strings.ToUpper(v) // filters compare ids case-insensitively
		}
		return v
	}
	memberList := func() []any {
		var out []any
		for k := r.IntN(4); k >= 0; k-- {
			m := map[string]any{"value": id()}
			if r.IntN(2) == 0 {
				m["display"] = fmt.Sprintf("d%d", r.IntN(5))
			}
			out = append(out, m)
		}
		return out
	}
	sub := []string{"display", "type", "value"}
	var ops []map[string]any
	for n := 1 + r.IntN(12); n > 0; n-- {
		var op map[string]any
		switch r.IntN(14) {
		case 0:
			op = map[string]any{"op": "add", "path": "members", "value": memberList()}
		case 1:
			op = map[string]any{"op": "replace", "path": "members", "value": memberList()}
		case 2:
			op = map[string]any{"op": "remove", "path": "members", "value": memberList()}
		case 3:
			op = map[string]any{"op": "remove", "path": "members"}
		case 4:
			op = map[string]any{"op": "remove", "path": fmt.Sprintf(`members[value eq "%s"]`, id())}
		case 5:
			op = map[string]any{"op": "remove", "path": fmt.Sprintf(`members[value eq "%s" or value eq "%s"]`, id(), id())}
		case 6, 7:
			s := sub[r.IntN(2)]
			value := any(fmt.Sprintf("d%d", r.IntN(5)))
			if s == "type" {
				value = []string{"User", "group", "Robot"}[r.IntN(3)]
			}
			op = map[string]any{"op": []string{"add", "replace"}[r.IntN(2)], "path": fmt.Sprintf(`members[value eq "%s"].%s`, id(), s), "value": value}
		case 8:
			op = map[string]any{"op": "replace", "path": fmt.Sprintf(`members[value eq "%s"].value`, id()), "value": id()}
		case 9:
			op = map[string]any{"op": "remove", "path": fmt.Sprintf(`members[value eq "%s"].%s`, id(), sub[r.IntN(3)])}
		case 10:
			op = map[string]any{"op": []string{"add", "replace"}[r.IntN(2)], "path": fmt.Sprintf(`members[value eq "%s"]`, id()),
				"value": map[string]any{"value": id(), "display": "whole"}}
		case 11:
			op = map[string]any{"op": "replace", "path": fmt.Sprintf(`members[display eq "d%d"].display`, r.IntN(5)), "value": "by display"}
		case 12:
			op = map[string]any{"op": "remove", "path": `members[type eq "Group"]`}
		default:
			op = map[string]any{"op": "replace", "path": "members.display", "value": "all"}
		}
		if r.IntN(6) == 0 {
			op["op"] = strings.ToUpper(op["op"].(string)[:1]) + op["op"].(string)[1:] // Entra capitalises
		}
		ops = append(ops, op)
	}
	return ops
}

// TestMemberPatchAgreesWithOneByOne: however applyMembers groups, batches and looks members
// up, the result (or the refusal) is what applying each operation to the whole group gives,
// and the stored members it started from are never changed.
func TestMemberPatchAgreesWithOneByOne(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for c := 0; c < 1500; c++ {
		checkMemberPatch(t, r, c)
	}
}

// FuzzMemberPatchAgreesWithOneByOne explores more groups and PATCHes than the test above.
func FuzzMemberPatchAgreesWithOneByOne(f *testing.F) {
	f.Add(uint64(1), uint64(2))
	f.Fuzz(func(t *testing.T, a, b uint64) {
		checkMemberPatch(t, rand.New(rand.NewPCG(a, b)), 0)
	})
}

// checkMemberPatch applies one random PATCH to one random group both ways.
func checkMemberPatch(t *testing.T, r *rand.Rand, c int) {
	t.Helper()
	ids := make([]string, 24)
	for i := range ids {
		ids[i] = fmt.Sprintf("0190a1b2-%04x", i)
	}
	ids[23] = "0190A1B2-UPPER" // a value that is not its own fold: filters must then scan
	var group []member
	for _, id := range ids[:23] {
		if r.IntN(2) == 0 {
			group = append(group, member{value: id, display: fmt.Sprintf("d%d", r.IntN(5)), typ: []string{"", "User", "Group"}[r.IntN(3)]})
		}
	}
	if r.IntN(10) == 0 {
		group = append(group, member{value: ids[23]})
	}
	group = sortMembers(group)
	before := slices.Clone(group)
	raw := randomMemberPatch(r, ids)
	ops := memberPatch(t, raw)
	want, wantErr := oneByOne(group, ops)
	got, err := applyMembers(group, ops, 1<<40)
	if !slices.Equal(group, before) {
		t.Fatalf("case %d: the stored members changed", c)
	}
	if errKind(err) != errKind(wantErr) || !slices.Equal(got, want) {
		t.Fatalf("case %d: %v\ngroup %v\ngot  %v, %v\nwant %v, %v", c, raw, before, got, err, want, wantErr)
	}
}

// errKind is what a client can tell errors apart by: the status and scimType.
func errKind(err error) string {
	var se scimerr.ScimError
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &se):
		return fmt.Sprintf("%d %s", se.Status, se.ScimType)
	}
	return "other: " + err.Error()
}

func TestMemberPatchWorkBudget(t *testing.T) {
	group := benchGroup(20000)
	var raw []map[string]any
	for i := 0; i < 100; i++ {
		raw = append(raw, map[string]any{"op": "replace", "path": fmt.Sprintf(`members[display eq "user %d"].display`, i), "value": "x"})
	}
	ops := memberPatch(t, raw)
	// decoding 20,000 members once, then per operation a filter scan and a normalising pass
	if _, err := applyMembers(group, ops, 20_000+100*2*20_000); err != nil {
		t.Fatalf("within the budget: %v", err)
	}
	_, err := applyMembers(group, ops, 20_000+50*2*20_000)
	var le *limitError
	if !errors.As(err, &le) || le.key != "max_patch_member_work" || le.status != http.StatusRequestEntityTooLarge ||
		!strings.Contains(err.Error(), "server.max_patch_member_work") {
		t.Fatalf("over the budget: %v", err)
	}
	// the forms that find members by id stay far below it
	raw = raw[:0]
	for i := 0; i < 1000; i++ {
		id := group[i*20].value
		raw = append(raw, map[string]any{"op": "replace", "path": fmt.Sprintf(`members[value eq "%s"].display`, id), "value": "x"},
			map[string]any{"op": "remove", "path": fmt.Sprintf(`members[value eq "%s"]`, group[i*20+1].value)},
			map[string]any{"op": "add", "path": "members", "value": []any{map[string]any{"value": fmt.Sprintf("new-%d", i)}}})
	}
	if _, err := applyMembers(group, memberPatch(t, raw[:1000]), 25_000); err != nil {
		t.Fatalf("1,000 value-filter and set-form operations: %v", err)
	}
}

// TestMemberPatchErrorsNameOperationAndMember: a member an operation leaves invalid is named
// by the operation's place in the PATCH and the member's id, by whichever path it was found.
func TestMemberPatchErrorsNameOperationAndMember(t *testing.T) {
	group := []member{{value: "a"}, {value: "b", display: "Bee"}, {value: "c"}}
	for _, path := range []string{`members[value eq "b"].type`, `members[display eq "Bee"].type`} {
		ops := memberPatch(t, []map[string]any{
			{"op": "add", "path": "members", "value": []any{map[string]any{"value": "d"}}},
			{"op": "replace", "path": path, "value": "Robot"},
		})
		_, err := applyMembers(group, ops, 1<<40)
		if errKind(err) != "400 invalidValue" || !strings.Contains(err.Error(), `operation 1: members[value eq "b"]: type must be User or Group`) {
			t.Errorf("%s: %v", path, err)
		}
	}
}

// TestMemberWorkBudgetFitsTheLargestAdd: the budget may not be set below what one request
// adding the most members it may name to the largest group costs.
func TestMemberWorkBudgetFitsTheLargestAdd(t *testing.T) {
	hasProblem := func(c ServerConfig) bool {
		return slices.ContainsFunc(c.Validate(), func(p config.Problem) bool { return p.Path == "max_patch_member_work" })
	}
	c := DefaultServerConfig()
	if hasProblem(c) {
		t.Fatal("the defaults are refused")
	}
	c.MaxGroupMembers = int(c.MaxPatchMemberWork)
	if !hasProblem(c) {
		t.Fatal("a budget below max_group_members + 2 × max_members_per_request is accepted")
	}
	// and at that least it does fit: a group of max_group_members takes the largest add
	c = DefaultServerConfig()
	c.MaxGroupMembers, c.MaxMembersPerRequest = 2000, 500
	c.MaxPatchMemberWork = int64(c.MaxGroupMembers + 2*c.MaxMembersPerRequest)
	if hasProblem(c) {
		t.Fatal("the least budget is refused")
	}
	var add []any
	for i := 0; i < c.MaxMembersPerRequest; i++ {
		add = append(add, map[string]any{"value": fmt.Sprintf("new-%d", i)})
	}
	if _, err := applyMembers(benchGroup(c.MaxGroupMembers), memberPatch(t, []map[string]any{{"op": "add", "path": "members", "value": add}}), c.MaxPatchMemberWork); err != nil {
		t.Fatal(err)
	}
}
