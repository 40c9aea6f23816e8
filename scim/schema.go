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

// userSchema and groupSchema return attribute slices clipped to their length: elimity appends
// externalId to the resource schema's slice on every POST and PUT, and with spare capacity those
// appends would all write into one shared backing array (a data race under concurrent IdP
// requests, caught by TestConcurrentWriters with -race).
func userSchema() schema.Schema {
	s := schema.CoreUserSchema()
	s.Attributes = slices.Clip(append(s.Attributes, commonAttributes()...))
	return s
}

func groupSchema() schema.Schema {
	s := schema.CoreGroupSchema()
	s.Attributes = slices.Clip(append(s.Attributes, commonAttributes()...))
	return s
}

// scimsyncExtension is scimsync's own User extension: where the user lives in the directory and
// who manages it.
func scimsyncExtension() schema.Schema {
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

// attrInfo is what the store needs to know about one attribute: its canonical name, shape and
// comparison rules.
type attrInfo struct {
	name      string
	typ       string // string, boolean, dateTime, complex, …
	multi     bool
	caseExact bool
	subs      map[string]attrInfo // lower-cased sub-attribute name -> info
}

// schemaIndex maps lower-cased attribute names to their info, per schema URN ("" = core).
type schemaIndex map[string]map[string]attrInfo

func newSchemaIndex(core schema.Schema, exts ...schema.Schema) schemaIndex {
	idx := schemaIndex{"": indexAttributes(core.Attributes)}
	idx[strings.ToLower(core.ID)] = idx[""]
	for _, e := range exts {
		idx[strings.ToLower(e.ID)] = indexAttributes(e.Attributes)
	}
	return idx
}

func indexAttributes(attrs schema.Attributes) map[string]attrInfo {
	out := make(map[string]attrInfo, len(attrs))
	for _, a := range attrs {
		info := attrInfo{name: a.Name(), typ: a.AttributeType(), multi: a.MultiValued(), caseExact: a.CaseExact()}
		if a.HasSubAttributes() {
			info.subs = indexAttributes(a.SubAttributes())
		}
		out[strings.ToLower(a.Name())] = info
	}
	return out
}

// lookup resolves (uri, name) to the attribute's info and the key under which its value is
// stored: extension attributes live in a nested map under their URN.
func (idx schemaIndex) lookup(uri, name string) (ext string, info attrInfo, ok bool) {
	u := strings.ToLower(uri)
	attrs, found := idx[u]
	if !found {
		return "", attrInfo{}, false
	}
	info, ok = attrs[strings.ToLower(name)]
	if u != "" && !isCoreURN(u) {
		ext = canonicalURN(u)
	}
	return ext, info, ok
}

func isCoreURN(lower string) bool {
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
