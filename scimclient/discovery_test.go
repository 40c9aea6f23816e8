package scimclient

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// recordedTarget serves the discovery documents recorded in dir (a file per document; a
// missing file is a 404) on 127.0.0.1, and counts the requests per path.
type recordedTarget struct {
	base  string
	mu    sync.Mutex
	count map[string]int
}

func serveRecorded(t *testing.T, dir string) *recordedTarget {
	t.Helper()
	rt := &recordedTarget{count: map[string]int{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := filepath.Base(r.URL.Path)
		rt.mu.Lock()
		rt.count[name]++
		rt.mu.Unlock()
		data, err := os.ReadFile(filepath.Join(dir, name+".json"))
		if err != nil {
			http.Error(w, `{"status":"404","detail":"not served"}`, http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/scim+json")
		_, _ = w.Write(data)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	rt.base = "http://" + ln.Addr().String() + "/scim/v2"
	return rt
}

func (rt *recordedTarget) requests(name string) int {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.count[name]
}

// recordedSets are the recorded discovery documents under testdata/discovery: the built-in
// server's, the strict test target's (PUT only, title and the scimsync description
// undeclared, groups of users only), lenient hand-written ones (strings for booleans and
// numbers, a bare array, absolute and relative endpoints), a target serving only
// /ServiceProviderConfig, and one answering /ResourceTypes with an HTML page.
func recordedSets(t *testing.T) []string {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join("testdata", "discovery", "*"))
	if err != nil || len(dirs) < 5 {
		t.Fatalf("recorded discovery documents: %v %v", dirs, err)
	}
	return dirs
}

// unusableResourceTypes are the sets whose /ResourceTypes is absent or unreadable: core
// attributes only, and /Schemas is never asked for.
var unusableResourceTypes = map[string]bool{"core-only": true, "unreadable-resourcetypes": true}

// capsJSON is the pinned form of what discovery learned.
func capsJSON(t *testing.T, caps Capabilities) []byte {
	t.Helper()
	raw, err := json.MarshalIndent(caps, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	return append(raw, '\n')
}

// TestDiscoverRecordedDocuments pins what Discover learns from each recorded set (the golden
// files were written by Discover before it was split into fetching and reading).
// UPDATE_GOLDEN=1 rewrites them after an intended change.
func TestDiscoverRecordedDocuments(t *testing.T) {
	for _, dir := range recordedSets(t) {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			rt := serveRecorded(t, dir)
			c, _ := testClient(t, rt.base)
			caps, err := c.Discover(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			got := capsJSON(t, caps)
			golden := filepath.Join(dir, "capabilities.golden")
			if os.Getenv("UPDATE_GOLDEN") != "" {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("capabilities changed (UPDATE_GOLDEN=1 to accept):\n%s", got)
			}
			if int(c.maxResults.Load()) != caps.MaxResults {
				t.Errorf("the client pages by %d, the target said %d", c.maxResults.Load(), caps.MaxResults)
			}
			if unusableResourceTypes[filepath.Base(dir)] && rt.requests("Schemas") != 0 {
				t.Errorf("/Schemas asked for after an unusable /ResourceTypes")
			}
		})
	}
}
