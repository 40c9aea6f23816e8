package scim

import (
	"fmt"
	"sort"

	fp "github.com/scim2/filter-parser/v2"
)

// PatchOp is one RFC 7644 PATCH operation as it travels on the wire.
type PatchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path,omitempty"`
	Value any    `json:"value,omitempty"`
}

// Parse turns the wire form into the form the Patcher applies.
func (o PatchOp) Parse() (Operation, error) {
	op := Operation{Op: o.Op, Value: o.Value}
	if o.Path != "" {
		p, err := fp.ParsePath([]byte(o.Path))
		if err != nil {
			return Operation{}, fmt.Errorf("scim: path %q: %w", o.Path, err)
		}
		op.Path = &p
	}
	return op, nil
}

// Values is the desired state of some attributes of a resource: a value per path. A path a
// caller manages but leaves out of Values is to be absent.
type Values map[AttrPath]string

// Diff returns the PATCH operations that make current hold want on every managed path, decided
// from current's own values (RFC 7644 §3.5.2): `add` for a value that is absent, `replace` for
// one that is present and differs, `remove` for one that must go. A `replace` never carries a
// value filter that could match nothing, which strict servers answer with 400 noTarget. It also
// returns current with the operations applied (what a PUT sends to a target without PATCH), and
// checks with idx's Patcher that the operations really produce want: a mismatch is a defect
// reported as an error, never sent.
func Diff(idx Index, current Doc, want Values, managed []AttrPath) ([]PatchOp, Doc, error) {
	groups := map[AttrPath][]AttrPath{} // parent attribute -> its managed paths
	for _, p := range managed {
		groups[p.parent()] = append(groups[p.parent()], p)
	}
	parents := make([]AttrPath, 0, len(groups))
	for p := range groups {
		parents = append(parents, p)
	}
	sort.Slice(parents, func(i, j int) bool { return parents[i].String() < parents[j].String() })
	var ops []PatchOp
	for _, parent := range parents {
		ops = append(ops, diffAttribute(current, want, parent, groups[parent])...)
	}
	result := CopyDoc(current)
	if len(ops) > 0 {
		parsed := make([]Operation, 0, len(ops))
		for _, o := range ops {
			op, err := o.Parse()
			if err != nil {
				return nil, nil, err
			}
			parsed = append(parsed, op)
		}
		if err := (Patcher{Index: idx}).Apply(result, parsed); err != nil {
			return nil, nil, fmt.Errorf("scim: the planned operations do not apply: %w", err)
		}
	}
	for _, p := range managed {
		got, _ := p.Read(result)
		if w := wanted(want, p); got != w {
			return nil, nil, fmt.Errorf("scim: the planned operations leave %s at %q, not %q", p, got, w)
		}
	}
	return ops, result, nil
}

// wanted is the value want asks for at p: its value, or what absence reads as.
func wanted(want Values, p AttrPath) string {
	if v, ok := want[p]; ok && v != "" {
		return v
	}
	return p.Default
}

func diffAttribute(current Doc, want Values, parent AttrPath, paths []AttrPath) []PatchOp {
	sort.Slice(paths, func(i, j int) bool { return paths[i].String() < paths[j].String() })
	obj := parent.container(current, false)
	cur := GetFold(obj, parent.Attr)
	var ops []PatchOp
	switch {
	case paths[0].Type != "":
		// typed elements of a multi-valued attribute: new elements go in one add on the attribute
		var added []any
		list, _ := cur.([]any)
		for _, p := range paths {
			w := wanted(want, p)
			have, present := p.Read(current)
			switch {
			case len(p.elements(cur)) == 0 && w != p.Default:
				el := map[string]any{"type": p.Type, p.Sub: p.value(w)}
				if len(list) == 0 && len(added) == 0 {
					el["primary"] = true
				}
				added = append(added, el)
			case len(p.elements(cur)) == 0:
			case w == p.Default && present && want[p] == "":
				ops = append(ops, PatchOp{Op: OpRemove, Path: p.element().String()})
			case have != w:
				ops = append(ops, PatchOp{Op: OpReplace, Path: p.String(), Value: p.value(w)})
			}
		}
		if len(added) > 0 {
			ops = append(ops, PatchOp{Op: OpAdd, Path: parent.String(), Value: added})
		}
	case paths[0].Sub != "":
		parentObj, isObj := cur.(map[string]any)
		if !isObj {
			// the complex attribute is absent: one add carries every sub-attribute to set
			value := map[string]any{}
			for _, p := range paths {
				if w := wanted(want, p); w != p.Default {
					value[p.Sub] = p.value(w)
				}
			}
			if len(value) > 0 {
				ops = append(ops, PatchOp{Op: OpAdd, Path: parent.String(), Value: value})
			}
			break
		}
		for _, p := range paths {
			ops = append(ops, diffValue(p, wanted(want, p), want[p] == "", parentObj, p.Sub)...)
		}
	default:
		ops = append(ops, diffValue(paths[0], wanted(want, paths[0]), want[paths[0]] == "", obj, paths[0].Attr)...)
	}
	return ops
}

// diffValue compares one simple value, the key in obj (which may be nil), with w.
func diffValue(p AttrPath, w string, unset bool, obj map[string]any, key string) []PatchOp {
	have, present := scalar(GetFold(obj, key))
	if !present {
		have = p.Default
	}
	switch {
	case have == w:
		return nil
	case unset && present:
		return []PatchOp{{Op: OpRemove, Path: p.String()}}
	case !present:
		return []PatchOp{{Op: OpAdd, Path: p.String(), Value: p.value(w)}}
	}
	return []PatchOp{{Op: OpReplace, Path: p.String(), Value: p.value(w)}}
}
