package scimclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"go.uber.org/zap"

	"github.com/scimsync/scimsync/scim"
)

// ResourceType is one resource type the target declares in /ResourceTypes.
type ResourceType struct {
	Name       string
	Endpoint   Endpoint
	Schema     string          // the core schema URN
	Extensions map[string]bool // extension URN -> required
}

// Capabilities is what discovery learned about the target.
type Capabilities struct {
	Patch bool // /ServiceProviderConfig patch.supported
	ETag  bool // etag.supported: every write carries If-Match
	// MaxResults is filter.maxResults, the largest page the target serves; 0 when it names
	// none (or names 0, which would make paging impossible and is ignored).
	MaxResults int
	// Extensions are the User resource type's extension URNs (all of them known when
	// /ResourceTypes could be read; none otherwise).
	Extensions map[string]bool
	// Groups is the Group resource type, nil when the target declares none.
	Groups *ResourceType
	// Schemas indexes the attributes each schema declares (scim.Index keys: lower-cased URN, and
	// "" for the User core schema); nil when /Schemas could not be read, in which case every
	// attribute of the core schema and of a declared extension counts as declared.
	Schemas scim.Index
}

// GroupMembersMayBeGroups reports whether the target's Group schema lets a group be a member
// of a group: true unless /Schemas declares members.type canonicalValues or members.$ref
// referenceTypes without "Group" (RFC 7643 §4.2 declares both with User and Group).
func (c Capabilities) GroupMembersMayBeGroups() bool {
	members, ok := c.Schemas[strings.ToLower(scim.GroupSchema)]["members"]
	if !ok {
		return true
	}
	lists := [][]string{members.Subs["type"].Canonical, members.Subs["$ref"].ReferenceTypes}
	for _, l := range lists {
		if len(l) > 0 && !slices.ContainsFunc(l, func(v string) bool { return strings.EqualFold(v, "Group") }) {
			return false
		}
	}
	return true
}

// Declares reports whether the target declares attribute attr (and sub-attribute sub, when not
// empty) of schema urn ("" or the core URN for core attributes).
func (c Capabilities) Declares(urn, attr, sub string) bool {
	if urn != "" && !scim.IsCoreURN(strings.ToLower(urn)) && !c.Extensions[urn] {
		return false
	}
	if c.Schemas == nil || scim.IsCommonAttribute(urn, attr) {
		return true
	}
	_, a, ok := c.Schemas.Lookup(urn, attr)
	if !ok {
		return false
	}
	if sub == "" || len(a.Subs) == 0 {
		return true
	}
	_, ok = a.Subs[strings.ToLower(sub)]
	return ok
}

// Discover reads /ServiceProviderConfig, /ResourceTypes and /Schemas: whether PATCH and ETags
// work, the largest page, which resource types and extensions exist, and which attributes each
// schema declares, so nothing undeclared is sent. It is FetchDiscovery, Capabilities and Use in
// one step; see FetchDiscovery for what counts as a document the target does not serve.
func (c *Client) Discover(ctx context.Context) (Capabilities, error) {
	d, err := c.FetchDiscovery(ctx)
	if err != nil {
		return Capabilities{}, err
	}
	caps, err := d.Capabilities()
	if err != nil {
		return Capabilities{}, err
	}
	c.Use(caps)
	return caps, nil
}

// Use makes the client page as caps says (filter.maxResults), for capabilities read from a
// Discovery kept from an earlier run instead of asked of the target by Discover.
func (c *Client) Use(caps Capabilities) { c.maxResults.Store(int64(caps.MaxResults)) }

// Discovery is the target's discovery documents as it served them, apart from what they mean,
// so that a caller can keep them (the sync keeps them in state between full reconciles) and
// read them again without asking the target: Capabilities reads them as Discover does.
type Discovery struct {
	// ServiceProviderConfig is the body of /ServiceProviderConfig (always there).
	ServiceProviderConfig []byte
	// ResourceTypes is the body of /ResourceTypes; nil when the target does not serve it
	// (then Schemas is nil too, and only core User attributes are sent).
	ResourceTypes []byte
	// Schemas is the body of /Schemas; nil when the target does not serve it (then every
	// attribute of the resource types' schemas counts as declared).
	Schemas []byte
}

// FetchDiscovery GETs /ServiceProviderConfig, /ResourceTypes and /Schemas. A target that
// answers /ResourceTypes with a 4xx (other than 401 and 429), a 501 or a document that is not
// a list of resources does not serve it: core attributes only, and /Schemas is not asked for.
// One that answers /Schemas so is trusted to accept every attribute of what /ResourceTypes
// declares. A 5xx, a network error or an open circuit is not taken for "absent": it fails
// discovery, so a passing outage cannot change what is sent. So does an unreadable
// /ServiceProviderConfig.
func (c *Client) FetchDiscovery(ctx context.Context) (Discovery, error) {
	var d Discovery
	data, err := c.getBody(ctx, "/ServiceProviderConfig")
	if err != nil {
		return Discovery{}, err
	}
	if _, err := parseServiceProviderConfig(data); err != nil {
		return Discovery{}, fmt.Errorf("scim: GET /ServiceProviderConfig: %w", err)
	}
	d.ServiceProviderConfig = data

	data, err = c.getBody(ctx, "/ResourceTypes")
	if err == nil {
		if _, err = parseResourceTypes(data); err != nil {
			err = fmt.Errorf("scim: GET /ResourceTypes: %w", err)
		}
	}
	if err != nil {
		if !absent(err) {
			return Discovery{}, err
		}
		// some targets serve no /ResourceTypes; then only the core schema is sent
		c.log.Warn("no usable /ResourceTypes; sending core User attributes only", zap.Error(err))
		return d, nil
	}
	d.ResourceTypes = data

	data, err = c.getBody(ctx, "/Schemas")
	if err == nil {
		if _, err = parseSchemas(data); err != nil {
			err = fmt.Errorf("scim: GET /Schemas: %w", err)
		}
	}
	if err != nil {
		if !absent(err) {
			return Discovery{}, err
		}
		c.log.Warn("no usable /Schemas; trusting /ResourceTypes for which attributes the target accepts", zap.Error(err))
		return d, nil
	}
	d.Schemas = data
	return d, nil
}

// Capabilities reads the documents. Only an unreadable /ServiceProviderConfig fails; a
// /ResourceTypes or /Schemas that does not read (FetchDiscovery keeps none such, but a stored
// copy may have been damaged) counts as not served, as FetchDiscovery would have decided.
func (d Discovery) Capabilities() (Capabilities, error) {
	spc, err := parseServiceProviderConfig(d.ServiceProviderConfig)
	if err != nil {
		return Capabilities{}, fmt.Errorf("scim: GET /ServiceProviderConfig: %w", err)
	}
	caps := Capabilities{Patch: spc.patch, ETag: spc.etag, MaxResults: spc.maxResults, Extensions: map[string]bool{}}
	if d.ResourceTypes == nil {
		return caps, nil
	}
	rts, err := parseResourceTypes(d.ResourceTypes)
	if err != nil {
		return caps, nil
	}
	caps.addResourceTypes(rts)
	if d.Schemas == nil {
		return caps, nil
	}
	if docs, err := parseSchemas(d.Schemas); err == nil {
		caps.Schemas = scim.IndexDocuments(scim.UserSchema, docs)
	}
	return caps, nil
}

// Size is the documents' length in bytes: what keeping them costs.
func (d Discovery) Size() int {
	return len(d.ServiceProviderConfig) + len(d.ResourceTypes) + len(d.Schemas)
}

// discoveryFormat is the version of Encode's output; DecodeDiscovery refuses any other.
const discoveryFormat = 1

// discoveryWire is Encode's shape. The documents are kept as they came ([]byte: base64), and
// a document not served is null, apart from an empty one.
type discoveryWire struct {
	Format                int    `json:"format"`
	ServiceProviderConfig []byte `json:"serviceProviderConfig"`
	ResourceTypes         []byte `json:"resourceTypes"`
	Schemas               []byte `json:"schemas"`
}

// Encode writes the documents as a versioned JSON value, for keeping them.
func (d Discovery) Encode() ([]byte, error) {
	return json.Marshal(discoveryWire{Format: discoveryFormat, ServiceProviderConfig: d.ServiceProviderConfig,
		ResourceTypes: d.ResourceTypes, Schemas: d.Schemas})
}

// DecodeDiscovery reads what Encode wrote.
func DecodeDiscovery(data []byte) (Discovery, error) {
	var w discoveryWire
	if err := json.Unmarshal(data, &w); err != nil {
		return Discovery{}, fmt.Errorf("scim: stored discovery: %w", err)
	}
	if w.Format != discoveryFormat {
		return Discovery{}, fmt.Errorf("scim: stored discovery: format %d, this build reads %d", w.Format, discoveryFormat)
	}
	if w.ServiceProviderConfig == nil {
		return Discovery{}, errors.New("scim: stored discovery: no /ServiceProviderConfig")
	}
	d := Discovery{ServiceProviderConfig: w.ServiceProviderConfig, ResourceTypes: w.ResourceTypes, Schemas: w.Schemas}
	if d.ResourceTypes == nil {
		d.Schemas = nil // no /Schemas is read without /ResourceTypes
	}
	return d, nil
}

func (caps *Capabilities) addResourceTypes(rts []resourceType) {
	for _, rt := range rts {
		switch {
		case strings.EqualFold(rt.name, "User") || rt.endpoint == Users:
			for urn := range rt.extensions {
				caps.Extensions[urn] = true
			}
		case strings.EqualFold(rt.name, "Group") || rt.endpoint == Groups:
			ep := rt.endpoint
			if ep == "" {
				ep = Groups // declared, but at a path we would not send the token to
			}
			caps.Groups = &ResourceType{Name: rt.name, Endpoint: ep, Schema: rt.schema, Extensions: rt.extensions}
		}
	}
}

// absent reports whether a discovery error means "the target does not serve this" (a 4xx other
// than 401 and 429, a 501, or an unreadable document) rather than "the target is failing".
func absent(err error) bool {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Status == http.StatusNotImplemented ||
			(ae.Status >= 400 && ae.Status < 500 && ae.Status != http.StatusUnauthorized && ae.Status != http.StatusTooManyRequests)
	}
	return errors.Is(err, errUnreadable)
}

// errUnreadable marks a discovery document that is not what it should be.
var errUnreadable = errors.New("unreadable document")

func (c *Client) getBody(ctx context.Context, path string) ([]byte, error) {
	resp, err := c.send(ctx, request{method: http.MethodGet, url: c.base + path}, "GET "+path)
	if err != nil {
		return nil, err
	}
	return resp.body, nil
}

type serviceProviderConfig struct {
	patch, etag bool
	maxResults  int
}

// parseServiceProviderConfig reads the three things the client needs, leniently: booleans may
// come as strings and numbers as strings, as some targets send them.
func parseServiceProviderConfig(data []byte) (serviceProviderConfig, error) {
	doc, err := decodeObject(data)
	if err != nil {
		return serviceProviderConfig{}, err
	}
	var spc serviceProviderConfig
	if m, ok := getFold(doc, "patch").(map[string]any); ok {
		spc.patch = boolOf(getFold(m, "supported"))
	}
	if m, ok := getFold(doc, "etag").(map[string]any); ok {
		spc.etag = boolOf(getFold(m, "supported"))
	}
	if m, ok := getFold(doc, "filter").(map[string]any); ok {
		if n, ok := intOf(getFold(m, "maxResults")); ok && n > 0 {
			spc.maxResults = int(min(n, math.MaxInt32))
		}
	}
	return spc, nil
}

type resourceType struct {
	name       string
	endpoint   Endpoint
	schema     string
	extensions map[string]bool // URN -> required
}

func parseResourceTypes(data []byte) ([]resourceType, error) {
	list, err := decodeResources(data)
	if err != nil {
		return nil, err
	}
	var out []resourceType
	for _, el := range list {
		m, ok := el.(map[string]any)
		if !ok {
			continue
		}
		rt := resourceType{name: strOf(getFold(m, "name")), schema: strOf(getFold(m, "schema")),
			endpoint: endpointOf(strOf(getFold(m, "endpoint"))), extensions: map[string]bool{}}
		exts, _ := getFold(m, "schemaExtensions").([]any)
		for _, e := range exts {
			em, ok := e.(map[string]any)
			if !ok {
				continue
			}
			if urn := strOf(getFold(em, "schema")); urn != "" {
				rt.extensions[urn] = boolOf(getFold(em, "required"))
			}
		}
		out = append(out, rt)
	}
	return out, nil
}

// endpointOf turns a declared endpoint ("/Groups", "Groups", or an absolute URL) into a path
// below the base URL: its last segment, kept only when it is a plain name.
func endpointOf(s string) Endpoint {
	s = strings.TrimSpace(s)
	if u, err := url.Parse(s); err == nil && u.Scheme != "" {
		s = u.Path
	}
	s = strings.Trim(s, "/")
	if i := strings.LastIndexByte(s, '/'); i >= 0 {
		s = s[i+1:]
	}
	if s == "" || strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.')
	}) >= 0 || s == "." || s == ".." {
		return ""
	}
	return Endpoint("/" + s)
}

func parseSchemas(data []byte) ([]scim.SchemaDocument, error) {
	list, err := decodeResources(data)
	if err != nil {
		return nil, err
	}
	var out []scim.SchemaDocument
	for _, el := range list {
		m, ok := el.(map[string]any)
		if !ok {
			continue
		}
		id := strOf(getFold(m, "id"))
		if id == "" {
			continue
		}
		attrs, _ := getFold(m, "attributes").([]any)
		out = append(out, scim.SchemaDocument{ID: id, Attributes: attributeDocs(attrs, 0)})
	}
	return out, nil
}

func attributeDocs(list []any, depth int) []scim.AttributeDocument {
	if depth > 3 {
		return nil // SCIM nests one level; deeper is noise
	}
	out := make([]scim.AttributeDocument, 0, len(list))
	for _, el := range list {
		m, ok := el.(map[string]any)
		if !ok {
			continue
		}
		name := strOf(getFold(m, "name"))
		if name == "" {
			continue
		}
		subs, _ := getFold(m, "subAttributes").([]any)
		out = append(out, scim.AttributeDocument{Name: name, Type: strOf(getFold(m, "type")),
			MultiValued: boolOf(getFold(m, "multiValued")), CaseExact: boolOf(getFold(m, "caseExact")),
			SubAttributes:   attributeDocs(subs, depth+1),
			CanonicalValues: stringsOf(getFold(m, "canonicalValues")), ReferenceTypes: stringsOf(getFold(m, "referenceTypes"))})
	}
	return out
}

// stringsOf is a JSON array's string elements (at most 100: a schema names a few).
func stringsOf(v any) []string {
	list, _ := v.([]any)
	var out []string
	for _, el := range list {
		if s, ok := el.(string); ok && len(out) < 100 {
			out = append(out, s)
		}
	}
	return out
}

// decodeResources reads a ListResponse's Resources, or a bare array, as some targets serve
// /Schemas and /ResourceTypes.
func decodeResources(data []byte) ([]any, error) {
	v, err := decodeJSON(data)
	if err != nil {
		return nil, err
	}
	switch v := v.(type) {
	case []any:
		return v, nil
	case map[string]any:
		if list, ok := getFold(v, "Resources").([]any); ok {
			return list, nil
		}
		if getFold(v, "Resources") == nil && getFold(v, "totalResults") != nil {
			return nil, nil
		}
	}
	return nil, fmt.Errorf("%w: want a list of resources", errUnreadable)
}

func decodeObject(data []byte) (map[string]any, error) {
	v, err := decodeJSON(data)
	if err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: want a JSON object", errUnreadable)
	}
	return m, nil
}

func decodeJSON(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("%w: %v", errUnreadable, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: trailing data after the JSON value", errUnreadable)
	}
	return v, nil
}

// decodeDoc decodes one resource.
func decodeDoc(data []byte) (Doc, error) {
	m, err := decodeObject(data)
	if err != nil {
		return nil, err
	}
	return m, nil
}

func strOf(v any) string {
	s, _ := v.(string)
	return s
}

func boolOf(v any) bool {
	switch v := v.(type) {
	case bool:
		return v
	case string:
		return strings.EqualFold(strings.TrimSpace(v), "true")
	}
	return false
}

// intOf reads a whole number given as a JSON number (1000, 1e3) or a string of digits.
func intOf(v any) (int64, bool) {
	var s string
	switch v := v.(type) {
	case json.Number:
		s = v.String()
	case string:
		s = strings.TrimSpace(v)
	default:
		return 0, false
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n, true
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f != math.Trunc(f) {
		return 0, false
	}
	if f >= math.MaxInt64 {
		return math.MaxInt64, true
	}
	if f <= math.MinInt64 {
		return math.MinInt64, true
	}
	return int64(f), true
}
