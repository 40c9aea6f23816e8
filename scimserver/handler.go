package scimserver

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode"

	scimerr "github.com/elimity-com/scim/errors"
	"go.uber.org/zap"

	"github.com/scimsync/scimsync/scim"
	"github.com/scimsync/scimsync/state"
)

const contentType = "application/scim+json"

func writeError(w http.ResponseWriter, status int, scimType, detail string) {
	w.Header().Set("Content-Type", contentType)
	w.Header().Del("ETag")
	w.WriteHeader(status)
	body := map[string]any{"schemas": []string{scim.ErrorSchema}, "status": strconv.Itoa(status), "detail": detail}
	if scimType != "" {
		body["scimType"] = scimType
	}
	raw, _ := json.Marshal(body)
	_, _ = w.Write(raw)
}

// fail answers err: a SCIM error as it is, a limit with its key (and counted), anything else as
// a 500 whose details stay in the log.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	var le *limitError
	if errors.As(err, &le) {
		s.metrics.refused.WithLabelValues(le.key).Inc()
		s.log.Info("request refused by a limit", zap.String("who", caller(r)), zap.String("limit", le.key),
			zap.String("method", r.Method), zap.String("path", r.URL.Path))
		se := le.scim()
		writeError(w, se.Status, string(se.ScimType), se.Detail)
		return
	}
	var se scimerr.ScimError
	if errors.As(err, &se) && se.Status >= 400 && se.Status < 500 {
		writeError(w, se.Status, string(se.ScimType), se.Detail)
		return
	}
	if errors.Is(err, r.Context().Err()) && r.Context().Err() != nil {
		return // the client went away
	}
	s.log.Error("request failed", zap.String("who", caller(r)), zap.String("method", r.Method),
		zap.String("path", r.URL.Path), zap.Error(err))
	writeError(w, http.StatusInternalServerError, "", "internal error; the server log has the details")
}

// holdCurrent takes the write slot of resource id and checks it exists and matches the
// request's If-Match; when it does not, the answer is written and ok is false (nothing held).
func (s *Server) holdCurrent(w http.ResponseWriter, r *http.Request, kind state.Kind, id string) (cur *record, release func(), ok bool) {
	release, err := s.store.acquire(r.Context(), id)
	if err != nil {
		s.fail(w, r, err)
		return nil, nil, false
	}
	cur = s.store.get(kind, id)
	if cur == nil {
		release()
		notFound(w, s.types[kind].name+" "+strconv.Quote(id))
		return nil, nil, false
	}
	if err := checkIfMatch(r, cur); err != nil {
		release()
		s.fail(w, r, err)
		return nil, nil, false
	}
	return cur, release, true
}

func notFound(w http.ResponseWriter, what string) {
	writeError(w, http.StatusNotFound, "", what+" not found")
}

func methodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	writeError(w, http.StatusMethodNotAllowed, "", "method not allowed here; allowed: "+allow)
}

// serveSCIM routes an authenticated request under /scim/v2.
func (s *Server) serveSCIM(w http.ResponseWriter, r *http.Request) {
	p := strings.TrimPrefix(r.URL.Path, "/scim/v2")
	p = strings.TrimSuffix(p, "/")
	seg := strings.Split(strings.TrimPrefix(p, "/"), "/")
	if p == "" {
		notFound(w, "endpoint")
		return
	}
	if len(seg) > 2 {
		notFound(w, "endpoint")
		return
	}
	var kind state.Kind
	switch seg[0] {
	case "Users":
		kind = state.KindUser
	case "Groups":
		kind = state.KindGroup
	case "ServiceProviderConfig", "ResourceTypes", "Schemas":
		if r.Method != http.MethodGet {
			methodNotAllowed(w, "GET")
			return
		}
		s.serveDiscovery(w, seg)
		return
	case "Bulk", "Me", ".search":
		writeError(w, http.StatusNotImplemented, "", "/"+seg[0]+" is not supported by this server")
		return
	default:
		notFound(w, "endpoint")
		return
	}
	if len(seg) == 1 {
		switch r.Method {
		case http.MethodGet:
			s.list(w, r, kind)
		case http.MethodPost:
			s.create(w, r, kind)
		default:
			methodNotAllowed(w, "GET, POST")
		}
		return
	}
	id, err := url.PathUnescape(seg[1])
	if err != nil || id == "" {
		notFound(w, s.types[kind].name)
		return
	}
	if id == ".search" {
		writeError(w, http.StatusNotImplemented, "", "POST .search is not supported by this server; use GET with filter")
		return
	}
	switch r.Method {
	case http.MethodGet:
		s.get(w, r, kind, id)
	case http.MethodPut:
		s.replace(w, r, kind, id)
	case http.MethodPatch:
		s.patch(w, r, kind, id)
	case http.MethodDelete:
		s.delete(w, r, kind, id)
	default:
		methodNotAllowed(w, "GET, PUT, PATCH, DELETE")
	}
}

// readBody reads the request body within the limit for its kind: a Group write may carry many
// members, everything else is small. Bodies over max_body_bytes are read one at a time, which
// bounds the memory a burst of large requests can take.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request, kind state.Kind) ([]byte, error) {
	limit, key := s.cfg.MaxBodyBytes, "max_body_bytes"
	if kind == state.KindGroup {
		limit, key = s.cfg.MaxGroupBodyBytes, "max_group_body_bytes"
	}
	if r.ContentLength > limit {
		return nil, overLimit(key, http.StatusRequestEntityTooLarge, "request body of %d bytes is over %d", r.ContentLength, limit)
	}
	if r.ContentLength < 0 || r.ContentLength > s.cfg.MaxBodyBytes {
		select {
		case s.bigBodies <- struct{}{}:
			defer func() { <-s.bigBodies }()
		case <-r.Context().Done():
			return nil, r.Context().Err()
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, overLimit(key, http.StatusRequestEntityTooLarge, "request body is over %d bytes", limit)
		}
		return nil, scimerr.ScimError{ScimType: scimerr.ScimTypeInvalidSyntax, Status: 400, Detail: "could not read the request body"}
	}
	return body, nil
}

func invalidSyntax(format string, args ...any) error {
	return scimerr.ScimError{ScimType: scimerr.ScimTypeInvalidSyntax, Status: 400, Detail: fmt.Sprintf(format, args...)}
}

// decodeValue decodes one JSON value with numbers kept as json.Number (elimity's integer
// validation wants them so).
func decodeValue(raw []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

func decodeObject(body []byte) (map[string]any, error) {
	var m map[string]any
	if err := decodeValue(body, &m); err != nil || m == nil {
		return nil, invalidSyntax("the body must be one JSON object")
	}
	return m, nil
}

// checkSchemas enforces RFC 7643 §3: "schemas" lists the URIs of the schemas the
// representation uses; a URI the server does not know is 400 invalidValue, as is a body
// without the resource's core schema. The one exception is a schema Entra sends with every
// Group (its ADSCIM Group URN, which defines nothing a Group needs): it is accepted and ignored.
func (s *Server) checkSchemas(kind state.Kind, v any) error {
	list, ok := v.([]any)
	if !ok || len(list) == 0 {
		return scim.InvalidValue("schemas must be a non-empty list of schema URIs")
	}
	rt := s.types[kind]
	hasCore := false
	for _, el := range list {
		u, _ := el.(string)
		switch {
		case strings.EqualFold(u, rt.core.ID):
			hasCore = true
		case isExtensionOf(rt, u), toleratedSchema(kind, u):
		default:
			return scim.InvalidValue("schemas: %q is not a schema of the %s resource (known: %s)", u, rt.name, strings.Join(schemaIDs(rt), ", "))
		}
	}
	if !hasCore {
		return scim.InvalidValue("schemas must include %s", rt.core.ID)
	}
	return nil
}

func isExtensionOf(rt resourceType, u string) bool {
	for _, e := range rt.extensions {
		if strings.EqualFold(e.ID, u) {
			return true
		}
	}
	return false
}

func schemaIDs(rt resourceType) []string {
	ids := []string{rt.core.ID}
	for _, e := range rt.extensions {
		ids = append(ids, e.ID)
	}
	return ids
}

// entraGroupSchema is sent by Entra ID in every Group POST (see README "Microsoft Entra ID").
const entraGroupSchema = "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"

func toleratedSchema(kind state.Kind, u string) bool {
	return kind == state.KindGroup && strings.EqualFold(u, entraGroupSchema)
}

func hasControl(s string) bool { return strings.IndexFunc(s, unicode.IsControl) >= 0 }

// identity checks the strings that identify a resource: userName (or a Group's displayName)
// and externalId must be present where required, strings, and free of control characters (NUL,
// ESC, CR/LF …), which break logs, LDAP filters and the clients that display them.
func identity(attrs map[string]any, nameKey string, required bool) (string, error) {
	var name string
	for k, v := range attrs {
		switch {
		case strings.EqualFold(k, nameKey):
			s, ok := v.(string)
			if !ok && v != nil {
				return "", scim.InvalidValue("%s must be a string", nameKey)
			}
			name = s
		case strings.EqualFold(k, "externalId"):
			s, ok := v.(string)
			if !ok && v != nil {
				return "", scim.InvalidValue("externalId must be a string")
			}
			if hasControl(s) {
				return "", scim.InvalidValue("externalId %q contains a control character", s)
			}
		}
	}
	if required && strings.TrimSpace(name) == "" {
		return "", scim.InvalidValue("%s is required and must not be empty", nameKey)
	}
	if hasControl(name) {
		return "", scim.InvalidValue("%s %q contains a control character", nameKey, name)
	}
	return name, nil
}

// checkValueCounts bounds every multi-valued attribute of a User (top level and extensions).
func (s *Server) checkValueCounts(attrs map[string]any) error {
	for k, v := range attrs {
		switch v := v.(type) {
		case []any:
			if len(v) > s.cfg.MaxValuesPerAttribute {
				return overLimit("max_values_per_attribute", http.StatusBadRequest, "%s has %d values, over %d", k, len(v), s.cfg.MaxValuesPerAttribute)
			}
		case map[string]any:
			if strings.HasPrefix(strings.ToLower(k), "urn:") {
				if err := s.checkValueCounts(v); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// validate runs attributes through the schema (types, required, canonical names, read-only
// ones dropped) and enforces what the schema cannot say.
func (s *Server) validate(kind state.Kind, attrs map[string]any) (map[string]any, error) {
	rt := s.types[kind]
	core := map[string]any{}
	exts := map[string]map[string]any{}
	for k, v := range attrs {
		if !strings.HasPrefix(strings.ToLower(k), "urn:") {
			core[k] = v
			continue
		}
		found := false
		for _, e := range rt.extensions {
			if strings.EqualFold(e.ID, k) {
				m, ok := v.(map[string]any)
				if !ok && v != nil {
					return nil, scim.InvalidValue("%s must be an object", e.ID)
				}
				exts[e.ID] = m
				found = true
			}
		}
		if !found {
			return nil, scim.InvalidValue("%q is not an extension of the %s resource", k, rt.name)
		}
	}
	out, serr := rt.core.Validate(core)
	if serr != nil {
		return nil, *serr
	}
	for _, e := range rt.extensions {
		raw := exts[e.ID]
		if len(raw) == 0 {
			continue
		}
		v, serr := e.Validate(raw)
		if serr != nil {
			return nil, *serr
		}
		if len(v) > 0 {
			out[e.ID] = v
		}
	}
	delete(out, "groups")
	delete(out, "members")
	delete(out, "password")
	if kind == state.KindUser {
		ext, _ := out[scim.ScimsyncSchema].(map[string]any)
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
		out[scim.ScimsyncSchema] = ext
	}
	return out, nil
}

// build makes a record from validated attributes.
func (s *Server) build(kind state.Kind, attrs map[string]any, members []member) (*record, error) {
	raw, err := json.Marshal(attrs)
	if err != nil {
		return nil, fmt.Errorf("scim: encode attributes: %w", err)
	}
	r := &record{attrs: raw, members: members}
	if err := r.computeHot(kind); err != nil {
		return nil, err
	}
	return r, nil
}

// prepareUser turns a POST or PUT body into a record, the password into its hash (or nothing),
// and returns the userName for messages.
func (s *Server) prepareUser(r *http.Request, attrs map[string]any, prevHash string) (*record, string, error) {
	for k := range attrs {
		switch strings.ToLower(k) {
		case "id", "meta", "schemas", "groups":
			delete(attrs, k)
		}
	}
	hash, found, err := s.passwords.take(attrs, caller(r))
	if err != nil {
		return nil, "", scim.InvalidValue("%v", err)
	}
	if !found {
		hash = prevHash
	}
	s.idx[state.KindUser].ShapeAttributes(attrs)
	return s.userRecord(attrs, hash)
}

// userRecord checks a user's attributes (value counts, userName, schema) and builds its record
// with password hash hash; it returns the record and the userName.
func (s *Server) userRecord(attrs map[string]any, hash string) (*record, string, error) {
	if err := s.checkValueCounts(attrs); err != nil {
		return nil, "", err
	}
	name, err := identity(attrs, "userName", true)
	if err != nil {
		return nil, "", err
	}
	valid, err := s.validate(state.KindUser, attrs)
	if err != nil {
		return nil, "", err
	}
	rec, err := s.build(state.KindUser, valid, nil)
	if err != nil {
		return nil, "", err
	}
	rec.pwHash = hash
	return rec, name, nil
}

// memberIn is a member as clients send it; $ref is accepted (Entra sends null) and recomputed.
type memberIn struct {
	Value   string `json:"value"`
	Display string `json:"display"`
	Type    string `json:"type"`
	Ref     any    `json:"$ref"`
}

// toMembers checks members as a client sent them and returns them sorted, one per id.
func toMembers(in []memberIn) ([]member, error) {
	out, err := checkMembers(in)
	if err != nil {
		return nil, err
	}
	return sortMembers(out), nil
}

// checkMembers checks members as a client sent them, in their order.
func checkMembers(in []memberIn) ([]member, error) {
	out := make([]member, 0, len(in))
	for i, m := range in {
		c, problem := checkMember(m)
		if problem != "" {
			return nil, scim.InvalidValue("members[%d]: %s", i, problem)
		}
		out = append(out, c)
	}
	return out, nil
}

// checkMember checks one member as a client sent it, with its type's case normalised;
// problem says what is wrong with it, for the caller to say which member it is.
func checkMember(m memberIn) (c member, problem string) {
	if m.Value == "" {
		return member{}, "value (the member's id) is required"
	}
	if hasControl(m.Value) || hasControl(m.Display) {
		return member{}, "contains a control character"
	}
	typ := m.Type
	switch strings.ToLower(typ) {
	case "":
	case "user":
		typ = "User"
	case "group":
		typ = "Group"
	default:
		return member{}, fmt.Sprintf("type must be User or Group, got %q", m.Type)
	}
	return member{value: m.Value, display: m.Display, typ: typ}, ""
}

// splitGroupBody decodes a Group POST/PUT body: members into a compact typed form (a group can
// have 100,000 of them), the rest as a generic object.
func (s *Server) splitGroupBody(body []byte) (map[string]any, []member, bool, error) {
	var parts map[string]json.RawMessage
	if err := json.Unmarshal(body, &parts); err != nil || parts == nil {
		return nil, nil, false, invalidSyntax("the body must be one JSON object")
	}
	attrs := map[string]any{}
	var members []member
	hasMembers := false
	for k, raw := range parts {
		if strings.EqualFold(k, "members") {
			hasMembers = true
			var in []memberIn
			if string(bytes.TrimSpace(raw)) != "null" {
				if err := json.Unmarshal(raw, &in); err != nil {
					return nil, nil, false, scim.InvalidValue("members must be a list of {\"value\": id} objects")
				}
			}
			if len(in) > s.cfg.MaxMembersPerRequest {
				return nil, nil, false, overLimit("max_members_per_request", http.StatusRequestEntityTooLarge,
					"the request names %d members, over %d", len(in), s.cfg.MaxMembersPerRequest)
			}
			var err error
			if members, err = toMembers(in); err != nil {
				return nil, nil, false, err
			}
			continue
		}
		var v any
		if err := decodeValue(raw, &v); err != nil {
			return nil, nil, false, invalidSyntax("attribute %q: %v", k, err)
		}
		attrs[k] = v
	}
	if members == nil {
		members = []member{}
	}
	return attrs, members, hasMembers, nil
}

func (s *Server) prepareGroup(attrs map[string]any) (*record, error) {
	for k := range attrs {
		switch strings.ToLower(k) {
		case "id", "meta", "schemas", "members":
			delete(attrs, k)
		}
	}
	if _, err := identity(attrs, "displayName", true); err != nil {
		return nil, err
	}
	valid, err := s.validate(state.KindGroup, attrs)
	if err != nil {
		return nil, err
	}
	return s.build(state.KindGroup, valid, nil)
}

func (s *Server) logWrite(r *http.Request, op string, kind state.Kind, rec *record) {
	// Check first: the fields are not built when info is off
	if ce := s.log.Check(zap.InfoLevel, "write"); ce != nil {
		ce.Write(zap.String("who", caller(r)), zap.String("op", op),
			zap.String("type", s.types[kind].name), zap.String("id", rec.id), zap.Int("version", rec.version))
	}
}

func (s *Server) create(w http.ResponseWriter, r *http.Request, kind state.Kind) {
	body, err := s.readBody(w, r, kind)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var rec *record
	var name string
	if kind == state.KindUser {
		attrs, err := decodeObject(body)
		if err == nil {
			err = s.checkSchemas(kind, scim.GetFold(attrs, "schemas"))
		}
		if err == nil {
			rec, name, err = s.prepareUser(r, attrs, "")
		}
		if err != nil {
			s.fail(w, r, err)
			return
		}
	} else {
		attrs, members, _, err := s.splitGroupBody(body)
		if err == nil {
			err = s.checkSchemas(kind, scim.GetFold(attrs, "schemas"))
		}
		if err == nil {
			rec, err = s.prepareGroup(attrs)
		}
		if err != nil {
			s.fail(w, r, err)
			return
		}
		rec.members = members
	}
	rec.owner = caller(r)
	rec, err = s.store.create(r.Context(), kind, rec, name)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.logWrite(r, "create", kind, rec)
	w.Header().Set("Location", s.base+s.types[kind].endpoint+"/"+url.PathEscape(rec.id))
	s.respond(w, r, http.StatusCreated, kind, rec)
}

// respond writes one resource with its ETag.
func (s *Server) respond(w http.ResponseWriter, r *http.Request, status int, kind state.Kind, rec *record) {
	var buf bytes.Buffer
	buf.Grow(len(rec.attrs) + 512)
	s.appendResource(&buf, kind, rec, projectionOf(r.URL.Query()))
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("ETag", rec.etag())
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

func (s *Server) get(w http.ResponseWriter, r *http.Request, kind state.Kind, id string) {
	rec := s.store.get(kind, id)
	if rec == nil {
		notFound(w, s.types[kind].name+" "+strconv.Quote(id))
		return
	}
	if etagMatches(r.Header.Get("If-None-Match"), rec.etag()) {
		w.Header().Set("ETag", rec.etag())
		w.WriteHeader(http.StatusNotModified)
		return
	}
	s.respond(w, r, http.StatusOK, kind, rec)
}

// checkIfMatch enforces optimistic locking: a stale version gets 412.
func checkIfMatch(r *http.Request, cur *record) error {
	want := r.Header.Get("If-Match")
	if want == "" || etagMatches(want, cur.etag()) {
		return nil
	}
	return scimerr.ScimError{Status: http.StatusPreconditionFailed,
		Detail: fmt.Sprintf("resource %s is at version %s, not %s", cur.id, cur.etag(), want)}
}

// etagMatches compares a header list of tags with one tag, weakly (RFC 9110 §8.8.3.2).
func etagMatches(header, tag string) bool {
	if header == "" {
		return false
	}
	strip := func(s string) string { return strings.TrimPrefix(strings.TrimSpace(s), "W/") }
	for _, t := range strings.Split(header, ",") {
		if strings.TrimSpace(t) == "*" || strip(t) == strip(tag) {
			return true
		}
	}
	return false
}

func (s *Server) replace(w http.ResponseWriter, r *http.Request, kind state.Kind, id string) {
	body, err := s.readBody(w, r, kind)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var attrs map[string]any
	var members []member
	hasMembers := true
	if kind == state.KindUser {
		attrs, err = decodeObject(body)
	} else {
		attrs, members, hasMembers, err = s.splitGroupBody(body)
	}
	if err == nil {
		err = s.checkSchemas(kind, scim.GetFold(attrs, "schemas"))
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	cur, release, ok := s.holdCurrent(w, r, kind, id)
	if !ok {
		return
	}
	defer release()
	var next *record
	var name string
	if kind == state.KindUser {
		next, name, err = s.prepareUser(r, attrs, cur.pwHash)
	} else {
		next, err = s.prepareGroup(attrs)
		if err == nil {
			if !hasMembers {
				// RFC 7644 §3.5.1 replaces all attributes, but Okta PUTs a group without its
				// members to rename it; keeping them is what every IdP expects
				members = cur.members
			}
			next.members = members
		}
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if next, ok := s.publish(w, r, "replace", kind, cur, next, name); ok {
		s.respond(w, r, http.StatusOK, kind, next)
	}
}

// publish stores next in cur's place (the caller holds its slot) and logs the write as op;
// when it fails the error is answered and ok is false.
func (s *Server) publish(w http.ResponseWriter, r *http.Request, op string, kind state.Kind, cur, next *record, name string) (*record, bool) {
	next, err := s.store.update(r.Context(), kind, cur, next, name)
	if err != nil {
		s.fail(w, r, err)
		return nil, false
	}
	if next != cur {
		s.logWrite(r, op, kind, next)
	}
	return next, true
}

func (s *Server) delete(w http.ResponseWriter, r *http.Request, kind state.Kind, id string) {
	err := s.store.remove(r.Context(), kind, id, func(cur *record) error { return checkIfMatch(r, cur) })
	if err != nil {
		var se scimerr.ScimError
		if errors.As(err, &se) && se.Status == http.StatusNotFound {
			notFound(w, s.types[kind].name+" "+strconv.Quote(id))
			return
		}
		s.fail(w, r, err)
		return
	}
	s.log.Info("write", zap.String("who", caller(r)), zap.String("op", "delete"),
		zap.String("type", s.types[kind].name), zap.String("id", id))
	w.WriteHeader(http.StatusNoContent)
}
