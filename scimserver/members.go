package scimserver

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"unicode/utf8"

	fp "github.com/scim2/filter-parser/v2"

	"github.com/scimsync/scimsync/scim"
)

// applyMembers applies a PATCH's member operations to a group's sorted members and returns
// the new members; ms itself is never modified (the stored record shares it). It runs while
// the request holds the group's write slot, so its work is bounded by budget, counted in
// member visits (see memberWork), and the forms IdPs send cost no pass over the group each:
//
//   - set-form adds and removes ({"op":"add","path":"members","value":[…]}, Entra's remove
//     with a value, Okta's remove of members[value eq "id"]) and members[value eq "id"]
//     operations of any other kind find their members by binary search and collect their
//     changes beside the sorted members, which take them all in one merge pass at the end
//     (the two removals compare ids exactly, the other value filters case-insensitively, as
//     they always have: see dropValues and folded);
//   - any other filter or sub-attribute form runs through the shared Patcher on the members
//     as generic JSON, consecutive such operations decoded and encoded once.
//
// The result, or the refusal, is what applying the operations one by one to the whole group
// gives (TestMemberPatchAgreesWithOneByOne holds it to that).
func applyMembers(ms []member, ops []memberOp, budget int64) ([]member, error) {
	a := &memberApplier{base: ms, folded: allFolded(ms), work: memberWork{budget: budget, group: len(ms)},
		patcher: scim.Patcher{Index: scim.GroupIndex()}}
	for i := 0; i < len(ops); {
		var err error
		// neither has side effects, and the cases before each use change no state they read
		mo := ops[i]
		drop, keys := a.dropValues(mo), a.lookupKeys(mo)
		switch {
		case mo.path == nil && mo.op == scim.OpAdd:
			err = a.add(mo.vals)
		case mo.path == nil && mo.op == scim.OpReplace:
			err = a.replace(mo.vals)
		case drop != nil:
			err = a.drop(drop)
		case mo.path == nil: // remove without a value: every member goes
			a.base, a.owned, a.over, a.folded = []member{}, true, nil, true
		case keys != nil:
			err = a.byValue(mo, keys)
		default:
			j := i + 1
			for j < len(ops) && ops[j].path != nil && a.dropValues(ops[j]) == nil && a.lookupKeys(ops[j]) == nil {
				j++
			}
			err = a.generic(ops[i:j])
			i = j
			if err != nil {
				return nil, err
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		i++
	}
	if err := a.flush(); err != nil {
		return nil, err
	}
	return a.base, nil
}

// memberApplier is applyMembers' state between operations: the sorted members, and the
// changes made by id since the last pass over them.
type memberApplier struct {
	base  []member
	owned bool // base is this applier's copy and may be changed in place
	// over holds each member changed by id since base was last rebuilt: its new form, or that
	// it is gone. flush merges it into base.
	over map[string]overlay
	// folded: every member value is its own scim.FoldKey. Filters compare members' values
	// case-insensitively (RFC 7643 gives members.value caseExact false), so a filter's value
	// finds its members by binary search on its FoldKey exactly when this holds, which it
	// does for every id the server issues.
	folded  bool
	work    memberWork
	patcher scim.Patcher
}

type overlay struct {
	m       member
	present bool
}

// memberWork is the budget of member visits a PATCH's member operations may spend: a pass over
// the group (merging changes into it, decoding or encoding it, a Patcher scan) costs its
// length, finding a member by id one.
type memberWork struct {
	budget, spent int64
	group         int // members before the PATCH, for the message
}

func (w *memberWork) charge(n int) error {
	w.spent += int64(n)
	if w.spent > w.budget {
		return overLimit("max_patch_member_work", http.StatusRequestEntityTooLarge,
			"the PATCH's member operations would visit more than %d members of this %d-member group (an operation on members[…] with a filter other than value eq, or on members.<attribute>, visits every member)",
			w.budget, w.group)
	}
	return nil
}

// lookup is the member with value v, as the operations so far left it.
func (a *memberApplier) lookup(v string) (member, bool) {
	if o, ok := a.over[v]; ok {
		return o.m, o.present
	}
	i, found := slices.BinarySearchFunc(a.base, v, func(m member, v string) int { return strings.Compare(m.value, v) })
	if !found {
		return member{}, false
	}
	return a.base[i], true
}

func (a *memberApplier) set(m member, present bool) {
	if a.over == nil {
		a.over = map[string]overlay{}
	}
	a.over[m.value] = overlay{m: m, present: present}
	if present && !folded(m.value) {
		a.folded = false
	}
}

// add adds vals (sorted, one per id); a member already there keeps its form.
func (a *memberApplier) add(vals []member) error {
	if err := a.work.charge(len(vals)); err != nil {
		return err
	}
	for _, m := range vals {
		if _, there := a.lookup(m.value); !there {
			a.set(m, true)
		}
	}
	return nil
}

// replace makes vals (sorted, one per id) the members.
func (a *memberApplier) replace(vals []member) error {
	if err := a.work.charge(len(vals)); err != nil {
		return err
	}
	a.base, a.owned, a.over, a.folded = slices.Clone(vals), true, nil, allFolded(vals)
	return nil
}

// dropValues is the values a removal by id drops, or nil when mo is not one: a set-form
// remove with a value (Entra) or remove members[value eq "id"] (Okta). Both compare the ids
// exactly, as this server always has for these two forms (a filter run through the Patcher
// compares members' values case-insensitively; the ids the server issues are lower-case, so
// the two differ only for an id a client wrote in another case).
func (a *memberApplier) dropValues(mo memberOp) []string {
	switch {
	case mo.op != scim.OpRemove:
		return nil
	case mo.path == nil:
		if mo.hasVal && len(mo.vals) > 0 {
			return memberValues(mo.vals)
		}
		return nil
	case mo.path.SubAttribute != nil:
		return nil
	}
	values, _ := eqValues(mo.path.ValueExpression, false)
	return values
}

func (a *memberApplier) drop(values []string) error {
	if err := a.work.charge(len(values)); err != nil {
		return err
	}
	for _, v := range values {
		a.set(member{value: v}, false)
	}
	return nil
}

// lookupKeys is the member values a members[value eq …] operation (other than a removal by
// id) selects, or nil when mo is not one or its members cannot be found by id.
func (a *memberApplier) lookupKeys(mo memberOp) []string {
	if mo.path == nil {
		return nil
	}
	return a.filterKeys(mo.path.ValueExpression)
}

// filterKeys turns a filter of value eq terms into the member values it selects (their
// FoldKeys); nil for any other filter, or when the members' values are not all folded.
func (a *memberApplier) filterKeys(e fp.Expression) []string {
	if e == nil || !a.folded {
		return nil
	}
	values, ok := eqValues(e, true)
	if !ok {
		return nil
	}
	keys := make([]string, len(values))
	for i, v := range values {
		keys[i] = scim.FoldKey(v)
	}
	return keys
}

// byValue runs one operation on the members its value filter selects, found by id, as the
// Patcher would run it on the whole group: the members it matches are the only ones it reads
// or changes (with no match, an add creates one from the filter), so it runs on those alone,
// in group order, and the result takes their places.
func (a *memberApplier) byValue(mo memberOp, keys []string) error {
	if err := a.work.charge(len(keys)); err != nil {
		return err
	}
	var found []member
	for _, k := range keys {
		if m, ok := a.lookup(k); ok && !slices.ContainsFunc(found, func(f member) bool { return f.value == m.value }) {
			found = append(found, m)
		}
	}
	slices.SortFunc(found, func(x, y member) int { return strings.Compare(x.value, y.value) })
	doc := map[string]any{}
	if len(found) > 0 {
		list := make([]any, len(found))
		for i, m := range found {
			list[i] = memberDoc(m)
		}
		doc["members"] = list
	}
	if err := a.patcher.ApplyOp(doc, scim.Operation{Op: mo.op, Path: mo.path, Value: mo.generic}); err != nil {
		return scim.OpError(mo.index, err)
	}
	out, err := memberList(doc["members"])
	if err != nil {
		return scim.OpError(mo.index, err)
	}
	switch {
	case len(found) == 0:
		// no match: an add made one member from the filter's equalities; its id matched no
		// member, so it joins
		for _, m := range sortMembers(out) {
			if _, there := a.lookup(m.value); !there {
				a.set(m, true)
			}
		}
		return nil
	case len(out) != len(found):
		// the Patcher changes matched members one for one; anything else breaks this code's
		// assumptions, not the request: refuse rather than guess
		return scim.OpError(mo.index, scim.InvalidValue("members[…]: the operation changed the number of matched members"))
	}
	for i, m := range out {
		if m.value != found[i].value {
			return a.moveIDs(found, out)
		}
	}
	for _, m := range out {
		a.set(m, true)
	}
	return nil
}

// moveIDs handles an operation that changed matched members' ids (replace
// members[value eq "a"].value): the whole-group run leaves each result where its member was
// and sorts the list again, keeping the first of two members with one id. Nobody renames a
// member this way in earnest, so it costs a pass and a sort.
func (a *memberApplier) moveIDs(found, out []member) error {
	if err := a.flush(); err != nil {
		return err
	}
	if err := a.work.charge(2 * len(a.base)); err != nil {
		return err
	}
	a.own()
	for i, m := range found {
		p, _ := slices.BinarySearchFunc(a.base, m.value, func(m member, v string) int { return strings.Compare(m.value, v) })
		a.base[p] = out[i]
	}
	a.base = sortMembers(a.base)
	a.folded = allFolded(a.base)
	return nil
}

// own makes base this applier's copy.
func (a *memberApplier) own() {
	if !a.owned {
		a.base, a.owned = slices.Clone(a.base), true
	}
}

// flush merges the changes made by id into base, in one pass.
func (a *memberApplier) flush() error {
	if len(a.over) == 0 {
		return nil
	}
	if err := a.work.charge(len(a.base) + len(a.over)); err != nil {
		return err
	}
	keys := make([]string, 0, len(a.over))
	for k := range a.over {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]member, 0, len(a.base)+len(keys))
	i, j := 0, 0
	for i < len(a.base) || j < len(keys) {
		switch {
		case j == len(keys) || (i < len(a.base) && a.base[i].value < keys[j]):
			out = append(out, a.base[i])
			i++
		default:
			if i < len(a.base) && a.base[i].value == keys[j] {
				i++
			}
			if o := a.over[keys[j]]; o.present {
				out = append(out, o.m)
			}
			j++
		}
	}
	a.base, a.owned, a.over = out, true, nil
	a.folded = allFolded(out)
	return nil
}

// generic runs consecutive operations the forms above cannot serve through the shared
// Patcher, on the members decoded once and encoded once for all of them. After each operation
// the members are brought back to the form the one-by-one run would decode them in (checked,
// types normalised, unknown keys dropped, sorted, one per id), visiting each once.
func (a *memberApplier) generic(ops []memberOp) error {
	if err := a.flush(); err != nil {
		return err
	}
	if err := a.work.charge(len(a.base)); err != nil {
		return err
	}
	doc, _ := decodeAttrs(&record{attrs: []byte("{}"), members: a.base})
	var ms []member
	for _, mo := range ops {
		list, _ := doc["members"].([]any)
		if err := a.work.charge(2 * len(list)); err != nil { // the Patcher's scan, then normalize's
			return err
		}
		if err := a.patcher.ApplyOp(doc, scim.Operation{Op: mo.op, Path: mo.path, Value: mo.generic}); err != nil {
			return scim.OpError(mo.index, err)
		}
		var err error
		if ms, err = normalize(doc); err != nil {
			return scim.OpError(mo.index, err)
		}
		if !sortedUnique(ms) {
			if err := a.work.charge(2 * len(ms)); err != nil {
				return err
			}
			ms = sortMembers(ms)
			setMembers(doc, ms)
		}
	}
	a.base, a.owned, a.over = ms, true, nil
	a.folded = allFolded(ms)
	return nil
}

// normalize checks the members the Patcher left in doc and returns them as members, in their
// order, rewriting in doc any element that is not already in the form decodeAttrs gives
// (a member made from a client's object, a type in another case) to that form: what encoding
// and decoding them again would do, at the cost of a few map lookups per member.
func normalize(doc map[string]any) ([]member, error) {
	v, present := doc["members"]
	list, isList := v.([]any)
	if present && !isList {
		ms, err := membersOf(v)
		if err == nil {
			setMembers(doc, ms)
		}
		return ms, err
	}
	ms := make([]member, len(list))
	for i, el := range list {
		if m, ok := canonicalMember(el); ok {
			ms[i] = m
			continue
		}
		raw, err := json.Marshal(el)
		if err != nil {
			return nil, err
		}
		var in memberIn
		if err := json.Unmarshal(raw, &in); err != nil {
			return nil, scim.InvalidValue("members must be {\"value\": id} objects")
		}
		m, err := checkPatched(in)
		if err != nil {
			return nil, err
		}
		ms[i] = m
		list[i] = memberDoc(m)
	}
	return ms, nil
}

// canonicalMember reads an element that is exactly what memberDoc makes of a valid member.
func canonicalMember(el any) (member, bool) {
	obj, ok := el.(map[string]any)
	if !ok {
		return member{}, false
	}
	var m member
	n := 0
	if m.value, ok = obj["value"].(string); !ok || m.value == "" || hasControl(m.value) {
		return member{}, false
	}
	n++
	if d, present := obj["display"]; present {
		if m.display, ok = d.(string); !ok || m.display == "" || hasControl(m.display) {
			return member{}, false
		}
		n++
	}
	if t, present := obj["type"]; present {
		if m.typ, ok = t.(string); !ok || (m.typ != "User" && m.typ != "Group") {
			return member{}, false
		}
		n++
	}
	return m, len(obj) == n
}

// setMembers puts ms into doc as decodeAttrs would.
func setMembers(doc map[string]any, ms []member) {
	list := make([]any, len(ms))
	for i, m := range ms {
		list[i] = memberDoc(m)
	}
	doc["members"] = list
}

// sortedUnique reports whether ms is sorted by value with no value twice.
func sortedUnique(ms []member) bool {
	for i := 1; i < len(ms); i++ {
		if ms[i-1].value >= ms[i].value {
			return false
		}
	}
	return true
}

// memberDoc is a member as the Patcher sees it (the shape decodeAttrs gives).
func memberDoc(m member) map[string]any {
	el := map[string]any{"value": m.value}
	if m.display != "" {
		el["display"] = m.display
	}
	if m.typ != "" {
		el["type"] = m.typ
	}
	return el
}

// memberList turns the Patcher's members back into members, checked, in the Patcher's order.
func memberList(v any) ([]member, error) {
	if v == nil {
		return []member{}, nil
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var in []memberIn
	if err := json.Unmarshal(raw, &in); err != nil {
		return nil, scim.InvalidValue("members must be {\"value\": id} objects")
	}
	out := make([]member, len(in))
	for i, m := range in {
		if out[i], err = checkPatched(m); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// checkPatched checks a member as an operation left it, naming it by its id: its place in
// the group (or among the members an operation matched) would tell the client nothing.
func checkPatched(in memberIn) (member, error) {
	m, problem := checkMember(in)
	switch {
	case problem == "":
		return m, nil
	case in.Value == "":
		return member{}, scim.InvalidValue("members: %s", problem)
	}
	return member{}, scim.InvalidValue("members[value eq %q]: %s", truncate(in.Value, 100), problem)
}

// membersOf turns the Patcher's members back into the sorted, checked form.
func membersOf(v any) ([]member, error) {
	ms, err := memberList(v)
	if err != nil {
		return nil, err
	}
	return sortMembers(ms), nil
}

// allFolded reports whether every member value is its own scim.FoldKey.
func allFolded(ms []member) bool {
	for _, m := range ms {
		if !folded(m.value) {
			return false
		}
	}
	return true
}

func folded(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= utf8.RuneSelf {
			return scim.FoldKey(s) == s
		}
		if c >= 'A' && c <= 'Z' {
			return false
		}
	}
	return true
}

// eqValues recognises `value eq "a"` and `value eq "a" or value eq "b" …`. strict refuses a
// term whose attribute carries a schema URI, which the Patcher may read otherwise than as the
// member's value; the removal by id has always accepted one.
func eqValues(e fp.Expression, strict bool) ([]string, bool) {
	switch e := e.(type) {
	case *fp.AttributeExpression:
		v, ok := e.CompareValue.(string)
		if e.Operator != fp.EQ || !ok || !strings.EqualFold(e.AttributePath.AttributeName, "value") ||
			e.AttributePath.SubAttribute != nil || (strict && e.AttributePath.URIPrefix != nil) {
			return nil, false
		}
		return []string{v}, true
	case *fp.LogicalExpression:
		if e.Operator != fp.OR {
			return nil, false
		}
		l, ok1 := eqValues(e.Left, strict)
		r, ok2 := eqValues(e.Right, strict)
		if !ok1 || !ok2 {
			return nil, false
		}
		return append(l, r...), true
	}
	return nil, false
}
