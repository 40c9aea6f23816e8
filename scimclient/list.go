package scimclient

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/scimsync/scimsync/scim"
)

// DefaultMaxResources bounds a listing whose caller names no cap.
const DefaultMaxResources = 1_000_000

// ListOptions bound a listing.
type ListOptions struct {
	// MaxResources fails the listing with ErrUntrustedListing as soon as the target reports or
	// sends more resources than this; 0 means DefaultMaxResources. Derive it from what is known
	// (e.g. the users state knows plus the directory's size, with headroom) so that a target
	// paging forever, or claiming 10^9 users, is stopped after one page.
	MaxResources int
}

// List pages through every resource of ep; see ListWith.
func (c *Client) List(ctx context.Context, ep Endpoint, fn func(Resource) error) error {
	return c.ListWith(ctx, ep, ListOptions{}, fn)
}

// ListWith pages through every resource of ep (startIndex and count, RFC 7644 §3.4.2.4) and
// hands each to fn as it arrives. It fails with ErrUntrustedListing, never succeeds short,
// when the pages cannot add up to a complete listing: a page without totalResults, a page
// that starts elsewhere than asked (startIndex ignored), an id seen twice (page 2 repeating
// page 1), more resources than totalResults, totalResults falling during the listing, an
// empty page while totalResults says more, or more resources than opts.MaxResources. The
// listing ends on an empty page, so a target whose totalResults undercounts is caught by the
// one request past the end. Each page must bring new ids, so the requests are bounded by
// the resources plus one, and memory by the ids seen.
func (c *Client) ListWith(ctx context.Context, ep Endpoint, opts ListOptions, fn func(Resource) error) error {
	limit := opts.MaxResources
	if limit <= 0 {
		limit = DefaultMaxResources
	}
	count := c.cfg.PageSize
	if m := int(c.maxResults.Load()); m > 0 && m < count {
		count = m
	}
	untrusted := func(format string, args ...any) error {
		return c.red.Error(fmt.Errorf("scim: list %s: %w: %s", ep, ErrUntrustedListing, fmt.Sprintf(format, args...)))
	}
	seen := make(map[string]struct{})
	total := -1
	for start := 1; ; {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("scim: list %s: %w", ep, err)
		}
		path := fmt.Sprintf("%s?startIndex=%d&count=%d", ep, start, count)
		resp, err := c.send(ctx, request{method: http.MethodGet, url: c.base + path}, "GET "+path)
		if err != nil {
			var ae *APIError
			if total >= 0 && len(seen) >= total && errors.As(err, &ae) &&
				(ae.Status == http.StatusBadRequest || ae.Status == http.StatusNotFound || ae.Status == http.StatusRequestedRangeNotSatisfiable) {
				return nil // a target that refuses a startIndex past the end: the listing was complete
			}
			return err
		}
		page, err := parseListPage(resp.body)
		switch {
		case err != nil:
			return untrusted("the page at startIndex %d: %v", start, err)
		case page.total < 0:
			return untrusted("the page at startIndex %d has no totalResults", start)
		case page.total > limit:
			return untrusted("the target reports %d resources, more than the %d this listing accepts", page.total, limit)
		case page.total < total:
			return untrusted("totalResults fell from %d to %d during the listing, so resources may have been skipped", total, page.total)
		case page.startIndex != 0 && page.startIndex != start:
			return untrusted("asked for startIndex %d, the page starts at %d: the target ignores startIndex", start, page.startIndex)
		case len(page.resources) == 0:
			if len(seen) < page.total {
				return untrusted("the page at startIndex %d is empty while totalResults is %d and %d were listed", start, page.total, len(seen))
			}
			return nil
		}
		for _, d := range page.resources {
			id, _ := d["id"].(string)
			if err := validID(id); err != nil {
				return untrusted("a resource at startIndex %d: %v", start, err)
			}
			if _, dup := seen[id]; dup {
				return untrusted("resource %q is listed twice (again at startIndex %d): the target ignores startIndex or reorders while paging", c.text(id, MaxTextLen), start)
			}
			seen[id] = struct{}{}
			switch {
			case len(seen) > page.total:
				return untrusted("more resources than the totalResults (%d) the target reports", page.total)
			case len(seen) > limit:
				return untrusted("more than the %d resources this listing accepts", limit)
			}
			if err := fn(Resource{Doc: d, ETag: metaVersion(d)}); err != nil {
				return err
			}
		}
		total = page.total
		start += len(page.resources)
	}
}

// listPage is one ListResponse.
type listPage struct {
	total      int // -1 when absent
	startIndex int // 0 when absent
	resources  []Doc
}

// parseListPage reads a ListResponse strictly enough to check paging: totalResults and
// startIndex as whole numbers (or numeric strings), every element of Resources an object.
func parseListPage(data []byte) (listPage, error) {
	var raw struct {
		TotalResults json.RawMessage   `json:"totalResults"`
		StartIndex   json.RawMessage   `json:"startIndex"`
		Resources    []json.RawMessage `json:"Resources"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return listPage{}, fmt.Errorf("not a ListResponse: %w", err)
	}
	page := listPage{total: -1}
	var err error
	if page.total, err = pageNumber(raw.TotalResults, "totalResults", -1); err != nil {
		return listPage{}, err
	}
	if page.startIndex, err = pageNumber(raw.StartIndex, "startIndex", 0); err != nil {
		return listPage{}, err
	}
	page.resources = make([]Doc, 0, len(raw.Resources))
	for i, r := range raw.Resources {
		d, err := decodeDoc(r)
		if err != nil {
			return listPage{}, fmt.Errorf("Resources[%d]: %w", i, err)
		}
		page.resources = append(page.resources, d)
	}
	return page, nil
}

// pageNumber reads a non-negative whole number; absent gives def.
func pageNumber(raw json.RawMessage, name string, def int) (int, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return def, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	n, ok := intOf(v)
	if !ok || n < 0 {
		return 0, fmt.Errorf("%s is not a whole number ≥ 0", name)
	}
	return int(min(n, 1<<53)), nil
}

// Find returns the resources of ep whose attr equals value (a `filter=attr eq "value"` query).
// Every resource returned must match the filter (compared case-insensitively, the most lenient
// reading): a target that ignores the filter and returns other users would otherwise make
// "not found" look like "found", or the reverse, so such an answer fails with
// ErrUntrustedListing.
func (c *Client) Find(ctx context.Context, ep Endpoint, attr, value string) ([]Resource, error) {
	filter := attr + " eq " + scim.FilterString(value)
	path := string(ep) + "?filter=" + url.QueryEscape(filter)
	resp, err := c.send(ctx, request{method: http.MethodGet, url: c.base + path}, "GET "+path)
	if err != nil {
		return nil, err
	}
	untrusted := func(format string, args ...any) error {
		return c.red.Error(fmt.Errorf("scim: find %s %s: %w: %s", ep, attr, ErrUntrustedListing, fmt.Sprintf(format, args...)))
	}
	page, err := parseListPage(resp.body)
	if err != nil {
		return nil, untrusted("%v", err)
	}
	if page.total >= 0 && page.total < len(page.resources) {
		return nil, untrusted("%d resources for a totalResults of %d", len(page.resources), page.total)
	}
	seen := map[string]bool{}
	out := make([]Resource, 0, len(page.resources))
	for _, d := range page.resources {
		id, _ := d["id"].(string)
		if err := validID(id); err != nil {
			return nil, untrusted("%v", err)
		}
		if seen[id] {
			return nil, untrusted("resource %q returned twice", c.text(id, MaxTextLen))
		}
		seen[id] = true
		if !holds(d, attr, value) {
			return nil, untrusted("resource %q does not match the filter: the target ignores filters", c.text(id, MaxTextLen))
		}
		out = append(out, Resource{Doc: d, ETag: metaVersion(d)})
	}
	return out, nil
}

// holds reports whether resource d has value at attr ("userName", "name.givenName",
// "emails.value", "urn:…:User:employeeNumber"), compared case-insensitively: the most lenient
// reading of an eq filter, so only an answer that cannot match is refused. The filter is not
// re-parsed here: the filter parser at hand keeps a string literal's escapes.
func holds(d Doc, attr, value string) bool {
	if strings.EqualFold(attr, "id") {
		id, _ := d["id"].(string)
		return strings.EqualFold(id, value)
	}
	obj := map[string]any(d)
	name := attr
	if i := strings.LastIndexByte(attr, ':'); i >= 0 {
		ext, _ := scim.GetFold(obj, attr[:i]).(map[string]any)
		obj, name = ext, attr[i+1:]
	}
	name, sub, _ := strings.Cut(name, ".")
	v := scim.GetFold(obj, name)
	vals, multi := v.([]any)
	if !multi {
		vals = []any{v}
	}
	for _, el := range vals {
		if sub != "" || multi {
			m, _ := el.(map[string]any)
			el = scim.GetFold(m, cmp.Or(sub, "value"))
		}
		if s, ok := el.(string); ok && strings.EqualFold(s, value) {
			return true
		}
	}
	return false
}
