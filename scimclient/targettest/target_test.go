package targettest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/scimsync/scimsync/scim"
	"github.com/scimsync/scimsync/scimclient/targettest"
)

// do sends one raw request, so the target's own behaviour is tested without the client.
func do(t *testing.T, tg *targettest.Target, method, path, token string, body any, hdr map[string]string) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, tg.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func TestTargetBasics(t *testing.T) {
	tg := targettest.Start(t)
	id := tg.CreateUser(scim.Doc{"schemas": []string{scim.UserSchema}, "userName": "alice", "externalId": "e1"})
	if len(tg.Users()) != 1 || tg.User(id)["userName"] != "alice" {
		t.Fatalf("%v", tg.Users())
	}
	if st, _ := do(t, tg, http.MethodGet, "/Users", "wrong", nil, nil); st != http.StatusUnauthorized {
		t.Fatalf("wrong token: %d", st)
	}
	if st, body := do(t, tg, http.MethodGet, "/Users/"+id, tg.Token, nil, nil); st != http.StatusOK || body["userName"] != "alice" {
		t.Fatalf("%d %v", st, body)
	}
	if tg.Count(http.MethodGet) != 2 || tg.Total() != 2 || tg.Writes() != 0 || len(tg.Requests()) != 2 || tg.Requests()[0].At.IsZero() {
		t.Fatalf("counters: %d %v", tg.Count(http.MethodGet), tg.Requests())
	}
	tg.ResetCounts()
	if tg.Total() != 0 {
		t.Fatal("ResetCounts")
	}
}

func TestTargetStrictCoreSubAttribute(t *testing.T) {
	tg := targettest.Start(t)
	tg.Set(func(b *targettest.Behaviour) { b.Strict, b.Undeclared = true, []string{"name.middleName", "title"} })
	_, schemas := do(t, tg, http.MethodGet, "/Schemas", tg.Token, nil, nil)
	raw, _ := json.Marshal(schemas)
	if strings.Contains(string(raw), `"middleName"`) || strings.Contains(string(raw), `"name":"title"`) || !strings.Contains(string(raw), `"givenName"`) {
		t.Fatalf("/Schemas still declares them: %s", raw)
	}
	user := map[string]any{"schemas": []string{scim.UserSchema}, "userName": "bob",
		"name": map[string]any{"givenName": "Bob", "middleName": "X"}}
	if st, body := do(t, tg, http.MethodPost, "/Users", tg.Token, user, nil); st != http.StatusBadRequest || body["scimType"] != "invalidSyntax" {
		t.Fatalf("%d %v", st, body)
	}
	delete(user["name"].(map[string]any), "middleName")
	st, body := do(t, tg, http.MethodPost, "/Users", tg.Token, user, nil)
	if st != http.StatusCreated {
		t.Fatalf("%d %v", st, body)
	}
	id := body["id"].(string)
	patch := map[string]any{"schemas": []string{scim.PatchOpSchema}, "Operations": []any{map[string]any{"op": "add", "value": map[string]any{"title": "x"}}}}
	if st, body := do(t, tg, http.MethodPatch, "/Users/"+id, tg.Token, patch, nil); st != http.StatusBadRequest || body["scimType"] != "invalidSyntax" {
		t.Fatalf("no-path PATCH of an undeclared attribute: %d %v", st, body)
	}
	tg.Reset()
	if st, _ := do(t, tg, http.MethodPatch, "/Users/"+id, tg.Token, patch, nil); st != http.StatusOK {
		t.Fatalf("after Reset: %d", st)
	}
}

func TestTargetCatcherRecordsLeaks(t *testing.T) {
	tg := targettest.Start(t)
	tg.Set(func(b *targettest.Behaviour) { b.Redirect = targettest.RedirectOtherPort })
	// net/http follows redirects and, to another port of the same host, keeps the header:
	// exactly the leak the client must avoid, and the one the catcher exists to see
	if st, _ := do(t, tg, http.MethodGet, "/Users", tg.Token, nil, nil); st != http.StatusOK {
		t.Fatalf("%d", st)
	}
	if l := tg.Leaks(); len(l) != 1 || !strings.Contains(l[0], "GET http://127.0.0.1:") {
		t.Fatalf("%v", l)
	}
}

// TestTargetDripsOnlyTheChosenMethods: with DripMethods, a listing answers at once while a
// create is applied and its answer held back (the header is sent, the body drips), so a test
// can keep writes in flight without slowing everything else down; Answering counts them.
func TestTargetDripsOnlyTheChosenMethods(t *testing.T) {
	tg := targettest.Start(t)
	tg.Set(func(b *targettest.Behaviour) { b.Drip, b.DripMethods = time.Hour, []string{"post"} })
	hc := &http.Client{Timeout: 10 * time.Second}
	list, _ := http.NewRequest(http.MethodGet, tg.URL+"/Users", nil)
	list.Header.Set("Authorization", "Bearer "+tg.Token)
	lr, err := hc.Do(list) // the client's timeout ends a dripping answer: a failure, not a hang
	if err != nil {
		t.Fatal(err)
	}
	var page map[string]any
	err = json.NewDecoder(lr.Body).Decode(&page)
	lr.Body.Close()
	if err != nil || lr.StatusCode != http.StatusOK || page["totalResults"] == nil {
		t.Fatalf("GET dripped or failed: HTTP %d %v %v", lr.StatusCode, page, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	raw, _ := json.Marshal(map[string]any{"schemas": []string{scim.UserSchema}, "userName": "dripped"})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, tg.URL+"/Users", bytes.NewReader(raw))
	req.Header.Set("Authorization", "Bearer "+tg.Token)
	req.Header.Set("Content-Type", "application/scim+json")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST: HTTP %d", resp.StatusCode)
	}
	got := make(chan int, 1)
	go func() { n, _ := resp.Body.Read(make([]byte, 1)); got <- n }()
	select {
	case n := <-got:
		t.Fatalf("the POST's body was not held back: read %d bytes", n)
	case <-time.After(200 * time.Millisecond):
	}
	if users := tg.Users(); len(users) != 1 || users[0]["userName"] != "dripped" {
		t.Fatalf("the create was not applied before its answer: %v", users)
	}
	if tg.Count(http.MethodPost) != 1 || tg.Answering(http.MethodPost) != 1 || tg.Answering(http.MethodGet) != 0 {
		t.Fatalf("the dripping POST: counted %d, answering %d POST and %d GET", tg.Count(http.MethodPost),
			tg.Answering(http.MethodPost), tg.Answering(http.MethodGet))
	}
	cancel() // the client goes away: the answer ends
	for deadline := time.Now().Add(5 * time.Second); tg.Answering(http.MethodPost) != 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the answer to a client that went away is still being sent")
		}
	}
}
