package scimserver

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
)

func readAll(r *http.Request) (io.ReadCloser, error) {
	if r.Body == nil {
		return http.NoBody, nil
	}
	data, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	return io.NopCloser(bytes.NewReader(data)), nil
}

// bufferedResponse captures what elimity writes so fixResponse can correct it.
type bufferedResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (b *bufferedResponse) Header() http.Header { return b.header }
func (b *bufferedResponse) WriteHeader(code int) {
	if b.status == 0 {
		b.status = code
	}
}
func (b *bufferedResponse) Write(p []byte) (int, error) {
	if b.status == 0 {
		b.status = http.StatusOK // elimity relies on the implicit 200
	}
	return b.body.Write(p)
}

// fixResponse closes the gaps of the pinned elimity commit in its responses: meta.location
// made absolute, a Location header on 201, itemsPerPage equal to the resources returned, a
// truthful /ServiceProviderConfig (we do support ETags), and 304 for a matching If-None-Match.
func (s *Server) fixResponse(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := &bufferedResponse{header: w.Header()}
		next.ServeHTTP(buf, r)
		status := buf.status
		if status == 0 {
			status = http.StatusOK
		}
		body := buf.body.Bytes()
		if status < 300 && len(body) > 0 {
			if fixed, location, ok := s.rewrite(r, body); ok {
				body = fixed
				if status == http.StatusCreated && location != "" {
					w.Header().Set("Location", location)
				}
			}
		}
		if etag := w.Header().Get("Etag"); etag != "" {
			w.Header().Del("Etag")
			w.Header().Set("ETag", etag)
			if r.Method == http.MethodGet && status == http.StatusOK && etagMatches(r.Header.Get("If-None-Match"), etag) {
				w.WriteHeader(http.StatusNotModified)
				return
			}
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(status)
		_, _ = w.Write(body)
	})
}

func (s *Server) baseURL(r *http.Request) string {
	if s.cfg.BaseURL != "" {
		return strings.TrimSuffix(s.cfg.BaseURL, "/")
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + "/scim/v2"
}

func (s *Server) rewrite(r *http.Request, body []byte) ([]byte, string, bool) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		return nil, "", false
	}
	base := s.baseURL(r)
	location := absolutize(doc, base)
	if list, ok := doc["Resources"].([]any); ok {
		doc["itemsPerPage"] = len(list)
		for _, el := range list {
			if m, ok := el.(map[string]any); ok {
				absolutize(m, base)
			}
		}
	}
	if strings.HasSuffix(r.URL.Path, "/ServiceProviderConfig") {
		doc["etag"] = map[string]any{"supported": true}
		doc["filter"] = map[string]any{"supported": true, "maxResults": s.cfg.MaxResults}
	}
	out, err := json.Marshal(doc)
	if err != nil {
		return nil, "", false
	}
	return out, location, true
}

// absolutize turns meta.location "Users/ID" into base + "/Users/ID" and returns it.
func absolutize(doc map[string]any, base string) string {
	meta, ok := doc["meta"].(map[string]any)
	if !ok {
		return ""
	}
	loc, _ := meta["location"].(string)
	if loc == "" || strings.Contains(loc, "://") {
		return loc
	}
	loc = base + "/" + strings.TrimPrefix(loc, "/")
	meta["location"] = loc
	return loc
}
