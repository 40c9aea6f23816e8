package scim

import "strings"

// SchemaDocument is a schema as RFC 7643 §7 represents it in /Schemas: what a target declares.
type SchemaDocument struct {
	ID         string              `json:"id"`
	Attributes []AttributeDocument `json:"attributes"`
}

// AttributeDocument is one attribute definition of a SchemaDocument.
type AttributeDocument struct {
	Name          string              `json:"name"`
	Type          string              `json:"type"`
	MultiValued   bool                `json:"multiValued"`
	CaseExact     bool                `json:"caseExact"`
	SubAttributes []AttributeDocument `json:"subAttributes"`
	// CanonicalValues and ReferenceTypes say which values a member's type or $ref may take
	// (a target without nested groups declares "User" alone).
	CanonicalValues []string `json:"canonicalValues,omitempty"`
	ReferenceTypes  []string `json:"referenceTypes,omitempty"`
}

// IndexDocuments indexes the schemas a target declares, the same way NewIndex indexes ours, so
// one lookup answers "does it declare this attribute" for both. core (a resource type's core
// schema URN) is also indexed under "", where unprefixed attribute names are looked up.
func IndexDocuments(core string, docs []SchemaDocument) Index {
	idx := Index{}
	for _, d := range docs {
		if d.ID == "" {
			continue
		}
		attrs := indexDocuments(d.Attributes)
		idx[strings.ToLower(d.ID)] = attrs
		if strings.EqualFold(d.ID, core) {
			idx[""] = attrs
		}
	}
	if _, ok := idx[""]; !ok {
		idx[""] = map[string]Attribute{}
	}
	return idx
}

func indexDocuments(docs []AttributeDocument) map[string]Attribute {
	out := make(map[string]Attribute, len(docs))
	for _, d := range docs {
		a := Attribute{Name: d.Name, Type: d.Type, Multi: d.MultiValued, CaseExact: d.CaseExact,
			Canonical: d.CanonicalValues, ReferenceTypes: d.ReferenceTypes}
		if len(d.SubAttributes) > 0 {
			a.Subs = indexDocuments(d.SubAttributes)
		}
		out[strings.ToLower(d.Name)] = a
	}
	return out
}

// IsCommonAttribute reports whether attr of schema urn is one of RFC 7643 §3.1's common
// attributes (id, externalId, meta, schemas), which every resource has and no schema lists.
func IsCommonAttribute(urn, attr string) bool {
	if urn != "" && !IsCoreURN(strings.ToLower(urn)) {
		return false
	}
	switch strings.ToLower(attr) {
	case "id", "externalid", "meta", "schemas":
		return true
	}
	return false
}
