package targettest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	fp "github.com/scim2/filter-parser/v2"

	"github.com/scimsync/scimsync/scim"
)

// checkWrite enforces RequireETag and Strict on a write, independently of what the wrapped
// server does. refused is true when a answers the request.
func (tg *Target) checkWrite(r *http.Request, b Behaviour, rel string, body []byte) (a answer, refused bool) {
	collection, id, _ := strings.Cut(strings.TrimPrefix(rel, "/"), "/")
	if collection != "Users" && collection != "Groups" {
		return answer{}, false
	}
	var current scim.Doc
	if id != "" {
		cur := tg.inner(http.MethodGet, "/"+collection+"/"+id, nil, nil)
		if cur.status != http.StatusOK {
			return answer{}, false // the wrapped server answers 404 itself
		}
		if err := json.Unmarshal(cur.body, &current); err != nil {
			return scimError(http.StatusInternalServerError, "", "targettest: unreadable stored resource"), true
		}
	}
	if b.RequireETag && id != "" {
		want := r.Header.Get("If-Match")
		if want == "" {
			return scimError(http.StatusPreconditionRequired, "", "this service provider requires If-Match on every change"), true
		}
		meta, _ := current["meta"].(map[string]any)
		version, _ := meta["version"].(string)
		if !etagMatches(want, version) {
			return scimError(http.StatusPreconditionFailed, "", fmt.Sprintf("resource %s is at version %s, not %s", id, version, want)), true
		}
	}
	if !b.Strict || r.Method == http.MethodDelete {
		return answer{}, false
	}
	core := scim.UserSchema
	if collection == "Groups" {
		core = scim.GroupSchema
	}
	idx, err := tg.declared(core, b.Undeclared)
	if err != nil {
		return scimError(http.StatusInternalServerError, "", err.Error()), true
	}
	var doc map[string]any
	if err := json.Unmarshal(body, &doc); err != nil || doc == nil {
		return scimError(http.StatusBadRequest, "invalidSyntax", "the body is not a JSON object"), true
	}
	if r.Method == http.MethodPatch {
		return checkPatch(idx, doc, current, id)
	}
	if err := checkDoc(idx, doc); err != nil {
		return scimError(http.StatusBadRequest, "invalidSyntax", err.Error()), true
	}
	return answer{}, false
}

// declared indexes what /Schemas declares after the Undeclared reduction.
func (tg *Target) declared(core string, undeclared []string) (scim.Index, error) {
	var list struct {
		Resources []scim.SchemaDocument `json:"Resources"`
	}
	if err := json.Unmarshal(reduceSchemas(tg.schemaDocs, undeclared), &list); err != nil {
		return nil, fmt.Errorf("targettest: /Schemas: %w", err)
	}
	return scim.IndexDocuments(core, list.Resources), nil
}

// checkDoc refuses an attribute (or sub-attribute) of a POST or PUT body that is not declared.
func checkDoc(idx scim.Index, doc map[string]any) error {
	for k, v := range doc {
		lk := strings.ToLower(k)
		switch lk {
		case "schemas", "id", "externalid", "meta":
			continue
		}
		if strings.HasPrefix(lk, "urn:") {
			attrs, ok := idx[lk]
			if !ok {
				return fmt.Errorf("schema %q is not declared by this service provider", k)
			}
			obj, ok := v.(map[string]any)
			if !ok {
				return fmt.Errorf("%q must be an object", k)
			}
			for sk, sv := range obj {
				a, ok := attrs[strings.ToLower(sk)]
				if !ok {
					return fmt.Errorf("attribute %q is not declared by this service provider", k+":"+sk)
				}
				if err := checkValue(a, sv, k+":"+sk); err != nil {
					return err
				}
			}
			continue
		}
		a, ok := idx[""][lk]
		if !ok {
			return fmt.Errorf("attribute %q is not declared by this service provider", k)
		}
		if err := checkValue(a, v, k); err != nil {
			return err
		}
	}
	return nil
}

// checkValue refuses undeclared sub-attributes inside a complex value (or each element of a
// multi-valued one).
func checkValue(a scim.Attribute, v any, path string) error {
	if len(a.Subs) == 0 {
		return nil
	}
	var objs []map[string]any
	switch v := v.(type) {
	case map[string]any:
		objs = append(objs, v)
	case []any:
		for _, el := range v {
			if m, ok := el.(map[string]any); ok {
				objs = append(objs, m)
			}
		}
	}
	for _, o := range objs {
		for k := range o {
			if _, ok := a.Subs[strings.ToLower(k)]; !ok {
				return fmt.Errorf("attribute %q is not declared by this service provider", path+"."+k)
			}
		}
	}
	return nil
}

// checkPatch applies the RFC 7644 §3.5.2 refusals a strict server makes, and the
// undeclared-attribute check, to a PATCH body.
func checkPatch(idx scim.Index, body, current scim.Doc, id string) (answer, bool) {
	ops, _ := getFold(body, "Operations").([]any)
	if len(ops) == 0 {
		return scimError(http.StatusBadRequest, "invalidSyntax", "a PATCH needs at least one operation"), true
	}
	for i, raw := range ops {
		op, ok := raw.(map[string]any)
		if !ok {
			return scimError(http.StatusBadRequest, "invalidSyntax", fmt.Sprintf("operation %d is not an object", i)), true
		}
		name, _ := getFold(op, "op").(string)
		kind := strings.ToLower(name)
		path, _ := getFold(op, "path").(string)
		value := getFold(op, "value")
		if kind != "add" && kind != "remove" && kind != "replace" {
			return scimError(http.StatusBadRequest, "invalidSyntax", fmt.Sprintf("operation %d: unknown op %q", i, name)), true
		}
		if path == "" {
			if kind == "remove" {
				return scimError(http.StatusBadRequest, "noTarget", fmt.Sprintf("operation %d: remove needs a path", i)), true
			}
			obj, ok := value.(map[string]any)
			if !ok {
				return scimError(http.StatusBadRequest, "invalidValue", fmt.Sprintf("operation %d: without a path the value must be an object", i)), true
			}
			for k, v := range obj {
				if strings.HasPrefix(strings.ToLower(k), "urn:") {
					if _, isExt := idx[strings.ToLower(k)]; isExt {
						if err := checkDoc(idx, map[string]any{k: v}); err != nil {
							return scimError(http.StatusBadRequest, "invalidSyntax", err.Error()), true
						}
						continue
					}
				}
				p, err := fp.ParsePath([]byte(k))
				if err != nil {
					return scimError(http.StatusBadRequest, "invalidPath", fmt.Sprintf("operation %d: path %q: %v", i, k, err)), true
				}
				if err := checkPath(idx, p, v); err != nil {
					return scimError(http.StatusBadRequest, "invalidSyntax", err.Error()), true
				}
			}
			continue
		}
		p, err := fp.ParsePath([]byte(path))
		if err != nil {
			return scimError(http.StatusBadRequest, "invalidPath", fmt.Sprintf("operation %d: path %q: %v", i, path, err)), true
		}
		if err := checkPath(idx, p, value); err != nil {
			return scimError(http.StatusBadRequest, "invalidSyntax", err.Error()), true
		}
		if kind == "replace" && p.ValueExpression != nil {
			attr := p.AttributePath
			attr.SubAttribute = nil
			vp := &fp.ValuePath{AttributePath: attr, ValueFilter: p.ValueExpression}
			if !(scim.Matcher{Index: idx}).Match(vp, current, &scim.Meta{ID: id}) {
				// RFC 7644 §3.5.2.3: a value filter that matches nothing is 400 noTarget
				return scimError(http.StatusBadRequest, "noTarget",
					fmt.Sprintf("operation %d: no value of %q matches the filter of %q", i, attr.AttributeName, path)), true
			}
		}
	}
	return answer{}, false
}

func checkPath(idx scim.Index, p fp.Path, value any) error {
	uri := p.AttributePath.URI()
	name := p.AttributePath.AttributeName
	if uri == "" && scim.IsCommonAttribute("", name) {
		return nil
	}
	attrs, ok := idx[strings.ToLower(uri)]
	if !ok {
		return fmt.Errorf("schema %q is not declared by this service provider", uri)
	}
	a, ok := attrs[strings.ToLower(name)]
	if !ok {
		return fmt.Errorf("attribute %q is not declared by this service provider", p.String())
	}
	sub := p.AttributePath.SubAttributeName()
	if p.SubAttribute != nil {
		sub = *p.SubAttribute
	}
	if sub != "" {
		if len(a.Subs) > 0 {
			if _, ok := a.Subs[strings.ToLower(sub)]; !ok {
				return fmt.Errorf("attribute %q is not declared by this service provider", p.String())
			}
		}
		return nil
	}
	return checkValue(a, value, name)
}

// reduceSchemas removes the undeclared attributes from a /Schemas answer (a ListResponse or
// one schema).
func reduceSchemas(body []byte, undeclared []string) []byte {
	if len(undeclared) == 0 {
		return body
	}
	var doc map[string]any
	if json.Unmarshal(body, &doc) != nil {
		return body
	}
	if list, ok := doc["Resources"].([]any); ok {
		for _, s := range list {
			if m, ok := s.(map[string]any); ok {
				reduceSchema(m, undeclared)
			}
		}
	} else {
		reduceSchema(doc, undeclared)
	}
	out, err := json.Marshal(doc)
	if err != nil {
		return body
	}
	return out
}

func reduceSchema(s map[string]any, undeclared []string) {
	id, _ := s["id"].(string)
	for _, u := range undeclared {
		urn, attr := scim.UserSchema, u
		if strings.HasPrefix(strings.ToLower(u), "urn:") {
			i := strings.LastIndexByte(u, ':')
			urn, attr = u[:i], u[i+1:]
		}
		if !strings.EqualFold(urn, id) {
			continue
		}
		name, sub, _ := strings.Cut(attr, ".")
		s["attributes"] = dropAttribute(s["attributes"], name, sub)
	}
}

func dropAttribute(v any, name, sub string) any {
	list, _ := v.([]any)
	out := make([]any, 0, len(list))
	for _, el := range list {
		m, ok := el.(map[string]any)
		if !ok {
			continue
		}
		if n, _ := m["name"].(string); strings.EqualFold(n, name) {
			if sub == "" {
				continue
			}
			m["subAttributes"] = dropAttribute(m["subAttributes"], sub, "")
		}
		out = append(out, m)
	}
	return out
}

// setMaxResultsZero makes /ServiceProviderConfig say filter.maxResults 0.
func setMaxResultsZero(body []byte) []byte {
	var doc map[string]any
	if json.Unmarshal(body, &doc) != nil {
		return body
	}
	doc["filter"] = map[string]any{"supported": true, "maxResults": 0}
	out, err := json.Marshal(doc)
	if err != nil {
		return body
	}
	return out
}

// setPatchUnsupported rewrites /ServiceProviderConfig to say patch.supported false.
func setPatchUnsupported(body []byte) []byte {
	var doc map[string]any
	if json.Unmarshal(body, &doc) != nil {
		return body
	}
	doc["patch"] = map[string]any{"supported": false}
	out, err := json.Marshal(doc)
	if err != nil {
		return body
	}
	return out
}

// etagMatches compares an If-Match list with the current version, weakly, "*" matching any.
func etagMatches(header, version string) bool {
	strip := func(s string) string { return strings.TrimPrefix(strings.TrimSpace(s), "W/") }
	for _, t := range strings.Split(header, ",") {
		if strings.TrimSpace(t) == "*" || (version != "" && strip(t) == strip(version)) {
			return true
		}
	}
	return false
}

func getFold(m map[string]any, key string) any {
	if v, ok := m[key]; ok {
		return v
	}
	for k, v := range m {
		if strings.EqualFold(k, key) {
			return v
		}
	}
	return nil
}

// usersOnlyInGroups rewrites a /Schemas answer so the Group schema's members take users only.
func usersOnlyInGroups(body []byte) []byte {
	var doc map[string]any
	if json.Unmarshal(body, &doc) != nil {
		return body
	}
	schemas, _ := doc["Resources"].([]any)
	if schemas == nil {
		schemas = []any{doc}
	}
	for _, s := range schemas {
		m, _ := s.(map[string]any)
		if id, _ := m["id"].(string); !strings.EqualFold(id, scim.GroupSchema) {
			continue
		}
		attrs, _ := m["attributes"].([]any)
		for _, a := range attrs {
			am, _ := a.(map[string]any)
			if name, _ := am["name"].(string); !strings.EqualFold(name, "members") {
				continue
			}
			subs, _ := am["subAttributes"].([]any)
			for _, sa := range subs {
				sm, _ := sa.(map[string]any)
				switch name, _ := sm["name"].(string); strings.ToLower(name) {
				case "type":
					sm["canonicalValues"] = []any{"User"}
				case "$ref":
					sm["referenceTypes"] = []any{"User"}
				}
			}
		}
	}
	out, err := json.Marshal(doc)
	if err != nil {
		return body
	}
	return out
}

// groupAsMember reports whether a group write (POST, PUT or PATCH body) names a member that is
// a group on this target.
func (tg *Target) groupAsMember(body []byte) bool {
	var doc struct {
		Members    []map[string]any `json:"members"`
		Operations []struct {
			Value any `json:"value"`
		} `json:"Operations"`
	}
	if json.Unmarshal(body, &doc) != nil {
		return false
	}
	members := doc.Members
	for _, op := range doc.Operations {
		list, _ := op.Value.([]any)
		for _, el := range list {
			if m, ok := el.(map[string]any); ok {
				members = append(members, m)
			}
		}
	}
	for _, m := range members {
		if t, _ := m["type"].(string); strings.EqualFold(t, "Group") {
			return true
		}
		if v, _ := m["value"].(string); v != "" && tg.inner(http.MethodGet, "/Groups/"+url.PathEscape(v), nil, nil).status == http.StatusOK {
			return true
		}
	}
	return false
}
