package sync_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/scimsync/scimsync/ldap"
	"github.com/scimsync/scimsync/ldap/slapdtest"
	"github.com/scimsync/scimsync/scim"
	"github.com/scimsync/scimsync/scimclient"
	"github.com/scimsync/scimsync/state"
	scimsync "github.com/scimsync/scimsync/sync"
)

func inPeople(c *ldap.Config) { c.BaseDN = slapdtest.People }

// fullFindsNothing checks that a full reconcile (dry) after a delta run has nothing to do: the
// delta did exactly what a full run would have.
func (e *env) fullFindsNothing(o runOpts) {
	e.t.Helper()
	o.dryRun, o.plan.Full = true, true
	plan, _, err := e.run(o)
	if err != nil {
		e.t.Fatal(err)
	}
	defer plan.Close()
	if plan.Mode != "full" || plan.Pending() {
		e.t.Fatalf("a full reconcile after the delta still finds work: %s %+v", scimsync.SummaryLine(plan), plan.Items())
	}
}

func TestDeltaRunsDoWhatAFullRunWould(t *testing.T) {
	e := newEnv(t, 20)
	base := runOpts{ldap: inPeople}
	if plan, _ := e.mustRun(base); plan.Mode != "full" || plan.Summary[scimsync.ActionCreate] != 20 {
		t.Fatalf("first run: %s", scimsync.SummaryLine(plan))
	}
	steps := []struct {
		name   string
		change func()
		want   map[string]int // method -> writes
		check  func(*scimsync.Plan)
	}{
		{"add", func() { e.slapd.Add(t, person(20)) }, map[string]int{"POST": 1}, nil},
		{"modify", func() { e.slapd.Replace(t, slapdtest.PersonDN("user003"), "title", "Engineer") }, map[string]int{"PATCH": 1},
			func(p *scimsync.Plan) {
				it := p.Items()[0]
				if len(it.Operations) != 1 || it.Operations[0] != (scim.PatchOp{Op: "add", Path: "title", Value: "Engineer"}) {
					t.Fatalf("the first title is an add: %+v", it.Operations)
				}
			}},
		{"delete", func() { e.slapd.Delete(t, slapdtest.PersonDN("user004")) }, map[string]int{"PATCH": 1}, func(p *scimsync.Plan) {
			if p.Summary[scimsync.ActionDisable] != 1 {
				t.Fatalf("delete: %s", scimsync.SummaryLine(p))
			}
		}},
		{"modrdn", func() { e.slapd.Rename(t, slapdtest.PersonDN("user005"), "uid=user105", "") }, map[string]int{"PATCH": 1},
			func(p *scimsync.Plan) {
				if it := p.Items()[0]; it.Name != "user105" || it.Action != scimsync.ActionUpdate {
					t.Fatalf("renamed: %+v", it)
				}
			}},
		{"move out of the base", func() { e.slapd.Rename(t, slapdtest.PersonDN("user006"), "uid=user006", slapdtest.Moved) },
			map[string]int{"PATCH": 1}, func(p *scimsync.Plan) {
				if p.Summary[scimsync.ActionDisable] != 1 {
					t.Fatalf("moved out: %s", scimsync.SummaryLine(p))
				}
			}},
	}
	for _, st := range steps {
		st.change()
		e.resetLog()
		plan, res := e.mustRun(base)
		if plan.Mode != "delta" || plan.Read.Mechanism != "syncrepl" || len(res.Failed) > 0 {
			t.Fatalf("%s: %s %+v", st.name, scimsync.SummaryLine(plan), res.Failed)
		}
		w := e.writeLog()
		n := 0
		for m, want := range st.want {
			if got := countWrites(w, m); got != want {
				t.Fatalf("%s: %d %s, want %d: %v", st.name, got, m, want, w)
			}
			n += want
		}
		if len(w) != n {
			t.Fatalf("%s: writes %v", st.name, w)
		}
		if st.check != nil {
			st.check(plan)
		}
		e.fullFindsNothing(base)
	}
	// nothing changed: no target request at all
	e.resetLog()
	plan, _ := e.mustRun(base)
	if r := e.requestLog(); len(r) != 0 || plan.Read.Entries != 0 {
		t.Fatalf("a run with an empty delta asked the target %v (%s)", r, scimsync.SummaryLine(plan))
	}
	users := e.targetUsers()
	if len(users) != 21 || users[slapdtest.UUID(5)]["userName"] != "user105" || users[slapdtest.UUID(4)]["active"] != false ||
		users[slapdtest.UUID(6)]["active"] != false || users[slapdtest.UUID(3)]["title"] != "Engineer" {
		t.Fatalf("target after the deltas: %d users", len(users))
	}
}

func TestFilterChangeAndRefusedCursorReadInFull(t *testing.T) {
	e := newEnv(t, 10)
	e.mustRun(runOpts{})
	// a filter that leaves user007 out: the directory client sees another configuration
	narrow := runOpts{ldap: func(c *ldap.Config) { c.UserFilter = "(&(objectClass=inetOrgPerson)(!(uid=user007)))" }}
	e.resetLog()
	plan, _ := e.mustRun(narrow)
	if !plan.Read.Full || !plan.Read.CursorRefused || plan.Summary[scimsync.ActionDisable] != 1 || countWrites(e.writeLog(), "PATCH") != 1 {
		t.Fatalf("filter change: %+v %s %v", plan.Read, scimsync.SummaryLine(plan), e.writeLog())
	}
	e.fullFindsNothing(narrow)
	// a cursor the server refuses (garbage cookie): a full read, nothing written
	st, err := state.Open(e.statePath, state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var cur state.Cursor
	_ = st.View(func(v *state.View) error { cur, _, err = v.Cursor(state.LinkUser); return err })
	var c ldap.Cursor
	if err := json.Unmarshal(cur.Data, &c); err != nil || c.Mechanism != "syncrepl" {
		t.Fatalf("stored cursor: %s %v", cur.Data, err)
	}
	c.Cookie = []byte("rid=000,csn=20991231000000.000000Z#000000#000#000000")
	cur.Data, _ = json.Marshal(c)
	if err := st.SetCursor(state.LinkUser, cur); err != nil {
		t.Fatal(err)
	}
	_ = st.Close()
	e.resetLog()
	plan, _ = e.mustRun(narrow)
	if !plan.Read.Full || !plan.Read.CursorRefused || len(e.writeLog()) != 0 {
		t.Fatalf("refused cookie: %+v %s %v", plan.Read, scimsync.SummaryLine(plan), e.writeLog())
	}
	plan, _ = e.mustRun(narrow)
	if plan.Read.Full || plan.Read.Fallback != "" {
		t.Fatalf("the cursor from the full read is not used: %+v", plan.Read)
	}
}

func TestCancelledDeltaReplaysWithoutDuplicates(t *testing.T) {
	e := newEnv(t, 10)
	e.mustRun(runOpts{})
	cursorAt := func() time.Time {
		st, err := state.Open(e.statePath, state.Options{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		var c state.Cursor
		_ = st.View(func(v *state.View) error { c, _, err = v.Cursor(state.LinkUser); return err })
		return c.UpdatedAt
	}
	before := cursorAt()
	for i := 10; i < 20; i++ {
		e.slapd.Add(t, person(i))
	}
	e.clock = e.clock.Add(time.Minute)
	ctx, cancel := context.WithCancel(context.Background())
	e.resetLog()
	e.setOnWrite(func(n int) {
		if n == 3 {
			cancel()
		}
	})
	if _, _, err := e.run(runOpts{ctx: ctx}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled run: %v", err)
	}
	e.setOnWrite(nil)
	if got := cursorAt(); !got.Equal(before) {
		t.Fatalf("the cursor advanced past writes that were never made (%v -> %v)", before, got)
	}
	plan, res := e.mustRun(runOpts{})
	if plan.Mode != "delta" || res.Done[scimsync.ActionCreate]+plan.Unchanged != 10 {
		t.Fatalf("replay: %s %+v", scimsync.SummaryLine(plan), res)
	}
	if n := len(e.targetUsers()); n != 20 {
		t.Fatalf("%d users, want 20", n)
	}
	e.resetLog()
	if e.mustRun(runOpts{}); len(e.writeLog()) != 0 {
		t.Fatalf("still writing: %v", e.writeLog())
	}
}

// TestInterruptedCreateIsRecoveredNotRepeated: a process killed after its POST reached the
// target but before the link was recorded leaves an intent; the next run finds the user and
// links it instead of creating it again.
func TestInterruptedCreateIsRecoveredNotRepeated(t *testing.T) {
	e := newEnv(t, 3)
	e.mustRun(runOpts{})
	e.slapd.Add(t, person(3))
	// the write that went out
	if _, err := e.client.CreateUser(context.Background(), scim.Doc{"schemas": []any{scim.UserSchema},
		"userName": "user003", "externalId": slapdtest.UUID(3)}); err != nil {
		t.Fatal(err)
	}
	st, err := state.Open(e.statePath, state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.PutIntents([]state.Intent{{Kind: state.LinkUser, Action: "create", ExternalID: slapdtest.UUID(3),
		Name: "user003", DN: slapdtest.PersonDN("user003"), RunID: 7, At: e.clock}}); err != nil {
		t.Fatal(err)
	}
	_ = st.Close()
	e.resetLog()
	plan, _ := e.mustRun(runOpts{})
	var recovered bool
	records := 0
	for _, it := range plan.Items() {
		recovered = recovered || (it.Action == scimsync.ActionRefresh && strings.Contains(it.Reason, "created by run 7"))
		if it.Action == scimsync.ActionRefresh && it.ExternalID == slapdtest.UUID(3) {
			records++
		}
	}
	if !recovered || records != 1 || countWrites(e.writeLog(), "POST") != 0 {
		t.Fatalf("plan %+v writes %v", plan.Items(), e.writeLog())
	}
	links := mustLinks(t, e.statePath)
	if l, ok := links[slapdtest.UUID(3)]; !ok || l.TargetID == "" {
		t.Fatalf("not linked: %+v", links)
	}
	if n := len(e.targetUsers()); n != 4 {
		t.Fatalf("%d users on the target", n)
	}
}

func mustLinks(t *testing.T, path string) map[string]state.Link {
	t.Helper()
	st, err := state.Open(path, state.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	links, err := st.Links()
	if err != nil {
		t.Fatal(err)
	}
	return links
}

// TestRestoredDirectoryRelinks (issue 9 case 7): a restore gives every entry a new entryUUID.
// Each managed user whose old entry is gone is re-linked to the new entry with its userName,
// keeping its target id; the deprovision limit counts re-links, so a whole directory is not
// re-linked silently.
func TestRestoredDirectoryRelinks(t *testing.T) {
	const n = 30
	e := newEnv(t, n)
	e.mustRun(runOpts{})
	before := e.targetUsers()
	for i := 0; i < n; i++ {
		e.slapd.Delete(t, slapdtest.PersonDN(fmt.Sprintf("user%03d", i)))
		e.slapd.Add(t, slapdtest.Person(fmt.Sprintf("user%03d", i), slapdtest.UUID(5000+i), "Given", fmt.Sprintf("Sn%d", i), fmt.Sprintf("user%03d@example.org", i)))
	}
	e.resetLog()
	plan, _, err := e.run(runOpts{})
	if !errors.Is(err, scimsync.ErrSafetyLimit) || plan.Blocked == nil || len(e.writeLog()) != 0 {
		t.Fatalf("30 re-links at once must stop: %v %+v %v", err, plan.Blocked, e.writeLog())
	}
	relinks := 0
	for _, it := range plan.Items() {
		if it.Relink != nil {
			relinks++
			if !it.Blocked || !strings.Contains(it.Reason, "re-linked: externalId") {
				t.Fatalf("relink item: %+v", it)
			}
		}
	}
	if relinks != n || plan.Summary[scimsync.ActionCreate] != 0 || plan.Summary[scimsync.ActionSkip] != 0 {
		t.Fatalf("%d re-links: %s", relinks, scimsync.SummaryLine(plan))
	}
	plan, res := e.mustRun(runOpts{plan: scimsync.PlanOptions{AllowDeprovision: n}})
	if res.Done[scimsync.ActionUpdate] != n || plan.Summary[scimsync.ActionDisable] != 0 {
		t.Fatalf("approved: %s %+v", scimsync.SummaryLine(plan), res)
	}
	after := e.targetUsers()
	for i := 0; i < n; i++ {
		old, neu := before[slapdtest.UUID(i)], after[slapdtest.UUID(5000+i)]
		if neu == nil || neu["id"] != old["id"] {
			t.Fatalf("user%03d not re-linked in place: before %v after %v", i, old, neu)
		}
	}
	if len(after) != n {
		t.Fatalf("%d users on the target", len(after))
	}
	e.resetLog()
	e.mustRun(runOpts{})
	if w := e.writeLog(); len(w) != 0 {
		t.Fatalf("after re-linking: %v", w)
	}
	e.fullFindsNothing(runOpts{})
}

// TestFullReconcileRepairsDrift: someone changes a managed user on the target. Delta runs trust
// state and do not see it (no target read); the next full reconcile repairs it with one PATCH
// and the plan says drift.
func TestFullReconcileRepairsDrift(t *testing.T) {
	e := newEnv(t, 5)
	e.mustRun(runOpts{})
	victim := e.targetUsers()[slapdtest.UUID(2)]
	id, _ := victim["id"].(string)
	want := victim["displayName"]
	if _, err := e.client.Patch(context.Background(), scimclient.Users, id,
		[]scim.PatchOp{{Op: "replace", Path: "displayName", Value: "Changed By Hand"}}, ""); err != nil {
		t.Fatal(err)
	}
	e.resetLog()
	if plan, _ := e.mustRun(runOpts{}); plan.Mode != "delta" || len(e.writeLog()) != 0 {
		t.Fatalf("a delta run wrote %v (%s)", e.writeLog(), scimsync.SummaryLine(plan))
	}
	e.resetLog()
	plan, res := e.mustRun(runOpts{plan: scimsync.PlanOptions{Full: true}})
	if plan.Mode != "full" || res.Done[scimsync.ActionUpdate] != 1 || countWrites(e.writeLog(), "PATCH") != 1 || len(e.writeLog()) != 1 {
		t.Fatalf("full reconcile: %s %v", scimsync.SummaryLine(plan), e.writeLog())
	}
	it := plan.Items()[0]
	if !it.Drift || !strings.Contains(it.Reason, "drift") || it.ExternalID != slapdtest.UUID(2) {
		t.Fatalf("the repair is not reported as drift: %+v", it)
	}
	if got := e.targetUsers()[slapdtest.UUID(2)]["displayName"]; got != want {
		t.Fatalf("displayName after the repair: %v, want %v", got, want)
	}
	e.fullFindsNothing(runOpts{})
}

// TestMappingChangeReadsInFull: a changed mapping invalidates the cursor; the next run reads
// both sides in full, says why, and writes the new values once.
func TestMappingChangeReadsInFull(t *testing.T) {
	e := newEnv(t, 6)
	e.mustRun(runOpts{})
	bySn := runOpts{mapping: func(m *scimsync.MappingConfig) { m.Attributes = map[string]string{"displayName": "{sn}"} }}
	e.resetLog()
	plan, res := e.mustRun(bySn)
	if plan.Mode != "full" || res.Done[scimsync.ActionUpdate] != 6 || countWrites(e.writeLog(), "PATCH") != 6 {
		t.Fatalf("mapping change: %s %v", scimsync.SummaryLine(plan), e.writeLog())
	}
	if !slices.ContainsFunc(plan.Notices, func(n string) bool { return strings.Contains(n, "configuration changed") }) {
		t.Fatalf("the plan does not say why it reads in full: %q", plan.Notices)
	}
	if got := e.targetUsers()[slapdtest.UUID(3)]["displayName"]; got != "Sn3" {
		t.Fatalf("displayName after the mapping change: %v", got)
	}
	e.resetLog()
	if plan, _ := e.mustRun(bySn); plan.Mode != "delta" || len(e.writeLog()) != 0 {
		t.Fatalf("the run after: %s %v", scimsync.SummaryLine(plan), e.writeLog())
	}
	e.fullFindsNothing(bySn)
}
