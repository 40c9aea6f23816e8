package sync

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strconv"

	"github.com/scimsync/scimsync/scim"
	"github.com/scimsync/scimsync/scimclient"
)

// payload is what one run sends to the target: the mapping keys the target declares, decided
// once from discovery, and the values, documents and operations built from them.
type payload struct {
	keys       []string        // mapping keys sent, with externalId, active and ldapUserDN
	managed    []scim.AttrPath // the paths of keys: what Diff may change
	extensions map[string]bool // extension URNs listed in a created user's schemas
	pathOf     map[string]scim.AttrPath
}

// newPayload decides what may be sent. A mapped attribute the target does not declare (a whole
// extension, or one attribute of a declared extension, as /Schemas tells) is left out with a
// warning that names the mapping key: sending it would be refused on every run. A profile's
// forced extensions are sent whatever the target says.
func newPayload(m *Mapping, caps scimclient.Capabilities) (payload, []string) {
	forced := map[string]bool{}
	for _, e := range m.profile.ForceExtensions {
		forced[e] = true
	}
	declares := func(p scim.AttrPath) bool {
		if forced[p.Ext] {
			return true
		}
		sub := p.Sub
		return caps.Declares(p.Ext, p.Attr, sub)
	}
	p := payload{extensions: map[string]bool{}, pathOf: map[string]scim.AttrPath{}}
	var warnings []string
	add := func(key string) {
		p.keys = append(p.keys, key)
		p.managed = append(p.managed, paths[key])
		p.pathOf[key] = paths[key]
		if e := paths[key].Ext; e != "" {
			p.extensions[e] = true
		}
	}
	add(keyExternalID)
	add(keyActive)
	if declares(paths[keyDN]) {
		add(keyDN)
	}
	for _, f := range m.fields {
		path := paths[f.key]
		if !declares(path) {
			what := path.Ext
			if path.Ext == "" || caps.Extensions[path.Ext] || forced[path.Ext] {
				what = path.String()
			}
			warnings = append(warnings, fmt.Sprintf("mapping %s is not sent: the target does not declare %s", f.key, what))
			continue
		}
		add(f.key)
	}
	if forced[scim.ScimsyncSchema] || caps.Extensions[scim.ScimsyncSchema] {
		p.extensions[scim.ScimsyncSchema] = true
	}
	return p, warnings
}

// sends reports whether key is sent.
func (p payload) sends(key string) bool {
	_, ok := p.pathOf[key]
	return ok
}

// values returns the value of every sent key for d: its mapped values, its external id, DN
// and active flag. Keys without a value are absent: they are removed from the target.
func (p payload) values(d Desired) map[string]string {
	out := map[string]string{keyExternalID: d.ExternalID, keyActive: strconv.FormatBool(d.Active)}
	if p.sends(keyDN) {
		out[keyDN] = d.DN
	}
	for k, v := range d.Values {
		if p.sends(k) && v != "" {
			out[k] = v
		}
	}
	return out
}

// want is values keyed by attribute path, for scim.Diff.
func (p payload) want(values map[string]string) scim.Values {
	out := scim.Values{}
	for k, v := range values {
		if path, ok := p.pathOf[k]; ok {
			out[path] = v
		}
	}
	return out
}

// read returns the target's value of every sent key (active reads "true" when absent).
func (p payload) read(doc scim.Doc) map[string]string {
	out := map[string]string{}
	for _, k := range p.keys {
		if v, _ := p.pathOf[k].Read(doc); v != "" {
			out[k] = v
		}
	}
	return out
}

// document builds the user a create sends.
func (p payload) document(values map[string]string) scim.Doc {
	doc := scim.Doc{}
	schemas := []any{scim.UserSchema}
	for _, ext := range []string{scim.EnterpriseSchema, scim.ScimsyncSchema} {
		if p.extensions[ext] {
			schemas = append(schemas, ext)
		}
	}
	doc["schemas"] = schemas
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if path, ok := p.pathOf[k]; ok {
			path.Set(doc, values[k])
		}
	}
	if p.extensions[scim.ScimsyncSchema] {
		ext, _ := doc[scim.ScimsyncSchema].(map[string]any)
		if ext == nil {
			ext = map[string]any{}
			doc[scim.ScimsyncSchema] = ext
		}
		ext["managementMode"] = scim.ModeDefault
	}
	return doc
}

// changes lists, key by key, what differs between the target's values and the wanted ones.
func (p payload) changes(have, want map[string]string) []Diff {
	var out []Diff
	for _, k := range p.keys {
		old, neu := have[k], want[k]
		if def := p.pathOf[k].Default; def != "" {
			old, neu = orDefault(old, def), orDefault(neu, def)
		}
		if old != neu {
			out = append(out, Diff{Attribute: k, Old: old, New: neu})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Attribute < out[j].Attribute })
	return out
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// hashValues fingerprints a user's sent values; links record the hash of what was last applied,
// and a full reconcile compares it with the target's.
func hashValues(values map[string]string) string {
	keys := make([]string, 0, len(values))
	for k, v := range values {
		if v != "" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	h := sha256.New()
	for _, k := range keys {
		fmt.Fprintf(h, "%s=%s\x00", k, values[k])
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}
