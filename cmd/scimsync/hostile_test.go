package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	gosync "sync"
	"syscall"
	"testing"
	"time"
)

const hostileToken = "hostile-token-0123456789"

// serveForTest writes a serve config (with extra server keys) and starts `scimsync serve`.
func serveForTest(t *testing.T, dir, extra string) (*proc, string, string) {
	t.Helper()
	addr := freeAddr(t)
	cfgPath := filepath.Join(dir, "serve.yaml")
	cfg := fmt.Sprintf("server:\n  listen: %s\n%s  tokens:\n    - name: idp\n      token: %s\nstate:\n  path: %s/state.db\nlog:\n  format: json\n",
		addr, extra, hostileToken, dir)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return startServe(t, cfgPath, addr), "http://" + addr + "/scim/v2", cfgPath
}

type answer struct {
	status int
	body   map[string]any
	raw    string
	header http.Header
}

func send(t *testing.T, method, u string, body any, headers ...string) answer {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case string:
		rd = strings.NewReader(b)
	default:
		raw, _ := json.Marshal(b)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+hostileToken)
	req.Header.Set("Content-Type", "application/scim+json")
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i] == "Host" {
			req.Host = headers[i+1]
			continue
		}
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := (&http.Client{Timeout: 60 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, truncated(u), err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	a := answer{status: resp.StatusCode, raw: string(raw), header: resp.Header}
	_ = json.Unmarshal(raw, &a.body)
	return a
}

func truncated(s string) string {
	if len(s) > 120 {
		return s[:120] + "…"
	}
	return s
}

// procStatus reads a field (in KiB) of /proc/PID/status.
func procStatus(t *testing.T, pid int, field string) int {
	t.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("process %d is gone: %v", pid, err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, field+":") {
			n, _ := strconv.Atoi(strings.Fields(strings.TrimPrefix(line, field+":"))[0])
			return n
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

func userDoc(name string) map[string]any {
	return map[string]any{"schemas": []string{"urn:ietf:params:scim:schemas:core:2.0:User"}, "userName": name,
		"name": map[string]any{"givenName": "G", "familyName": "F"}, "active": true}
}

func patchDoc(ops ...any) map[string]any {
	return map[string]any{"schemas": []string{"urn:ietf:params:scim:api:messages:2.0:PatchOp"}, "Operations": ops}
}

// TestServeHostileInput drives `scimsync serve` as a real process with what an attacker holding
// one valid IdP token would send (issue 10 "Why"): every request gets a bounded, clear answer
// naming the limit, the process stays up, and its memory stays bounded.
func TestServeHostileInput(t *testing.T) {
	dir := t.TempDir()
	p, base, _ := serveForTest(t, dir, "")
	pid := p.cmd.Process.Pid
	id := send(t, "POST", base+"/Users", userDoc("victim")).body["id"]
	if id == nil {
		t.Fatal("could not create the first user")
	}
	uid := id.(string)
	g := send(t, "POST", base+"/Groups", map[string]any{"schemas": []string{"urn:ietf:params:scim:schemas:core:2.0:Group"}, "displayName": "G"})
	gid, _ := g.body["id"].(string)

	many := func(n int, f func(i int) any) []any {
		out := make([]any, n)
		for i := range out {
			out[i] = f(i)
		}
		return out
	}
	filter := func(f string) string { return base + "/Users?filter=" + url.QueryEscape(f) }
	cases := []struct {
		name        string
		method, url string
		body        any
		status      int
		mentions    string
	}{
		// a URL over the 64 KiB header limit is refused before the server reads it
		{"100,000 nested parentheses (600 KB filter)", "GET",
			filter(strings.Repeat("(", 100000) + `userName eq "a"` + strings.Repeat(")", 100000)), nil, 431, "Request Header Fields Too Large"},
		{"1,000 nested parentheses in a short filter", "GET",
			filter(strings.Repeat("(", 1000) + `userName pr` + strings.Repeat(")", 1000)), nil, 400, "server.max_filter_depth"},
		{"nested not() in a PATCH path", "PATCH", base + "/Users/" + uid,
			patchDoc(map[string]any{"op": "remove", "path": "emails[" + strings.Repeat("not (", 500) + `value eq "x"` + strings.Repeat(")", 500) + "]"}), 400, "server.max_filter_depth"},
		{"25,000-term or chain", "GET",
			filter(strings.TrimSuffix(strings.Repeat(`userName eq "x" or `, 25000), " or ")), nil, 431, "Request Header Fields Too Large"},
		{"1,000-term or chain (19 KB filter)", "GET",
			filter(strings.TrimSuffix(strings.Repeat(`userName eq "x" or `, 1000), " or ")), nil, 400, "server.max_filter_length"},
		{"100-term or chain", "GET",
			filter(strings.TrimSuffix(strings.Repeat(`title eq "x" or `, 100), " or ")), nil, 400, "server.max_filter_terms"},
		{"password probe", "GET", filter(`password sw "H"`), nil, 400, "password cannot be filtered"},
		{"15,000 emails in one PATCH", "PATCH", base + "/Users/" + uid,
			patchDoc(map[string]any{"op": "add", "path": "emails", "value": many(15000, func(i int) any {
				return map[string]any{"value": fmt.Sprintf("e%d@x.example", i), "type": "other"}
			})}), 400, "server.max_values_per_attribute"},
		{"5,000 operations in one PATCH", "PATCH", base + "/Users/" + uid,
			patchDoc(many(5000, func(i int) any { return map[string]any{"op": "replace", "path": "title", "value": strconv.Itoa(i)} })...), 413, "server.max_patch_operations"},
		{"giant group: 150,000 members in one PATCH", "PATCH", base + "/Groups/" + gid,
			patchDoc(map[string]any{"op": "add", "path": "members", "value": many(150000, func(i int) any { return map[string]any{"value": strconv.Itoa(i)} })}), 413, "server.max_members_per_request"},
		{"giant group: 20 MiB body", "POST", base + "/Groups",
			`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"` + strings.Repeat("x", 20<<20) + `"}`, 413, "server.max_group_body_bytes"},
		{"2 MiB user", "POST", base + "/Users",
			`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"` + strings.Repeat("x", 2<<20) + `"}`, 413, "server.max_body_bytes"},
		{"unknown schema", "POST", base + "/Users",
			map[string]any{"schemas": []string{"urn:ietf:params:scim:schemas:core:2.0:User", "urn:evil:schema"}, "userName": "u1"}, 400, "urn:evil:schema"},
		{"NUL in userName", "POST", base + "/Users", userDoc("a\x00b"), 400, "control character"},
		{"ESC in userName", "POST", base + "/Users", userDoc("\x1b[2Jadmin"), 400, "control character"},
		{"CR/LF in externalId", "POST", base + "/Users",
			map[string]any{"schemas": []string{"urn:ietf:params:scim:schemas:core:2.0:User"}, "userName": "crlf", "externalId": "x\r\nSet-Cookie: a=b"}, 400, "control character"},
		{"remove without a path", "PATCH", base + "/Users/" + uid, patchDoc(map[string]any{"op": "remove"}), 400, "noTarget"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := send(t, c.method, c.url, c.body)
			if a.status != c.status || !strings.Contains(a.raw, c.mentions) {
				t.Fatalf("status %d, want %d mentioning %q: %s", a.status, c.status, c.mentions, truncated(a.raw))
			}
		})
	}
	t.Run("30 users with 40,000 emails each", func(t *testing.T) {
		emails := many(40000, func(i int) any { return map[string]any{"value": fmt.Sprintf("e%d@x.example", i)} })
		for i := 0; i < 30; i++ {
			doc := userDoc(fmt.Sprint("hoard", i))
			doc["emails"] = emails
			if a := send(t, "POST", base+"/Users", doc); a.status != 400 && a.status != 413 {
				t.Fatalf("user %d: %d %s", i, a.status, truncated(a.raw))
			}
		}
	})
	t.Run("oversized page request is capped", func(t *testing.T) {
		a := send(t, "GET", base+"/Users?count=100000000&startIndex=-5", nil)
		if a.status != 200 || a.body["startIndex"].(float64) != 1 {
			t.Fatalf("%d %s", a.status, truncated(a.raw))
		}
	})
	t.Run("a bad Host does not decide locations", func(t *testing.T) {
		a := send(t, "POST", base+"/Users", userDoc("hosted"), "Host", "attacker.example")
		if a.status != 201 || !strings.HasPrefix(a.header.Get("Location"), base+"/Users/") || strings.Contains(a.raw, "attacker") {
			t.Fatalf("%d Location %q: %s", a.status, a.header.Get("Location"), a.raw)
		}
	})
	t.Run("password is never returned or stored", func(t *testing.T) {
		doc := userDoc("withpw")
		doc["password"] = "Hunter2-plaintext"
		a := send(t, "POST", base+"/Users", doc)
		if a.status != 201 || strings.Contains(a.raw, "Hunter2") {
			t.Fatalf("%d %s", a.status, a.raw)
		}
		if l := send(t, "GET", base+"/Users?filter="+url.QueryEscape(`userName eq "withpw"`), nil); strings.Contains(l.raw, "Hunter2") {
			t.Fatalf("list returns the password: %s", l.raw)
		}
	})

	// still up and answering, memory bounded
	if a := send(t, "GET", base+"/Users/"+uid, nil); a.status != 200 {
		t.Fatalf("server no longer answers: %d", a.status)
	}
	peak := procStatus(t, pid, "VmHWM")
	t.Logf("peak RSS after the hostile requests: %d MiB", peak>>10)
	if peak > 400<<10 {
		t.Fatalf("peak RSS %d MiB: a hostile request was not bounded", peak>>10)
	}
	p.stop(t)
	state, err := os.ReadFile(filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(state, []byte("Hunter2")) {
		t.Fatal("the state file holds the password")
	}
}

// TestServeKill9LosesNoAcknowledgedCreate: 32 writers create users while the process is killed
// with SIGKILL; after a restart, every create that was answered 201 is there.
func TestServeKill9LosesNoAcknowledgedCreate(t *testing.T) {
	dir := t.TempDir()
	p, base, cfgPath := serveForTest(t, dir, "")
	var mu gosync.Mutex
	var acked []string
	var wg gosync.WaitGroup
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	killAt := time.Now().Add(1500 * time.Millisecond)
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 2000 && time.Now().Before(killAt.Add(2*time.Second)); i++ {
				raw, _ := json.Marshal(userDoc(fmt.Sprintf("crash-%02d-%04d", w, i)))
				req, _ := http.NewRequest("POST", base+"/Users", bytes.NewReader(raw))
				req.Header.Set("Authorization", "Bearer "+hostileToken)
				resp, err := hc.Do(req)
				if err != nil {
					return // the process is gone
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 201 {
					var out struct{ ID string }
					_ = json.Unmarshal(body, &out)
					mu.Lock()
					acked = append(acked, out.ID)
					mu.Unlock()
				}
			}
		}(w)
	}
	time.Sleep(time.Until(killAt))
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = p.cmd.Wait()
	wg.Wait()
	mu.Lock()
	ids := append([]string(nil), acked...)
	mu.Unlock()
	if len(ids) < 100 {
		t.Fatalf("only %d creates acknowledged before the kill; the test proves nothing", len(ids))
	}
	startServe(t, cfgPath, strings.TrimSuffix(strings.TrimPrefix(base, "http://"), "/scim/v2"))
	missing := 0
	for _, id := range ids {
		if a := send(t, "GET", base+"/Users/"+id, nil); a.status != 200 {
			missing++
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d acknowledged creates lost after kill -9", missing, len(ids))
	}
	t.Logf("%d acknowledged creates, all present after kill -9 and restart", len(ids))
}
