package scimclient

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"

	"go.uber.org/zap"

	"github.com/scimsync/scimsync/config"
	"github.com/scimsync/scimsync/scimclient/targettest"
)

// BenchmarkListWith lists 2,000 users in pages of 200 from the built-in server behind the test
// target: "checked" is ListWith (every page checked, ids remembered, one request past the
// end); "baseline" is the bare loop the client used to run (GET, decode, follow startIndex).
// Both include the server's own work, which dominates.
func BenchmarkListWith(b *testing.B) {
	tg := targettest.Start(b)
	for i := range 2000 {
		tg.CreateUser(userBody(fmt.Sprintf("user%04d", i), fmt.Sprintf("ext-%04d", i)))
	}
	cfg := DefaultTargetConfig()
	cfg.URL, cfg.Token, cfg.RequestsPerSecond = tg.URL, config.NewSecret(tg.Token), 0
	c, err := NewClient(cfg, zap.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	b.Run("baseline", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			n := 0
			for start := 1; ; {
				req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("%s/Users?startIndex=%d&count=200", tg.URL, start), nil)
				req.Header.Set("Authorization", "Bearer "+tg.Token)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				var page struct {
					TotalResults int   `json:"totalResults"`
					Resources    []Doc `json:"Resources"`
				}
				err = json.NewDecoder(resp.Body).Decode(&page)
				resp.Body.Close()
				if err != nil {
					b.Fatal(err)
				}
				n += len(page.Resources)
				start += len(page.Resources)
				if len(page.Resources) == 0 || start > page.TotalResults {
					break
				}
			}
			if n != 2000 {
				b.Fatal(n)
			}
		}
	})
	b.Run("checked", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			n := 0
			if err := c.ListWith(context.Background(), Users, ListOptions{MaxResources: 3000}, func(Resource) error { n++; return nil }); err != nil || n != 2000 {
				b.Fatalf("%d %v", n, err)
			}
		}
	})
}
