package scimserver

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"

	"github.com/elimity-com/scim/schema"

	"github.com/scimsync/scimsync/scim"
	"github.com/scimsync/scimsync/state"
)

// serveDiscovery answers /ServiceProviderConfig, /ResourceTypes and /Schemas (RFC 7644 §4).
// Query parameters are ignored there, as §4 allows: these documents are small and fixed.
func (s *Server) serveDiscovery(w http.ResponseWriter, seg []string) {
	var doc any
	switch seg[0] {
	case "ServiceProviderConfig":
		if len(seg) > 1 {
			notFound(w, "endpoint")
			return
		}
		doc = s.serviceProviderConfig()
	case "ResourceTypes":
		all := []map[string]any{s.resourceTypeDoc(state.KindUser), s.resourceTypeDoc(state.KindGroup)}
		if len(seg) == 1 {
			doc = listDoc(all)
			break
		}
		name, _ := url.PathUnescape(seg[1])
		for _, rt := range all {
			if rt["id"] == name {
				doc = rt
			}
		}
		if doc == nil {
			notFound(w, "resource type "+strconv.Quote(name))
			return
		}
	case "Schemas":
		var all []map[string]any
		for _, sc := range s.schemas() {
			all = append(all, s.schemaDoc(sc))
		}
		if len(seg) == 1 {
			doc = listDoc(all)
			break
		}
		id, _ := url.PathUnescape(seg[1])
		for _, sd := range all {
			if sd["id"] == id {
				doc = sd
			}
		}
		if doc == nil {
			notFound(w, "schema "+strconv.Quote(id))
			return
		}
	}
	raw, _ := json.Marshal(doc)
	w.Header().Set("Content-Type", contentType)
	_, _ = w.Write(raw)
}

func listDoc[T any](items []T) map[string]any {
	return map[string]any{"schemas": []string{scim.ListSchema}, "totalResults": len(items),
		"itemsPerPage": len(items), "startIndex": 1, "Resources": items}
}

func (s *Server) serviceProviderConfig() map[string]any {
	return map[string]any{
		"schemas":          []string{"urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"},
		"documentationUri": "https://github.com/scimsync/scimsync#scim-server",
		"patch":            map[string]any{"supported": true},
		"bulk":             map[string]any{"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
		"filter":           map[string]any{"supported": true, "maxResults": s.cfg.MaxResults},
		"changePassword":   map[string]any{"supported": false},
		"sort":             map[string]any{"supported": false},
		"etag":             map[string]any{"supported": true},
		"authenticationSchemes": []map[string]any{{
			"type": "oauthbearertoken", "name": "OAuth Bearer Token", "primary": true,
			"description": "A bearer token from the server.tokens config section, one per identity provider",
		}},
		"meta": map[string]any{"resourceType": "ServiceProviderConfig", "location": s.base + "/ServiceProviderConfig"},
	}
}

func (s *Server) resourceTypeDoc(kind state.Kind) map[string]any {
	rt := s.types[kind]
	exts := []map[string]any{}
	for _, e := range rt.extensions {
		exts = append(exts, map[string]any{"schema": e.ID, "required": false})
	}
	return map[string]any{
		"schemas": []string{"urn:ietf:params:scim:schemas:core:2.0:ResourceType"},
		"id":      rt.name, "name": rt.name, "endpoint": rt.endpoint, "description": rt.desc,
		"schema":           rt.core.ID,
		"schemaExtensions": exts,
		"meta":             map[string]any{"resourceType": "ResourceType", "location": s.base + "/ResourceTypes/" + rt.name},
	}
}

func (s *Server) schemas() []schema.Schema {
	u, g := s.types[state.KindUser], s.types[state.KindGroup]
	return append([]schema.Schema{u.core, g.core}, u.extensions...)
}

func (s *Server) schemaDoc(sc schema.Schema) map[string]any {
	doc := sc.ToMap()
	doc["schemas"] = []string{"urn:ietf:params:scim:schemas:core:2.0:Schema"}
	doc["meta"] = map[string]any{"resourceType": "Schema", "location": s.base + "/Schemas/" + sc.ID}
	return doc
}
