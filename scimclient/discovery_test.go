package scimclient

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
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

// TestDiscoverySplitReadsAsDiscover: the documents FetchDiscovery keeps, stored (Encode) and
// read back (DecodeDiscovery), give exactly what Discover learned from the target; so do the
// recorded files read directly, an unreadable /ResourceTypes counting as not served.
func TestDiscoverySplitReadsAsDiscover(t *testing.T) {
	for _, dir := range recordedSets(t) {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			want, err := os.ReadFile(filepath.Join(dir, "capabilities.golden"))
			if err != nil {
				t.Fatal(err)
			}
			rt := serveRecorded(t, dir)
			c, _ := testClient(t, rt.base)
			d, err := c.FetchDiscovery(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			wantGETs := 3
			if unusableResourceTypes[filepath.Base(dir)] {
				wantGETs = 2
				if d.ResourceTypes != nil || d.Schemas != nil {
					t.Fatalf("an unusable /ResourceTypes is kept: %q %q", d.ResourceTypes, d.Schemas)
				}
			}
			if got := c.Stats().Requests; got != int64(wantGETs) {
				t.Fatalf("%d requests, want %d", got, wantGETs)
			}
			if c.maxResults.Load() != 0 {
				t.Fatal("fetching alone changed how the client pages")
			}
			raw, err := d.Encode()
			if err != nil {
				t.Fatal(err)
			}
			kept, err := DecodeDiscovery(raw)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(kept.ServiceProviderConfig, d.ServiceProviderConfig) || !bytes.Equal(kept.ResourceTypes, d.ResourceTypes) ||
				!bytes.Equal(kept.Schemas, d.Schemas) || (kept.ResourceTypes == nil) != (d.ResourceTypes == nil) || (kept.Schemas == nil) != (d.Schemas == nil) {
				t.Fatalf("stored documents differ from the fetched ones")
			}
			caps, err := kept.Capabilities()
			if err != nil {
				t.Fatal(err)
			}
			if got := capsJSON(t, caps); !bytes.Equal(got, want) {
				t.Errorf("stored documents read differently from Discover:\n%s", got)
			}
			fresh, _ := testClient(t, rt.base)
			fresh.Use(caps)
			if int(fresh.maxResults.Load()) != caps.MaxResults || fresh.Stats().Requests != 0 {
				t.Errorf("Use: pages by %d (want %d) after %d requests", fresh.maxResults.Load(), caps.MaxResults, fresh.Stats().Requests)
			}

			files := Discovery{}
			for _, f := range []struct {
				name string
				to   *[]byte
			}{{"ServiceProviderConfig", &files.ServiceProviderConfig}, {"ResourceTypes", &files.ResourceTypes}, {"Schemas", &files.Schemas}} {
				if data, err := os.ReadFile(filepath.Join(dir, f.name+".json")); err == nil {
					*f.to = data
				}
			}
			caps, err = files.Capabilities()
			if err != nil {
				t.Fatal(err)
			}
			if got := capsJSON(t, caps); !bytes.Equal(got, want) {
				t.Errorf("the recorded files read differently from Discover:\n%s", got)
			}
		})
	}
}

func TestDiscoveryFailuresAndStoredForms(t *testing.T) {
	// an unreadable /ServiceProviderConfig fails at once: nothing more is asked
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "ServiceProviderConfig.json"), []byte(`["not","an","object"]`), 0o644); err != nil {
		t.Fatal(err)
	}
	rt := serveRecorded(t, dir)
	c, _ := testClient(t, rt.base)
	if _, err := c.FetchDiscovery(context.Background()); err == nil || !strings.Contains(err.Error(), "GET /ServiceProviderConfig") ||
		c.Stats().Requests != 1 {
		t.Fatalf("unreadable /ServiceProviderConfig: %v after %d requests", err, c.Stats().Requests)
	}
	if _, err := (Discovery{ServiceProviderConfig: []byte("{")}).Capabilities(); err == nil {
		t.Fatal("an unreadable stored /ServiceProviderConfig read")
	}
	// /Schemas without /ResourceTypes is never read
	caps, err := Discovery{ServiceProviderConfig: []byte(`{}`), Schemas: []byte(`[{"id":"x"}]`)}.Capabilities()
	if err != nil || caps.Schemas != nil || len(caps.Extensions) != 0 {
		t.Fatalf("%+v %v", caps, err)
	}
	for _, bad := range []string{``, `null`, `{}`, `{"format":2,"serviceProviderConfig":"e30="}`, `{"format":1}`,
		`{"format":1,"serviceProviderConfig":"not base64!"}`, `[1]`} {
		if _, err := DecodeDiscovery([]byte(bad)); err == nil {
			t.Errorf("DecodeDiscovery(%s) accepted", bad)
		}
	}
	// an empty document stays apart from one not served
	d := Discovery{ServiceProviderConfig: []byte(`{}`), ResourceTypes: []byte{}}
	raw, _ := d.Encode()
	back, err := DecodeDiscovery(raw)
	if err != nil || back.ResourceTypes == nil || back.Schemas != nil || d.Size() != 2 {
		t.Fatalf("%s -> %+v %v", raw, back, err)
	}
}

func FuzzDecodeDiscovery(f *testing.F) {
	d := Discovery{ServiceProviderConfig: []byte(`{"patch":{"supported":true}}`), ResourceTypes: []byte(`[{"name":"User"}]`),
		Schemas: []byte(`[{"id":"urn:ietf:params:scim:schemas:core:2.0:User","attributes":[{"name":"userName"}]}]`)}
	raw, _ := d.Encode()
	f.Add(raw)
	f.Add([]byte(`{"format":1,"serviceProviderConfig":"e30=","resourceTypes":null,"schemas":"W10="}`))
	f.Add([]byte(`{"format":1,"serviceProviderConfig":"` + strings.Repeat("W", 4000) + `"}`))
	f.Add([]byte(strings.Repeat(`{"format":`, 5000)))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := DecodeDiscovery(data)
		if err != nil {
			return
		}
		if d.ServiceProviderConfig == nil || (d.ResourceTypes == nil && d.Schemas != nil) {
			t.Fatalf("decoded %+v", d)
		}
		caps, err := d.Capabilities()
		if err == nil && (caps.MaxResults < 0 || caps.Extensions == nil) {
			t.Fatalf("capabilities %+v", caps)
		}
		raw, err := d.Encode()
		if err != nil {
			t.Fatal(err)
		}
		again, err := DecodeDiscovery(raw)
		if err != nil || !bytes.Equal(again.ServiceProviderConfig, d.ServiceProviderConfig) || !bytes.Equal(again.ResourceTypes, d.ResourceTypes) ||
			!bytes.Equal(again.Schemas, d.Schemas) || (again.ResourceTypes == nil) != (d.ResourceTypes == nil) {
			t.Fatalf("round trip: %+v -> %+v %v", d, again, err)
		}
	})
}

// FuzzDiscoveryCapabilities reads arbitrary documents: only an unreadable
// /ServiceProviderConfig fails, and what is read is what Discover's parsers allow.
func FuzzDiscoveryCapabilities(f *testing.F) {
	for _, dir := range []string{"scimserver", "lenient"} {
		var docs [3][]byte
		for i, name := range []string{"ServiceProviderConfig", "ResourceTypes", "Schemas"} {
			docs[i], _ = os.ReadFile(filepath.Join("testdata", "discovery", dir, name+".json"))
		}
		f.Add(docs[0], docs[1], docs[2])
	}
	f.Add([]byte(`{"filter":{"maxResults":"-5"}}`), []byte(strings.Repeat("[", 20000)), []byte(`{"totalResults":1}`))
	f.Fuzz(func(t *testing.T, spc, rts, schemas []byte) {
		caps, err := Discovery{ServiceProviderConfig: spc, ResourceTypes: rts, Schemas: schemas}.Capabilities()
		if _, perr := parseServiceProviderConfig(spc); (err != nil) != (perr != nil) {
			t.Fatalf("Capabilities %v, the parser %v", err, perr)
		}
		if err != nil {
			return
		}
		if caps.MaxResults < 0 || caps.Extensions == nil {
			t.Fatalf("%+v", caps)
		}
		if g := caps.Groups; g != nil && (g.Endpoint == "" || strings.Contains(string(g.Endpoint[1:]), "/")) {
			t.Fatalf("group endpoint %q", g.Endpoint)
		}
		if _, rerr := parseResourceTypes(rts); rerr != nil && (len(caps.Extensions) != 0 || caps.Groups != nil || caps.Schemas != nil) {
			t.Fatalf("an unreadable /ResourceTypes was read: %+v", caps)
		}
	})
}
