package scimclient

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors a caller branches on with errors.Is.
var (
	// ErrCircuitOpen: the target failed too many calls in a row, or asked to be left alone for
	// longer than target.max_retry_after; the client refuses every further call this run. The
	// engine stops dispatching; what was written so far is recorded as usual.
	ErrCircuitOpen = errors.New("target unavailable for the rest of the run")
	// ErrUntrustedListing: a listing or search came back in a shape that cannot be complete
	// (repeated ids, an ignored startIndex, more resources than totalResults, a page that makes
	// no progress, more resources than the caller's cap). Acting on it could re-create users
	// that exist, so the listing fails instead of succeeding short.
	ErrUntrustedListing = errors.New("the target's listing cannot be trusted")
	// ErrRedirectRefused: the target redirected to another origin (scheme, host or port), or
	// redirected a write in a way that cannot be repeated safely. The bearer token is never
	// sent to another origin.
	ErrRedirectRefused = errors.New("redirect refused")
	// ErrOutcomeUnknown: a create may or may not have happened (the connection failed after the
	// request was sent, a gateway answered 5xx, or the target answered 201 without the
	// resource or a Location we may follow). It is not retried, so no duplicate is made; look
	// the resource up before trying again.
	ErrOutcomeUnknown = errors.New("outcome unknown")
	// ErrWrongResource: the target answered a request about one resource with another (GET,
	// PATCH or PUT of id A returned id B). Nothing about B may be recorded as being A.
	ErrWrongResource = errors.New("the target answered with another resource")
)

// APIError is a non-success answer from the target. ScimType and Detail come from the target:
// they are sanitised (one line, no control characters, bounded) and stripped of every known
// secret before the error exists, so printing, logging or storing it is safe.
type APIError struct {
	Method, Path string
	Status       int
	ScimType     string
	Detail       string
}

func (e *APIError) Error() string {
	s := fmt.Sprintf("scim: %s %s: HTTP %d", e.Method, e.Path, e.Status)
	if e.ScimType != "" {
		s += " " + e.ScimType
	}
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

// IsStatus reports whether err is an APIError with status code.
func IsStatus(err error, code int) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Status == code
}

// maxErrorBody bounds how much of an error answer is read.
const maxErrorBody = 64 << 10

// parseErrorBody reads a target's error answer: a SCIM error ({"scimType", "detail"}, status as
// a string or a number), the shapes other APIs use ("message", "error_description", "error",
// SCIM 1.1 "Errors"), or, when it is not JSON, the text itself (an HTML error page from a proxy
// says more than nothing). The result is raw and unbounded (the body is, by maxErrorBody):
// callers redact it whole and only then bound it, so a cut never splits a secret into a
// prefix that no longer matches it.
func parseErrorBody(body []byte) (scimType, detail string) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return "", ""
	}
	var doc map[string]any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil || doc == nil {
		return "", string(body)
	}
	if s, ok := getFold(doc, "scimType").(string); ok {
		scimType = s
	}
	for _, k := range []string{"detail", "message", "error_description", "error", "title", "description"} {
		if d := textOf(getFold(doc, k)); d != "" {
			return scimType, d
		}
	}
	if list, ok := getFold(doc, "Errors").([]any); ok && len(list) > 0 {
		if m, ok := list[0].(map[string]any); ok {
			for _, k := range []string{"description", "detail", "message"} {
				if d := textOf(getFold(m, k)); d != "" {
					return scimType, d
				}
			}
		}
	}
	return scimType, ""
}

// textOf renders a JSON value as text: a string as is, anything else as compact JSON.
func textOf(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return string(raw)
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
