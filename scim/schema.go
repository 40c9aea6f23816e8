package scim

import (
	"slices"
	"strings"

	"github.com/elimity-com/scim/optional"
	"github.com/elimity-com/scim/schema"
)

// URNs of the schemas scimsync speaks.
const (
	UserSchema       = "urn:ietf:params:scim:schemas:core:2.0:User"
	GroupSchema      = "urn:ietf:params:scim:schemas:core:2.0:Group"
	EnterpriseSchema = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
	ScimsyncSchema   = "urn:ietf:params:scim:schemas:extension:scimsync:2.0:User"
	PatchOpSchema    = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
	ListSchema       = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
	ErrorSchema      = "urn:ietf:params:scim:api:messages:2.0:Error"
)

// Management modes carried by the scimsync extension.
const (
	ModeDefault = "DEFAULT"
	ModeCMS     = "CMS"
)

// commonAttributes are id, externalId and meta as filterable attributes. elimity validates
// filters against the resource schema only, and these are not in its core schemas, so
// `externalId eq "…"` (Entra's existence check) would be refused with 400 without them.
// schema.CommonAttributes() is unusable at the pinned commit (its id is required on POST).
func commonAttributes() []schema.CoreAttribute {
	return []schema.CoreAttribute{
		schema.SimpleCoreAttribute(schema.SimpleStringParams(schema.StringParams{Name: "id", CaseExact: true,
			Mutability: schema.AttributeMutabilityReadOnly(), Returned: schema.AttributeReturnedAlways(),
			Uniqueness: schema.AttributeUniquenessServer()})),
		schema.SimpleCoreAttribute(schema.SimpleStringParams(schema.StringParams{Name: "externalId", CaseExact: true})),
		schema.ComplexCoreAttribute(schema.ComplexParams{Name: "meta", Mutability: schema.AttributeMutabilityReadOnly(),
			SubAttributes: []schema.SimpleParams{
				schema.SimpleDateTimeParams(schema.DateTimeParams{Name: "created", Mutability: schema.AttributeMutabilityReadOnly()}),
				schema.SimpleDateTimeParams(schema.DateTimeParams{Name: "lastModified", Mutability: schema.AttributeMutabilityReadOnly()}),
			}}),
	}
}

// UserResourceSchema and GroupResourceSchema return attribute slices clipped to their length: elimity appends
// externalId to the resource schema's slice on every POST and PUT, and with spare capacity those
// appends would all write into one shared backing array (a data race under concurrent IdP
// requests, caught by TestConcurrentWriters with -race).
func UserResourceSchema() schema.Schema {
	s := schema.CoreUserSchema()
	s.Attributes = slices.Clip(append(s.Attributes, commonAttributes()...))
	return s
}

// GroupResourceSchema is the core Group schema plus the common attributes.
func GroupResourceSchema() schema.Schema {
	s := schema.CoreGroupSchema()
	s.Attributes = slices.Clip(append(s.Attributes, commonAttributes()...))
	return s
}

// ScimsyncExtension is scimsync's own User extension: where the user lives in the directory and
// who manages it.
func ScimsyncExtension() schema.Schema {
	return schema.Schema{
		ID:          ScimsyncSchema,
		Name:        optional.NewString("ScimsyncUser"),
		Description: optional.NewString("Directory origin and ownership of a user synced by scimsync"),
		Attributes: []schema.CoreAttribute{
			schema.SimpleCoreAttribute(schema.SimpleStringParams(schema.StringParams{Name: "ldapUserDN",
				Description: optional.NewString("Distinguished name of the user's entry in the source directory")})),
			schema.SimpleCoreAttribute(schema.SimpleStringParams(schema.StringParams{Name: "managementMode",
				CanonicalValues: []string{ModeDefault, ModeCMS},
				Description:     optional.NewString("DEFAULT: the sync manages the user; CMS: hands off, managed elsewhere")})),
			schema.SimpleCoreAttribute(schema.SimpleStringParams(schema.StringParams{Name: "description",
				Description: optional.NewString("Free-text description from the directory (e.g. Cloudomation's description)")})),
		},
	}
}

// Attribute is what the model needs to know about one attribute: its canonical name, shape and
// comparison rules.
type Attribute struct {
	Name       string
	Type       string // string, boolean, dateTime, complex, …
	Multi      bool
	CaseExact  bool
	Required   bool
	Mutability string               // readWrite, readOnly, immutable, writeOnly
	Returned   string               // always, default, request, never
	Subs       map[string]Attribute // lower-cased sub-attribute name -> info
	// Canonical and ReferenceTypes are the declared canonicalValues and referenceTypes, when a
	// target's /Schemas names them (nil otherwise: any value).
	Canonical      []string
	ReferenceTypes []string
}

// Index maps lower-cased attribute names to their info, per schema URN ("" = core).
type Index map[string]map[string]Attribute

// NewIndex indexes a resource's core schema and its extensions.
func NewIndex(core schema.Schema, exts ...schema.Schema) Index {
	idx := Index{"": indexAttributes(core.Attributes)}
	idx[strings.ToLower(core.ID)] = idx[""]
	for _, e := range exts {
		idx[strings.ToLower(e.ID)] = indexAttributes(e.Attributes)
	}
	return idx
}

func indexAttributes(attrs schema.Attributes) map[string]Attribute {
	out := make(map[string]Attribute, len(attrs))
	for _, a := range attrs {
		info := Attribute{Name: a.Name(), Type: a.AttributeType(), Multi: a.MultiValued(), CaseExact: a.CaseExact(),
			Required: a.Required(), Mutability: a.Mutability(), Returned: a.Returned()}
		if a.HasSubAttributes() {
			info.Subs = indexAttributes(a.SubAttributes())
		}
		out[strings.ToLower(a.Name())] = info
	}
	return out
}

// Lookup resolves (uri, name) to the attribute's info and the key under which its value is
// stored: extension attributes live in a nested map under their URN.
func (idx Index) Lookup(uri, name string) (ext string, info Attribute, ok bool) {
	u := strings.ToLower(uri)
	attrs, found := idx[u]
	if !found {
		return "", Attribute{}, false
	}
	info, ok = attrs[strings.ToLower(name)]
	if u != "" && !IsCoreURN(u) {
		ext = canonicalURN(u)
	}
	return ext, info, ok
}

// IsExtension reports whether key names one of the index's extension schemas.
func (idx Index) IsExtension(key string) bool {
	l := strings.ToLower(key)
	_, ok := idx[l]
	return ok && l != "" && !IsCoreURN(l)
}

// IsCoreURN reports whether lower (a lower-cased URN) is the core User or Group schema.
func IsCoreURN(lower string) bool {
	return lower == strings.ToLower(UserSchema) || lower == strings.ToLower(GroupSchema)
}

func canonicalURN(lower string) string {
	for _, u := range []string{EnterpriseSchema, ScimsyncSchema, UserSchema, GroupSchema} {
		if strings.ToLower(u) == lower {
			return u
		}
	}
	return lower
}

// UserIndex indexes the User resource as the built-in server serves it: core, enterprise and
// scimsync's extension.
func UserIndex() Index {
	return NewIndex(UserResourceSchema(), schema.ExtensionEnterpriseUser(), ScimsyncExtension())
}

// GroupIndex indexes the Group resource.
func GroupIndex() Index { return NewIndex(GroupResourceSchema()) }
