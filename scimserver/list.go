package scimserver

import (
	"bytes"
	"net/http"
	"strconv"
	"strings"
	gosync "sync"

	fp "github.com/scim2/filter-parser/v2"

	"github.com/scimsync/scimsync/scim"
	"github.com/scimsync/scimsync/state"
)

// snapshots recycles the slices list requests copy the creation order into.
var snapshots = gosync.Pool{New: func() any { s := make([]*record, 0, 1024); return &s }}

func intParam(v string, def int, name string) (int, error) {
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil {
		return 0, scim.InvalidValue("%s must be an integer, got %q", name, truncate(v, 40))
	}
	return n, nil
}

// list answers GET /Users and /Groups (RFC 7644 §3.4.2): filter, startIndex, count,
// attributes and excludedAttributes, in creation order.
func (s *Server) list(w http.ResponseWriter, r *http.Request, kind state.Kind) {
	q := r.URL.Query()
	start, err := intParam(q.Get("startIndex"), 1, "startIndex")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	count, err := intParam(q.Get("count"), s.cfg.MaxResults, "count")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	start = max(start, 1)
	count = min(max(count, 0), s.cfg.MaxResults)
	proj := projectionOf(q)
	if n := len(proj.include) + len(proj.exclude); n > 256 {
		s.fail(w, r, scim.InvalidValue("attributes and excludedAttributes name %d attributes; at most 256", n))
		return
	}

	var page []*record
	total := 0
	take := func(rec *record) {
		total++
		if total >= start && len(page) < count {
			page = append(page, rec)
		}
	}
	f := strings.TrimSpace(q.Get("filter"))
	if f == "" {
		buf := snapshots.Get().(*[]*record)
		all := s.store.snapshot(kind, (*buf)[:0])
		total = len(all)
		if start <= total {
			page = append(page, all[start-1:min(total, start-1+count)]...)
		}
		clear(all)
		*buf = all[:0]
		snapshots.Put(buf)
	} else {
		e, err := s.parseFilter(kind, f)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if err := s.scan(r, kind, e, take); err != nil {
			s.fail(w, r, err)
			return
		}
	}

	var out bytes.Buffer
	out.WriteString(`{"schemas":["`)
	out.WriteString(scim.ListSchema)
	out.WriteString(`"],"totalResults":`)
	out.WriteString(strconv.Itoa(total))
	out.WriteString(`,"itemsPerPage":`)
	out.WriteString(strconv.Itoa(len(page)))
	out.WriteString(`,"startIndex":`)
	out.WriteString(strconv.Itoa(start))
	out.WriteString(`,"Resources":[`)
	for i, rec := range page {
		if i > 0 {
			out.WriteByte(',')
		}
		s.appendResource(&out, kind, rec, proj)
	}
	out.WriteString(`]}`)
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Length", strconv.Itoa(out.Len()))
	_, _ = w.Write(out.Bytes())
}

// scan calls take with every resource matching e, in creation order. The IdPs' lookups
// (userName, externalId, id eq) are answered from indexes; filters over the precomputed values
// scan without decoding; anything else decodes each resource, one such scan at a time.
func (s *Server) scan(r *http.Request, kind state.Kind, e fp.Expression, take func(*record)) error {
	var candidates []*record
	indexed := false
	if ae, ok := e.(*fp.AttributeExpression); ok && ae.Operator == fp.EQ && ae.AttributePath.SubAttribute == nil {
		if v, isStr := ae.CompareValue.(string); isStr {
			uri := ae.AttributePath.URI()
			if uri == "" || scim.IsCoreURN(strings.ToLower(uri)) {
				switch name := strings.ToLower(ae.AttributePath.AttributeName); {
				case name == "id":
					candidates, indexed = nonNil(s.store.get(kind, v)), true
				case name == "username" && kind == state.KindUser:
					candidates, indexed = nonNil(s.store.userByName(scim.FoldKey(v))), true
				case name == "externalid" && kind == state.KindUser:
					candidates, indexed = s.store.usersByExternalID(v), true
				}
			}
		}
	}
	pred, fast := compileFast(kind, e)
	if !fast {
		select {
		case s.slowScans <- struct{}{}:
			defer func() { <-s.slowScans }()
		case <-r.Context().Done():
			return r.Context().Err()
		}
		pred = func(rec *record) bool { return s.slowMatch(kind, e, rec) }
	}
	if indexed {
		for _, rec := range candidates {
			if pred(rec) {
				take(rec)
			}
		}
		return nil
	}
	buf := snapshots.Get().(*[]*record)
	all := s.store.snapshot(kind, (*buf)[:0])
	for i, rec := range all {
		if i%1024 == 0 && r.Context().Err() != nil {
			break
		}
		if pred(rec) {
			take(rec)
		}
	}
	clear(all)
	*buf = all[:0]
	snapshots.Put(buf)
	return r.Context().Err()
}

func nonNil(r *record) []*record {
	if r == nil {
		return nil
	}
	return []*record{r}
}
