package targettest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"

	"github.com/scimsync/scimsync/scim"
)

// hugeTotal is what ListHugeTotal claims.
const hugeTotal = 1_000_000_000

// maxPage bounds every page the misbehaving listings make up.
const maxPage = 1000

// list answers an unfiltered listing of rel ("/Users" or "/Groups") as b.List says.
func (tg *Target) list(r *http.Request, b Behaviour, rel string) answer {
	q := r.URL.Query()
	start := atLeast(q.Get("startIndex"), 1, 1)
	count := min(atLeast(q.Get("count"), 0, 200), maxPage)
	all, err := tg.all(rel)
	if err != nil {
		return scimError(http.StatusInternalServerError, "", err.Error())
	}
	pageOf := func(from int) []scim.Doc {
		lo := min(from-1, len(all))
		return all[lo:min(lo+count, len(all))]
	}
	switch b.List {
	case ListEmpty:
		return listAnswer(0, start, nil)
	case ListIgnoreStartIndex:
		return listAnswer(len(all), 1, pageOf(1))
	case ListRepeatFirstPage:
		return listAnswer(len(all), start, pageOf(1))
	case ListEmptyPageWithMore:
		if start == 1 {
			return listAnswer(len(all), start, pageOf(1))
		}
		return listAnswer(len(all), start, nil)
	case ListHugeTotal:
		return listAnswer(hugeTotal, start, pageOf(1))
	case ListEndless:
		page := make([]scim.Doc, 0, max(count, 1))
		tg.mu.Lock()
		for range max(count, 1) {
			tg.endless++
			n := tg.endless
			page = append(page, scim.Doc{"schemas": []string{scim.UserSchema}, "id": fmt.Sprintf("endless-%d", n),
				"userName": fmt.Sprintf("endless-%d", n), "meta": map[string]any{"resourceType": "User", "version": `W/"1"`}})
		}
		tg.mu.Unlock()
		return listAnswer(start+len(page)+count, start, page)
	case ListZeroItems:
		a := listAnswer(len(all), start, nil)
		return a
	case ListShortTotal:
		p := pageOf(start)
		return listAnswer(len(pageOf(1)), start, p)
	}
	return listAnswer(len(all), start, pageOf(start))
}

func listAnswer(total, start int, resources []scim.Doc) answer {
	if resources == nil {
		resources = []scim.Doc{}
	}
	doc := map[string]any{"schemas": []string{scim.ListSchema}, "totalResults": total, "startIndex": start,
		"itemsPerPage": len(resources), "Resources": resources}
	raw, err := json.Marshal(doc)
	if err != nil {
		return scimError(http.StatusInternalServerError, "", err.Error())
	}
	h := http.Header{}
	h.Set("Content-Type", "application/scim+json")
	return answer{status: http.StatusOK, header: h, body: raw}
}

// atLeast reads a query number, def when absent or unreadable, never below lo.
func atLeast(s string, lo, def int) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return def
	}
	return max(n, lo)
}
