package scimserver

import (
	"fmt"
	"maps"
	"net/http"
	"strings"

	elimity "github.com/elimity-com/scim"
	scimerr "github.com/elimity-com/scim/errors"
	"github.com/elimity-com/scim/optional"
	"go.uber.org/zap"

	"github.com/scimsync/scimsync/scim"
	"github.com/scimsync/scimsync/state"
)

// handler implements elimity's ResourceHandler for one resource type over the store.
type handler struct {
	srv  *Server
	kind state.Kind
}

var _ elimity.ResourceHandler = (*handler)(nil)

func (h *handler) typeName() string {
	if h.kind == state.KindUser {
		return "User"
	}
	return "Group"
}

func (h *handler) Create(r *http.Request, attrs elimity.ResourceAttributes) (elimity.Resource, error) {
	clean, err := h.normalize(scim.DeepCopy(map[string]any(attrs)).(map[string]any))
	if err != nil {
		return elimity.Resource{}, err
	}
	res, err := h.srv.store.create(h.kind, clean)
	if err != nil {
		return elimity.Resource{}, err
	}
	h.logWrite(r, "create", res)
	return h.srv.render(h.kind, res, r), nil
}

func (h *handler) Get(r *http.Request, id string) (elimity.Resource, error) {
	res, ok := h.srv.store.get(h.kind, id)
	if !ok {
		return elimity.Resource{}, scimerr.ScimErrorResourceNotFound(id)
	}
	return h.srv.render(h.kind, res, r), nil
}

func (h *handler) GetAll(r *http.Request, params elimity.ListRequestParams) (elimity.Page, error) {
	var candidates []*resource
	if params.FilterValidator != nil {
		expr := params.FilterValidator.GetFilter()
		m := scim.Matcher{Index: h.srv.idx[h.kind]}
		if attr, value, ok := scim.EqLookup(expr); ok && h.kind == state.KindUser {
			// the IdPs' existence checks, answered from an index
			var id string
			var found bool
			if attr == "userName" {
				id, found = h.srv.store.userIDByName(value)
			} else {
				id, found = h.srv.store.userIDByExternalID(value)
			}
			if found {
				if res, ok := h.srv.store.get(h.kind, id); ok && m.Match(expr, res.Attrs, res.meta()) {
					candidates = append(candidates, res)
				}
			}
		} else {
			for _, res := range h.srv.store.snapshot(h.kind) {
				if m.Match(expr, res.Attrs, res.meta()) {
					candidates = append(candidates, res)
				}
			}
		}
	} else {
		candidates = h.srv.store.snapshot(h.kind)
	}
	start := max(params.StartIndex, 1) - 1
	end := min(start+max(params.Count, 0), len(candidates))
	page := elimity.Page{TotalResults: len(candidates), Resources: []elimity.Resource{}}
	for i := start; i < end; i++ {
		page.Resources = append(page.Resources, h.srv.render(h.kind, candidates[i], r))
	}
	return page, nil
}

func (h *handler) Replace(r *http.Request, id string, attrs elimity.ResourceAttributes) (elimity.Resource, error) {
	clean, err := h.normalize(scim.DeepCopy(map[string]any(attrs)).(map[string]any))
	if err != nil {
		return elimity.Resource{}, err
	}
	res, err := h.srv.store.update(h.kind, id, func(cur *resource) (map[string]any, error) {
		return clean, checkIfMatch(r, cur)
	})
	if err != nil {
		return elimity.Resource{}, err
	}
	h.logWrite(r, "replace", res)
	return h.srv.render(h.kind, res, r), nil
}

func (h *handler) Patch(r *http.Request, id string, ops []elimity.PatchOperation) (elimity.Resource, error) {
	p := scim.Patcher{Index: h.srv.idx[h.kind]}
	res, err := h.srv.store.update(h.kind, id, func(cur *resource) (map[string]any, error) {
		if err := checkIfMatch(r, cur); err != nil {
			return nil, err
		}
		attrs := scim.DeepCopy(cur.Attrs).(map[string]any)
		if err := p.Apply(attrs, operations(ops)); err != nil {
			return nil, err
		}
		valid, err := h.validate(attrs)
		if err != nil {
			return nil, err
		}
		return h.normalize(valid)
	})
	if err != nil {
		return elimity.Resource{}, err
	}
	h.logWrite(r, "patch", res)
	return h.srv.render(h.kind, res, r), nil
}

func (h *handler) Delete(r *http.Request, id string) error {
	err := h.srv.store.remove(h.kind, id, func(cur *resource) error { return checkIfMatch(r, cur) })
	if err != nil {
		return err
	}
	h.srv.log.Info("write", zap.String("who", caller(r)), zap.String("op", "delete"),
		zap.String("type", h.typeName()), zap.String("id", id))
	return nil
}

func (h *handler) logWrite(r *http.Request, op string, res *resource) {
	h.srv.log.Info("write", zap.String("who", caller(r)), zap.String("op", op),
		zap.String("type", h.typeName()), zap.String("id", res.ID), zap.Int("version", res.Version))
}

// validate runs a PATCH result through the same schema checks a POST body gets: required
// attributes, types (coercing "False"), canonical names, read-only attributes dropped.
func (h *handler) validate(attrs map[string]any) (map[string]any, error) {
	rt := h.srv.users
	if h.kind == state.KindGroup {
		rt = h.srv.groups
	}
	core := map[string]any{}
	for k, v := range attrs {
		if !strings.HasPrefix(strings.ToLower(k), "urn:") {
			core[k] = v
		}
	}
	out, serr := rt.Schema.Validate(core)
	if serr != nil {
		return nil, *serr
	}
	for _, ext := range rt.SchemaExtensions {
		raw, ok := scim.GetFold(attrs, ext.Schema.ID).(map[string]any)
		if !ok || len(raw) == 0 {
			continue
		}
		v, serr := ext.Schema.Validate(raw)
		if serr != nil {
			return nil, *serr
		}
		if len(v) > 0 {
			out[ext.Schema.ID] = v
		}
	}
	return out, nil
}

// normalize enforces what the schema cannot say: managementMode's values and default, and
// that groups[] on a user is computed, never stored.
func (h *handler) normalize(attrs map[string]any) (map[string]any, error) {
	delete(attrs, "id")
	delete(attrs, "meta")
	delete(attrs, "schemas")
	if h.kind != state.KindUser {
		for _, m := range scim.AsList(attrs["members"]) {
			mm, ok := m.(map[string]any)
			if !ok {
				return nil, scim.InvalidValue("members: every member must be an object with a value")
			}
			if id, _ := mm["value"].(string); id == "" {
				return nil, scim.InvalidValue("members: every member needs a value (the member's id)")
			}
		}
		return attrs, nil
	}
	delete(attrs, "groups")
	ext, _ := attrs[scim.ScimsyncSchema].(map[string]any)
	if ext == nil {
		ext = map[string]any{}
	}
	mode, _ := ext["managementMode"].(string)
	switch strings.ToUpper(mode) {
	case "":
		ext["managementMode"] = scim.ModeDefault
	case scim.ModeDefault, scim.ModeCMS:
		ext["managementMode"] = strings.ToUpper(mode)
	default:
		return nil, scim.InvalidValue("%s:managementMode must be DEFAULT or CMS, got %q", scim.ScimsyncSchema, mode)
	}
	attrs[scim.ScimsyncSchema] = ext
	return attrs, nil
}

// operations converts elimity's parsed PATCH operations into the model's.
func operations(ops []elimity.PatchOperation) []scim.Operation {
	out := make([]scim.Operation, len(ops))
	for i, op := range ops {
		out[i] = scim.Operation{Op: op.Op, Path: op.Path, Value: op.Value}
	}
	return out
}

// checkIfMatch enforces optimistic locking: a stale version gets 412.
func checkIfMatch(r *http.Request, cur *resource) error {
	want := r.Header.Get("If-Match")
	if want == "" || etagMatches(want, cur.etag()) {
		return nil
	}
	return scimerr.ScimError{Status: http.StatusPreconditionFailed,
		Detail: fmt.Sprintf("resource %s is at version %s, not %s", cur.ID, cur.etag(), want)}
}

// etagMatches compares a header list of tags with one tag, weakly (RFC 9110 §8.8.3.2).
func etagMatches(header, tag string) bool {
	strip := func(s string) string { return strings.TrimPrefix(strings.TrimSpace(s), "W/") }
	for _, t := range strings.Split(header, ",") {
		if strings.TrimSpace(t) == "*" || strip(t) == strip(tag) {
			return true
		}
	}
	return false
}

// render builds the response resource: a fresh map (elimity writes into it), the computed
// groups[] of a user, and the attributes= / excludedAttributes= projection elimity ignores.
func (s *Server) render(kind state.Kind, res *resource, r *http.Request) elimity.Resource {
	attrs := maps.Clone(res.Attrs)
	if kind == state.KindUser {
		if gs := s.store.groupsOf(res.ID); len(gs) > 0 {
			list := make([]any, 0, len(gs))
			for _, g := range gs {
				list = append(list, map[string]any{"value": g.ID, "display": g.Attrs["displayName"],
					"$ref": "../Groups/" + g.ID, "type": "direct"})
			}
			attrs["groups"] = list
		}
	}
	q := r.URL.Query()
	attrs = project(attrs, s.idx[kind], splitList(q.Get("attributes")), splitList(q.Get("excludedAttributes")))
	created, modified := res.Created, res.Modified
	out := elimity.Resource{ID: res.ID, Attributes: attrs,
		Meta: elimity.Meta{Created: &created, LastModified: &modified, Version: res.etag()}}
	if ext, ok := attrs["externalId"].(string); ok {
		out.ExternalID = optional.NewString(ext)
	}
	return out
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// project applies RFC 7644 §3.9. id, schemas and meta are added by elimity after this and are
// always returned; everything else follows the lists.
func project(attrs map[string]any, idx scim.Index, include, exclude []string) map[string]any {
	if len(include) > 0 {
		out := map[string]any{}
		for _, p := range include {
			uri, name, sub := splitAttrPath(p)
			ext, info, ok := idx.Lookup(uri, name)
			if !ok {
				continue
			}
			src, dst := attrs, out
			if ext != "" {
				src, _ = attrs[ext].(map[string]any)
				d, _ := out[ext].(map[string]any)
				if d == nil {
					d = map[string]any{}
					out[ext] = d
				}
				dst = d
			}
			v, ok := src[info.Name]
			if !ok {
				continue
			}
			if sub == "" {
				dst[info.Name] = v
				continue
			}
			dst[info.Name] = pickSub(v, dst[info.Name], info, sub)
		}
		for k, v := range out {
			if m, ok := v.(map[string]any); ok && len(m) == 0 && strings.HasPrefix(k, "urn:") {
				delete(out, k)
			}
		}
		attrs = out
	}
	for _, p := range exclude {
		uri, name, sub := splitAttrPath(p)
		ext, info, ok := idx.Lookup(uri, name)
		if !ok {
			continue
		}
		target := attrs
		if ext != "" {
			e, _ := attrs[ext].(map[string]any)
			if e == nil {
				continue
			}
			e = maps.Clone(e)
			attrs[ext] = e
			target = e
		}
		if sub == "" {
			delete(target, info.Name)
			continue
		}
		if obj, ok := target[info.Name].(map[string]any); ok {
			obj = maps.Clone(obj)
			for k := range obj {
				if strings.EqualFold(k, sub) {
					delete(obj, k)
				}
			}
			target[info.Name] = obj
		}
	}
	return attrs
}

// pickSub keeps only sub of v (an object, or each element of a list), merged into prev.
func pickSub(v, prev any, info scim.Attribute, sub string) any {
	si, ok := info.Subs[strings.ToLower(sub)]
	if !ok {
		return prev
	}
	switch v := v.(type) {
	case map[string]any:
		out, _ := prev.(map[string]any)
		if out == nil {
			out = map[string]any{}
		}
		if x, ok := v[si.Name]; ok {
			out[si.Name] = x
		}
		return out
	case []any:
		out := make([]any, len(v))
		prevList, _ := prev.([]any)
		for i, el := range v {
			m := map[string]any{}
			if i < len(prevList) {
				if pm, ok := prevList[i].(map[string]any); ok {
					m = pm
				}
			}
			if em, ok := el.(map[string]any); ok {
				if x, ok := em[si.Name]; ok {
					m[si.Name] = x
				}
			}
			out[i] = m
		}
		return out
	}
	return prev
}

// splitAttrPath splits "urn:…:User:name.givenName" into its URN, attribute and sub-attribute.
func splitAttrPath(p string) (uri, name, sub string) {
	if strings.HasPrefix(strings.ToLower(p), "urn:") {
		i := strings.LastIndex(p, ":")
		uri, p = p[:i], p[i+1:]
	}
	name, sub, _ = strings.Cut(p, ".")
	return uri, name, sub
}
