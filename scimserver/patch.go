package scimserver

import (
	"bytes"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"

	fp "github.com/scim2/filter-parser/v2"

	"github.com/scimsync/scimsync/scim"
	"github.com/scimsync/scimsync/state"
)

type patchRequest struct {
	Schemas    []string `json:"schemas"`
	Operations []rawOp  `json:"Operations"`
}

type rawOp struct {
	Op    string          `json:"op"`
	Path  *string         `json:"path"`
	Value json.RawMessage `json:"value"`
}

// memberOp is a PATCH operation on a Group's members, applied to the sorted member slice.
type memberOp struct {
	index   int // in the PATCH's Operations, for errors
	op      string
	path    *fp.Path // nil or plain "members" for the set operations
	vals    []member
	hasVal  bool
	generic any // the value as generic JSON, for the filtered and sub-attribute forms
}

// parsedPatch is a PATCH body, bounded and parsed before any lock or slot is taken.
type parsedPatch struct {
	ops       []scim.Operation // everything but group members
	members   []memberOp
	pwRemoved bool // a "remove password" op: forget a stored hash
}

// parsePatch checks the RFC 7644 §3.5.2 envelope and every limit, parses each path (after
// checking its size and nesting), and splits a Group's member operations out.
func (s *Server) parsePatch(kind state.Kind, body []byte) (*parsedPatch, error) {
	var req patchRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, invalidSyntax("the PATCH body must be a JSON object with schemas and Operations")
	}
	if !slices.ContainsFunc(req.Schemas, func(u string) bool { return strings.EqualFold(u, scim.PatchOpSchema) }) {
		return nil, scim.InvalidValue("schemas must be [%q]", scim.PatchOpSchema)
	}
	for _, u := range req.Schemas {
		if !strings.EqualFold(u, scim.PatchOpSchema) {
			return nil, scim.InvalidValue("schemas: %q is not the PatchOp schema", u)
		}
	}
	if len(req.Operations) == 0 {
		return nil, scim.InvalidValue("Operations must list at least one operation")
	}
	if len(req.Operations) > s.cfg.MaxPatchOperations {
		return nil, overLimit("max_patch_operations", http.StatusRequestEntityTooLarge,
			"the PATCH has %d operations, over %d", len(req.Operations), s.cfg.MaxPatchOperations)
	}
	out := &parsedPatch{}
	nMembers := 0
	for i, ro := range req.Operations {
		op := strings.ToLower(ro.Op)
		switch op {
		case scim.OpAdd, scim.OpRemove, scim.OpReplace:
		default:
			return nil, scim.InvalidValue("operation %d: op must be add, remove or replace, got %q", i, ro.Op)
		}
		var path *fp.Path
		if ro.Path != nil && strings.TrimSpace(*ro.Path) != "" {
			if err := s.cfg.checkFilter("operation "+strconv.Itoa(i)+" path", *ro.Path); err != nil {
				return nil, err
			}
			p, err := fp.ParsePath([]byte(*ro.Path))
			if err != nil {
				return nil, scim.InvalidPath("operation %d: path %q does not parse: %v", i, truncate(*ro.Path, 200), err)
			}
			path = &p
		}
		hasValue := len(bytes.TrimSpace(ro.Value)) > 0 && string(bytes.TrimSpace(ro.Value)) != "null"
		if path == nil && op == scim.OpRemove {
			return nil, scim.NoTarget("operation %d: remove needs a path (RFC 7644 §3.5.2.2)", i)
		}
		if path == nil && !hasValue {
			return nil, scim.InvalidValue("operation %d: %s without a path needs an object value", i, op)
		}
		if kind == state.KindGroup && path != nil && isMembersPath(*path) {
			mo, err := s.memberOperation(i, op, path, ro.Value, hasValue)
			if err != nil {
				return nil, err
			}
			nMembers += len(mo.vals)
			out.members = append(out.members, mo)
			continue
		}
		if path == nil {
			var obj map[string]json.RawMessage
			if err := json.Unmarshal(ro.Value, &obj); err != nil || obj == nil {
				return nil, scim.InvalidValue("operation %d: without a path the value must be an object", i)
			}
			rest := map[string]any{}
			for key, raw := range obj {
				if err := s.cfg.checkFilter("operation "+strconv.Itoa(i)+" value key", key); err != nil {
					return nil, err
				}
				if kind == state.KindGroup && strings.EqualFold(key, "members") {
					p := fp.Path{AttributePath: fp.AttributePath{AttributeName: "members"}}
					mo, err := s.memberOperation(i, op, &p, raw, true)
					if err != nil {
						return nil, err
					}
					nMembers += len(mo.vals)
					out.members = append(out.members, mo)
					continue
				}
				var v any
				if err := decodeValue(raw, &v); err != nil {
					return nil, invalidSyntax("operation %d: value of %q: %v", i, key, err)
				}
				if err := s.countValues(kind, key, v); err != nil {
					return nil, err
				}
				rest[key] = v
			}
			if len(rest) > 0 {
				out.ops = append(out.ops, scim.Operation{Op: op, Value: rest})
			}
			continue
		}
		var v any
		if hasValue {
			if err := decodeValue(ro.Value, &v); err != nil {
				return nil, invalidSyntax("operation %d: value: %v", i, err)
			}
		}
		if err := s.countValues(kind, path.AttributePath.AttributeName, v); err != nil {
			return nil, err
		}
		if op == scim.OpRemove && strings.EqualFold(path.AttributePath.AttributeName, "password") {
			out.pwRemoved = true
		}
		out.ops = append(out.ops, scim.Operation{Op: op, Path: path, Value: v})
	}
	if nMembers > s.cfg.MaxMembersPerRequest {
		return nil, overLimit("max_members_per_request", http.StatusRequestEntityTooLarge,
			"the PATCH names %d members, over %d", nMembers, s.cfg.MaxMembersPerRequest)
	}
	return out, nil
}

func (s *Server) countValues(kind state.Kind, name string, v any) error {
	if list, ok := v.([]any); ok && kind == state.KindUser && len(list) > s.cfg.MaxValuesPerAttribute {
		return overLimit("max_values_per_attribute", http.StatusBadRequest, "%s has %d values, over %d", name, len(list), s.cfg.MaxValuesPerAttribute)
	}
	return nil
}

func isMembersPath(p fp.Path) bool {
	uri := p.AttributePath.URI()
	return strings.EqualFold(p.AttributePath.AttributeName, "members") && (uri == "" || scim.IsCoreURN(strings.ToLower(uri)))
}

func (s *Server) memberOperation(i int, op string, path *fp.Path, raw json.RawMessage, hasValue bool) (memberOp, error) {
	mo := memberOp{index: i, op: op, hasVal: hasValue}
	plain := path.ValueExpression == nil && path.SubAttribute == nil && path.AttributePath.SubAttribute == nil
	if plain {
		mo.path = nil
	} else {
		mo.path = path
	}
	if !hasValue {
		return mo, nil
	}
	trimmed := bytes.TrimSpace(raw)
	if plain {
		var in []memberIn
		switch trimmed[0] {
		case '[':
			if err := json.Unmarshal(trimmed, &in); err != nil {
				return mo, scim.InvalidValue("operation %d: members must be a list of {\"value\": id} objects", i)
			}
		case '{':
			var one memberIn
			if err := json.Unmarshal(trimmed, &one); err != nil {
				return mo, scim.InvalidValue("operation %d: a member must be a {\"value\": id} object", i)
			}
			in = []memberIn{one}
		default:
			return mo, scim.InvalidValue("operation %d: members must be a list of {\"value\": id} objects", i)
		}
		if len(in) > s.cfg.MaxMembersPerRequest {
			return mo, overLimit("max_members_per_request", http.StatusRequestEntityTooLarge,
				"the PATCH names %d members, over %d", len(in), s.cfg.MaxMembersPerRequest)
		}
		vals, err := toMembers(in)
		if err != nil {
			return mo, err
		}
		mo.vals = vals
		return mo, nil
	}
	if err := decodeValue(trimmed, &mo.generic); err != nil {
		return mo, invalidSyntax("operation %d: value: %v", i, err)
	}
	return mo, nil
}

func (s *Server) patch(w http.ResponseWriter, r *http.Request, kind state.Kind, id string) {
	body, err := s.readBody(w, r, kind)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	pp, err := s.parsePatch(kind, body)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	cur, release, ok := s.holdCurrent(w, r, kind, id)
	if !ok {
		return
	}
	defer release()
	next, name, err := s.applyPatch(r, kind, cur, pp)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	next, ok = s.publish(w, r, "patch", kind, cur, next, name)
	if !ok {
		return
	}
	if kind == state.KindGroup && projectionOf(r.URL.Query()).empty() {
		// RFC 7644 §3.5.2 allows 204; Entra asks for it, and a group's members can be many
		w.Header().Set("ETag", next.etag())
		w.WriteHeader(http.StatusNoContent)
		return
	}
	s.respond(w, r, http.StatusOK, kind, next)
}

// applyPatch computes the patched record outside any lock: the caller holds only the
// resource's slot.
func (s *Server) applyPatch(r *http.Request, kind state.Kind, cur *record, pp *parsedPatch) (*record, string, error) {
	attrs := map[string]any{}
	if len(pp.ops) > 0 {
		var err error
		if attrs, err = decodeAttrs(&record{attrs: cur.attrs}); err != nil {
			return nil, "", err
		}
		if err := (scim.Patcher{Index: s.idx[kind]}).Apply(attrs, pp.ops); err != nil {
			return nil, "", err
		}
	}
	if kind == state.KindGroup {
		var next *record
		if len(pp.ops) > 0 {
			var err error
			if next, err = s.prepareGroup(attrs); err != nil {
				return nil, "", err
			}
		} else {
			next = &record{attrs: cur.attrs, hot: cur.hot}
		}
		members, err := applyMembers(cur.members, pp.members, s.cfg.MaxPatchMemberWork)
		if err != nil {
			return nil, "", err
		}
		next.members = members
		return next, "", nil
	}
	if len(pp.ops) == 0 {
		return cur, "", nil
	}
	hash, found, err := s.passwords.take(attrs, caller(r))
	if err != nil {
		return nil, "", scim.InvalidValue("%v", err)
	}
	if !found {
		hash = cur.pwHash
		if pp.pwRemoved {
			hash = ""
		}
	}
	return s.userRecord(attrs, hash)
}
