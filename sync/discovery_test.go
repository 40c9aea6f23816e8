package sync_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/scimsync/scimsync/ldap/slapdtest"
	"github.com/scimsync/scimsync/scimclient"
	"github.com/scimsync/scimsync/scimclient/targettest"
	"github.com/scimsync/scimsync/state"
	scimsync "github.com/scimsync/scimsync/sync"
)

// discoveryGETs counts the discovery requests (/ServiceProviderConfig, /ResourceTypes,
// /Schemas) among requests ("METHOD path").
func discoveryGETs(requests []string) int {
	n := 0
	for _, r := range requests {
		for _, doc := range []string{"/ServiceProviderConfig", "/ResourceTypes", "/Schemas"} {
			if r == "GET /scim/v2"+doc {
				n++
			}
		}
	}
	return n
}

// keptDiscovery is the target discovery the state file keeps, if any.
func (e *env) keptDiscovery() (state.Discovery, bool) {
	e.t.Helper()
	st, err := state.Open(e.statePath, state.Options{ReadOnly: true})
	if err != nil {
		e.t.Fatal(err)
	}
	defer st.Close()
	var d state.Discovery
	var ok bool
	err = st.View(func(v *state.View) error {
		var err error
		d, ok, err = v.Discovery()
		return err
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return d, ok
}

// TestDeltaRunsGoByTheKeptDiscovery is issue 11's "a no-change run makes 0 target requests":
// a full run asks the target for its discovery and keeps it; delta runs go by it (none with no
// change, a changed user's lookup and write only); a full reconcile, a run of one user, a
// changed configuration and another target ask again.
func TestDeltaRunsGoByTheKeptDiscovery(t *testing.T) {
	e := newEnv(t, 10)
	base := runOpts{ldap: inPeople}
	first := e.clock
	plan, _ := e.mustRun(base)
	if n := discoveryGETs(e.allRequests()); n != 3 || plan.Mode != "full" || plan.Discovery == nil || plan.Discovery.Kept ||
		!plan.Discovery.FetchedAt.Equal(first) {
		t.Fatalf("first run: %d discovery GETs, %s %+v", n, scimsync.SummaryLine(plan), plan.Discovery)
	}
	firstWarnings := plan.Warnings
	kept, ok := e.keptDiscovery()
	if !ok || !kept.FetchedAt.Equal(first) || kept.Config == "" || len(kept.Data) == 0 {
		t.Fatalf("kept after the full run: %+v %v", kept, ok)
	}

	// no change: not one request
	e.clock = e.clock.Add(time.Hour)
	e.resetLog()
	plan, _ = e.mustRun(base)
	if r := e.allRequests(); len(r) != 0 || plan.Mode != "delta" || !plan.Discovery.Kept || !plan.Discovery.FetchedAt.Equal(first) {
		t.Fatalf("a no-change delta asked the target %v (%s, %+v)", r, scimsync.SummaryLine(plan), plan.Discovery)
	}
	if !slices.Equal(plan.Warnings, firstWarnings) {
		t.Fatalf("the kept capabilities read differently: %q, then %q", firstWarnings, plan.Warnings)
	}

	// one modified user: its lookup and its write, nothing else
	id := e.targetUsers()[slapdtest.UUID(3)]["id"].(string)
	e.slapd.Replace(t, slapdtest.PersonDN("user003"), "title", "Engineer")
	e.resetLog()
	plan, res := e.mustRun(base)
	want := []string{"GET /scim/v2/Users/" + id, "PATCH /scim/v2/Users/" + id}
	if r := e.allRequests(); !slices.Equal(r, want) || res.Done[scimsync.ActionUpdate] != 1 || !plan.Discovery.Kept {
		t.Fatalf("one modified user: requests %v, want %v (%s)", r, want, scimsync.SummaryLine(plan))
	}

	// the kept discovery is used, not re-read: a delta after a kept one changed in state goes
	// by the changed one (here: the target said it has no PATCH, so a PUT is sent)
	e.slapd.Replace(t, slapdtest.PersonDN("user004"), "title", "Pilot")
	e.setKeptDiscovery(func(d *state.Discovery) { d.Data = e.discoveryWithoutPatch(d.Data) })
	e.resetLog()
	plan, _ = e.mustRun(base)
	if w := e.writeLog(); len(w) != 1 || countWrites(w, "PUT") != 1 || discoveryGETs(e.allRequests()) != 0 {
		t.Fatalf("the delta did not go by the kept discovery: %v (%s)", e.allRequests(), scimsync.SummaryLine(plan))
	}

	// a full reconcile asks again and keeps the new answer
	e.clock = e.clock.Add(time.Hour)
	e.resetLog()
	plan, _ = e.mustRun(runOpts{ldap: inPeople, plan: scimsync.PlanOptions{Full: true}})
	if n := discoveryGETs(e.allRequests()); n != 3 || plan.Mode != "full" || plan.Discovery.Kept || !plan.Discovery.FetchedAt.Equal(e.clock) {
		t.Fatalf("full reconcile: %d discovery GETs, %+v", n, plan.Discovery)
	}
	if kept, _ := e.keptDiscovery(); !kept.FetchedAt.Equal(e.clock) {
		t.Fatalf("the full reconcile's discovery is not kept: %v", kept.FetchedAt)
	}
	e.resetLog()
	if plan, _ := e.mustRun(base); len(e.allRequests()) != 0 || !plan.Discovery.Kept {
		t.Fatalf("after the full reconcile: %v", e.allRequests())
	}

	// one user on demand always asks
	e.resetLog()
	if plan, _ := e.mustRun(runOpts{ldap: inPeople, plan: scimsync.PlanOptions{OnlyUser: "user005"}}); discoveryGETs(e.allRequests()) != 3 ||
		plan.Discovery.Kept {
		t.Fatalf("sync --user: %v", e.allRequests())
	}

	// a discovery kept under another configuration is not used, even by a delta
	e.setKeptDiscovery(func(d *state.Discovery) { d.Config += "-other" })
	e.resetLog()
	plan, _ = e.mustRun(base)
	if n := discoveryGETs(e.allRequests()); n != 3 || plan.Mode != "delta" || plan.Discovery.Kept {
		t.Fatalf("a discovery of another configuration: %d GETs, %s", n, scimsync.SummaryLine(plan))
	}
	e.resetLog()
	if e.mustRun(base); len(e.allRequests()) != 0 {
		t.Fatalf("the delta's own discovery is not kept: %v", e.allRequests())
	}

	// a changed mapping (another fingerprint) asks again
	ruled := runOpts{ldap: inPeople, mapping: func(m *scimsync.MappingConfig) { m.Rules = map[string]scimsync.Rule{"userName": {MaxLength: 200}} }}
	e.resetLog()
	plan, _ = e.mustRun(ruled)
	if n := discoveryGETs(e.allRequests()); n != 3 || plan.Discovery.Kept {
		t.Fatalf("changed mapping: %d discovery GETs", n)
	}
	e.resetLog()
	if plan, _ := e.mustRun(ruled); len(e.allRequests()) != 0 || !plan.Discovery.Kept {
		t.Fatalf("after the mapping change: %v", e.allRequests())
	}

	// another target: asked, never the old one's capabilities
	tg := targettest.Start(t)
	tg.Set(func(b *targettest.Behaviour) { b.NoPatch = true })
	e.targetURL, e.token = tg.URL, tg.Token
	plan, _ = e.mustRun(ruled)
	gets := 0
	for _, r := range tg.Requests() {
		if r.Method == http.MethodGet && (strings.HasSuffix(r.URI, "/ServiceProviderConfig") || strings.HasSuffix(r.URI, "/ResourceTypes") ||
			strings.HasSuffix(r.URI, "/Schemas")) {
			gets++
		}
	}
	if gets != 3 || plan.Discovery.Kept || plan.Mode != "full" || tg.Count(http.MethodPatch) != 0 {
		t.Fatalf("another target: %d discovery GETs, %s, %d PATCHes", gets, scimsync.SummaryLine(plan), tg.Count(http.MethodPatch))
	}
}

// setKeptDiscovery changes the state file's kept discovery.
func (e *env) setKeptDiscovery(change func(*state.Discovery)) {
	e.t.Helper()
	d, ok := e.keptDiscovery()
	if !ok {
		e.t.Fatal("no kept discovery")
	}
	change(&d)
	st, err := state.Open(e.statePath, state.Options{})
	if err != nil {
		e.t.Fatal(err)
	}
	defer st.Close()
	if err := st.SetDiscovery(d); err != nil {
		e.t.Fatal(err)
	}
}

// discoveryWithoutPatch rewrites kept discovery data so /ServiceProviderConfig says
// patch.supported false.
func (e *env) discoveryWithoutPatch(data []byte) []byte {
	e.t.Helper()
	d, err := scimclient.DecodeDiscovery(data)
	if err != nil {
		e.t.Fatal(err)
	}
	var spc map[string]any
	if err := json.Unmarshal(d.ServiceProviderConfig, &spc); err != nil {
		e.t.Fatal(err)
	}
	spc["patch"] = map[string]any{"supported": false}
	d.ServiceProviderConfig, _ = json.Marshal(spc)
	out, err := d.Encode()
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

// TestDryRunKeepsNoDiscovery: a dry run writes nothing, the discovery it asked for included;
// a dry delta goes by the kept one.
func TestDryRunKeepsNoDiscovery(t *testing.T) {
	e := newEnv(t, 5)
	dry := runOpts{dryRun: true}
	if plan, _, err := e.run(dry); err != nil || discoveryGETs(e.allRequests()) != 3 || plan.Discovery.Kept {
		t.Fatalf("dry run on a fresh install: %v %v", err, e.allRequests())
	}
	e.mustRun(runOpts{})
	if err := e.clearKeptDiscovery(); err != nil {
		t.Fatal(err)
	}
	e.resetLog()
	plan, _, err := e.run(dry)
	if err != nil || plan.Mode != "delta" || discoveryGETs(e.allRequests()) != 3 || plan.Discovery.Kept {
		t.Fatalf("dry delta without a kept discovery: %v %v", err, e.allRequests())
	}
	if _, ok := e.keptDiscovery(); ok {
		t.Fatal("a dry run kept its discovery")
	}
	e.mustRun(runOpts{}) // a real delta keeps what it asked for
	e.resetLog()
	plan, _, err = e.run(dry)
	if err != nil || len(e.allRequests()) != 0 || !plan.Discovery.Kept {
		t.Fatalf("dry delta with a kept discovery: %v %v", err, e.allRequests())
	}
	// the JSON plan says where the capabilities came from
	var out bytes.Buffer
	if err := scimsync.WriteJSON(&out, plan); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Discovery struct {
			FetchedAt time.Time `json:"fetched_at"`
			Kept      bool      `json:"kept"`
		} `json:"discovery"`
	}
	if err := json.Unmarshal(out.Bytes(), &doc); err != nil || !doc.Discovery.Kept || !doc.Discovery.FetchedAt.Equal(e.clock) {
		t.Fatalf("JSON plan: %+v %v\n%s", doc, err, out.String())
	}
}

func (e *env) clearKeptDiscovery() error {
	st, err := state.Open(e.statePath, state.Options{})
	if err != nil {
		return err
	}
	defer st.Close()
	return st.ClearDiscovery()
}

// TestRefusedWriteForgetsTheKeptDiscovery: a target that stops declaring an attribute (its
// schema changed since the last full reconcile) refuses the delta's write sent by the kept
// capabilities; the kept discovery is forgotten, so the next run reads the new schema, sends
// only what it declares and converges.
func TestRefusedWriteForgetsTheKeptDiscovery(t *testing.T) {
	e, tg, logs := hostileEnv(t, 6)
	o := runOpts{ldap: inPeople}
	e.mustRun(o)
	if _, ok := e.keptDiscovery(); !ok {
		t.Fatal("nothing kept after the first run")
	}
	tg.Set(func(b *targettest.Behaviour) { b.Strict, b.Undeclared = true, []string{"title"} })
	e.slapd.Replace(t, slapdtest.PersonDN("user002"), "title", "Engineer")
	tg.ResetCounts()
	plan, res, err := e.run(o)
	if !errors.Is(err, scimsync.ErrApplyFailed) || len(res.Failed) != 1 || !plan.Discovery.Kept || tg.Count(http.MethodGet) != 1 {
		t.Fatalf("the write by the kept capabilities: %v %+v, %d GETs", err, res, tg.Count(http.MethodGet))
	}
	if !strings.Contains(res.Failed[0].Error, "400") {
		t.Fatalf("not refused: %s", res.Failed[0].Error)
	}
	if _, ok := e.keptDiscovery(); ok {
		t.Fatal("the refused write left the discovery kept")
	}
	if !strings.Contains(logs.String(), "the target refused a write; its capabilities are read again at the next run") {
		t.Fatalf("not logged:\n%s", logs.String())
	}
	tg.ResetCounts()
	plan, res, err = e.run(o)
	if err != nil || len(res.Failed) != 0 || plan.Discovery.Kept || plan.Mode != "delta" ||
		!strings.Contains(strings.Join(plan.Warnings, "\n"), "title") {
		t.Fatalf("the run after: %v %+v %s %q", err, res, scimsync.SummaryLine(plan), plan.Warnings)
	}
	if n := tg.Count(http.MethodGet); n < 3 {
		t.Fatalf("the run after did not read the target's discovery: %d GETs", n)
	}
	if u := tg.Users(); len(u) != 6 {
		t.Fatalf("%d users on the target", len(u))
	}
	for _, u := range tg.Users() {
		if _, has := u["title"]; has {
			t.Fatalf("an undeclared title was sent: %v", u)
		}
	}
	tg.ResetCounts()
	if plan, _, err := e.run(o); err != nil || tg.Total() != 0 || !plan.Discovery.Kept {
		t.Fatalf("not converged: %v, %d requests", err, tg.Total())
	}
}

// TestUnreadableKeptDiscoveryIsAskedAgain: kept documents that no longer decode (a damaged
// value, the encoding of another build, a document that is not JSON) are not an error: the
// delta asks the target, goes on with what it answered, and keeps that in their place.
func TestUnreadableKeptDiscoveryIsAskedAgain(t *testing.T) {
	e := newEnv(t, 5)
	e.mustRun(runOpts{})
	for _, data := range []string{
		`"not the client's encoding"`,
		`{"format":2,"serviceProviderConfig":"e30="}`, // another build's format ("e30=" is {})
		`{"format":1,"serviceProviderConfig":"ew=="}`, // this format; the document is "{"
	} {
		e.setKeptDiscovery(func(d *state.Discovery) { d.Data = json.RawMessage(data) })
		e.clock = e.clock.Add(time.Hour) // so the fresh discovery is told from the kept one
		e.resetLog()
		plan, _, err := e.run(runOpts{})
		if err != nil || plan.Mode != "delta" || discoveryGETs(e.allRequests()) != 3 || plan.Discovery == nil || plan.Discovery.Kept {
			t.Fatalf("kept %s: %v, %v", data, err, e.allRequests())
		}
		kept, ok := e.keptDiscovery()
		if _, derr := scimclient.DecodeDiscovery(kept.Data); !ok || derr != nil || !kept.FetchedAt.Equal(e.clock) {
			t.Fatalf("kept %s: the fresh discovery was not kept in its place: %v %v %s", data, derr, kept.FetchedAt, kept.Data)
		}
		e.resetLog()
		if plan, _ := e.mustRun(runOpts{}); len(e.allRequests()) != 0 || plan.Discovery == nil || !plan.Discovery.Kept {
			t.Fatalf("kept %s: the next delta asked again: %v", data, e.allRequests())
		}
	}
}
