package sync_test

import (
	"context"
	"sort"
	"strings"
	"testing"

	"github.com/scimsync/scimsync/ldap/slapdtest"
	"github.com/scimsync/scimsync/scim"
	"github.com/scimsync/scimsync/scimclient"
	"github.com/scimsync/scimsync/scimclient/targettest"
	"github.com/scimsync/scimsync/state"
	scimsync "github.com/scimsync/scimsync/sync"
)

func groupsCfg(nesting string) *scimsync.GroupsConfig {
	g := scimsync.DefaultGroupsConfig()
	g.BaseDN, g.Nesting = slapdtest.Groups, nesting
	return &g
}

// groupDirectory is 10 users and groups of every kind, with the awkward cases: a comma in an RDN
// (written with one escaping, members naming it with another), a uniqueMember with its UID
// suffix, a posixGroup naming a uid that is nobody, a member outside the users' scope, a nested
// chain and a cycle.
func groupDirectory() string {
	var b strings.Builder
	for i := 0; i < 10; i++ {
		b.WriteString(person(i))
	}
	b.WriteString("dn: ou=outside," + slapdtest.Suffix + "\nobjectClass: organizationalUnit\nou: outside\n\n")
	b.WriteString("dn: uid=stranger,ou=outside," + slapdtest.Suffix + "\nobjectClass: inetOrgPerson\nuid: stranger\ncn: S\nsn: S\n\n")
	dn := slapdtest.PersonDN
	b.WriteString(slapdtest.GroupOfNames("staff", dn("user000"), dn("user001"), dn("user002"), dn("user003"), dn("user004"),
		"uid=stranger,ou=outside,"+slapdtest.Suffix))
	b.WriteString(slapdtest.GroupOfUniqueNames("Research, Europe", dn("user005"), dn("user006")+"#'0101'B"))
	b.WriteString(slapdtest.PosixGroup("posix", 5000, "user007", "user008", "nobody"))
	b.WriteString(slapdtest.GroupOfNames("outer", strings.Replace(slapdtest.GroupDN("inner"), "cn=", "CN=", 1), dn("user009")))
	b.WriteString(slapdtest.GroupOfNames("inner", dn("user001"), slapdtest.GroupDN("outer")))
	b.WriteString(slapdtest.GroupOfNames("chain-a", slapdtest.GroupDN("chain-b")))
	b.WriteString(slapdtest.GroupOfNames("chain-b", slapdtest.GroupDN("chain-c")))
	b.WriteString(slapdtest.GroupOfNames("chain-c", dn("user002")))
	// a member naming the comma group with hex escaping, as the memberof overlay writes it
	b.WriteString(slapdtest.GroupOfNames("research-all", `cn=Research\2C Europe,`+slapdtest.Groups))
	return b.String()
}

// targetGroups reads every group back from the target: displayName -> member userNames (and
// group names, marked with @).
func (e *env) targetGroups() map[string][]string {
	e.t.Helper()
	users := map[string]string{}
	for _, u := range e.targetUsers() {
		users[u["id"].(string)] = u["userName"].(string)
	}
	groups := map[string]scim.Doc{}
	err := e.client.List(context.Background(), scimclient.Groups, func(r scimclient.Resource) error {
		groups[r.ID()] = r.Doc
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string][]string{}
	for _, g := range groups {
		name := g["displayName"].(string)
		out[name] = []string{}
		for _, id := range scim.MemberIDs(g["members"]) {
			if n, ok := users[id]; ok {
				out[name] = append(out[name], n)
			} else if sub, ok := groups[id]; ok {
				out[name] = append(out[name], "@"+sub["displayName"].(string))
			} else {
				out[name] = append(out[name], "?"+id)
			}
		}
		sort.Strings(out[name])
	}
	return out
}

func TestGroupsFlattenedWithEveryMembershipKind(t *testing.T) {
	e := newEnvWithSeed(t, groupDirectory())
	o := runOpts{groups: groupsCfg(scimsync.NestingFlatten), ldap: inPeople}
	plan, res := e.mustRun(o)
	if len(res.Failed) > 0 || plan.Kinds[scimsync.KindGroup][scimsync.ActionCreate] != 9 {
		t.Fatalf("%s %+v", scimsync.SummaryLine(plan), res.Failed)
	}
	want := map[string][]string{
		"staff":            {"user000", "user001", "user002", "user003", "user004"},
		"Research, Europe": {"user005", "user006"},
		"posix":            {"user007", "user008"},
		"outer":            {"user001", "user009"},
		"inner":            {"user001", "user009"},
		"chain-a":          {"user002"},
		"chain-b":          {"user002"},
		"chain-c":          {"user002"},
		"research-all":     {"user005", "user006"},
	}
	got := e.targetGroups()
	for name, members := range want {
		if strings.Join(got[name], ",") != strings.Join(members, ",") {
			t.Errorf("%s: %v, want %v", name, got[name], members)
		}
	}
	if len(got) != len(want) {
		t.Errorf("groups on the target: %v", got)
	}
	var staffOutside, posixOutside int
	for _, it := range plan.Items() {
		if it.Kind == scimsync.KindGroup && it.Members != nil {
			switch it.Name {
			case "staff":
				staffOutside = it.Members.Outside
			case "posix":
				posixOutside = it.Members.Outside
			}
		}
	}
	if staffOutside != 1 || posixOutside != 1 {
		t.Errorf("members left out: staff %d, posix %d; want 1 each (the stranger, nobody)", staffOutside, posixOutside)
	}
	if w := strings.Join(plan.Warnings, "\n"); !strings.Contains(w, "a cycle") {
		t.Errorf("the cycle is not reported: %q", w)
	}
	// a second run writes nothing; a full reconcile agrees
	e.resetLog()
	plan, _ = e.mustRun(o)
	if w := e.writeLog(); len(w) != 0 || plan.Pending() {
		t.Fatalf("resync wrote %v (%s)", w, scimsync.SummaryLine(plan))
	}
	o2 := o
	o2.plan.Full = true
	e.resetLog()
	e.mustRun(o2)
	if w := e.writeLog(); len(w) != 0 {
		t.Fatalf("full reconcile wrote %v", w)
	}
}

func TestGroupDeltas(t *testing.T) {
	e := newEnvWithSeed(t, groupDirectory())
	o := runOpts{groups: groupsCfg(scimsync.NestingFlatten), ldap: inPeople}
	e.mustRun(o)
	ids := func() map[string]string {
		out := map[string]string{}
		_ = e.client.List(context.Background(), scimclient.Groups, func(r scimclient.Resource) error {
			out[r.Doc["displayName"].(string)] = r.ID()
			return nil
		})
		return out
	}
	before := ids()
	step := func(name string, change func(), wantPatches int, check func()) {
		t.Helper()
		change()
		e.resetLog()
		plan, res := e.mustRun(o)
		w := e.writeLog()
		if len(res.Failed) > 0 || countWrites(w, "PATCH") != wantPatches || len(w) != wantPatches {
			t.Fatalf("%s: writes %v, want %d PATCH (%s)", name, w, wantPatches, scimsync.SummaryLine(plan))
		}
		for _, r := range w {
			if !strings.Contains(r, "/Groups/") {
				t.Fatalf("%s: a write outside /Groups: %v", name, w)
			}
		}
		if check != nil {
			check()
		}
		e.fullFindsNothing(o)
	}
	step("add one member", func() { e.slapd.AddValues(t, slapdtest.GroupDN("staff"), "member", slapdtest.PersonDN("user005")) }, 1, func() {
		if got := e.targetGroups()["staff"]; len(got) != 6 {
			t.Fatalf("staff: %v", got)
		}
	})
	step("remove one member", func() { e.slapd.DeleteValues(t, slapdtest.GroupDN("staff"), "member", slapdtest.PersonDN("user000")) }, 1, nil)
	// a change deep in a chain reaches every group above it
	step("nested change", func() { e.slapd.AddValues(t, slapdtest.GroupDN("chain-c"), "member", slapdtest.PersonDN("user003")) }, 3, func() {
		if got := e.targetGroups()["chain-a"]; strings.Join(got, ",") != "user002,user003" {
			t.Fatalf("chain-a: %v", got)
		}
	})
	step("rename", func() { e.slapd.Rename(t, slapdtest.GroupDN("posix"), "cn=unix", "") }, 1, func() {
		if after := ids(); after["unix"] != before["posix"] || after["posix"] != "" {
			t.Fatalf("renamed group has another id: %v -> %v", before, after)
		}
	})
	// a deleted group is deleted on the target (groups.deprovision: delete)
	e.slapd.Delete(t, slapdtest.GroupDN("research-all"))
	e.resetLog()
	plan, _ := e.mustRun(o)
	if countWrites(e.writeLog(), "DELETE") != 1 || plan.Kinds[scimsync.KindGroup][scimsync.ActionDelete] != 1 {
		t.Fatalf("group deletion: %v %s", e.writeLog(), scimsync.SummaryLine(plan))
	}
	if _, still := e.targetGroups()["research-all"]; still {
		t.Fatal("deleted group still on the target")
	}
	// nothing changed: no request
	e.resetLog()
	e.mustRun(o)
	if r := e.requestLog(); len(r) != 0 {
		t.Fatalf("an empty delta asked the target %v", r)
	}
}

func TestGroupsPreserveNestingAndLimits(t *testing.T) {
	e := newEnvWithSeed(t, groupDirectory())
	o := runOpts{groups: groupsCfg(scimsync.NestingPreserve), ldap: inPeople}
	e.mustRun(o)
	got := e.targetGroups()
	if a := strings.Join(got["chain-a"], ","); a != "@chain-b" && a != "" {
		t.Fatalf("chain-a: %v", got["chain-a"])
	}
	// nested groups created in the same run join their parents on the next run at the latest
	e.mustRun(o)
	got = e.targetGroups()
	if strings.Join(got["chain-a"], ",") != "@chain-b" || strings.Join(got["outer"], ",") != "@inner,user009" {
		t.Fatalf("preserved nesting: chain-a %v outer %v", got["chain-a"], got["outer"])
	}
	e.resetLog()
	if plan, _ := e.mustRun(o); plan.Pending() || len(e.writeLog()) != 0 {
		t.Fatalf("resync wrote %v", e.writeLog())
	}
	// deleting more groups than the limit stops before any deletion
	for _, n := range []string{"staff", "posix", "outer", "inner", "chain-a", "chain-b", "chain-c", "research-all", "Research, Europe"} {
		e.slapd.Delete(t, slapdtest.GroupDN(n))
	}
	limited := o
	g := *o.groups
	g.MaxDeprovision = 3
	limited.groups = &g
	e.resetLog()
	plan, _, err := e.run(limited)
	if err == nil || plan.GroupsBlocked == nil || countWrites(e.writeLog(), "DELETE") != 0 {
		t.Fatalf("9 group deletions over a limit of 3: %v %+v %v", err, plan.GroupsBlocked, e.writeLog())
	}
}

func TestTargetWithoutGroupsGetsNone(t *testing.T) {
	tg := targettest.Start(t)
	tg.Set(func(b *targettest.Behaviour) { b.NoResourceTypes = true })
	e := newEnvWithSeed(t, groupDirectory())
	e.targetURL, e.token = tg.URL, tg.Token
	e.client = e.newClient()
	plan, res := e.mustRun(runOpts{groups: groupsCfg(scimsync.NestingFlatten), ldap: inPeople})
	if len(res.Failed) > 0 || len(plan.Kinds[scimsync.KindGroup]) != 0 || !strings.Contains(strings.Join(plan.Warnings, "\n"), "no Group resource type") {
		t.Fatalf("%s %v", scimsync.SummaryLine(plan), plan.Warnings)
	}
	for _, r := range tg.Requests() {
		if strings.Contains(r.URI, "/Groups") {
			t.Fatalf("a request to /Groups: %s %s", r.Method, r.URI)
		}
	}
}

// newEnvWithSeed is newEnv with the directory's entries given as LDIF.
func newEnvWithSeed(t *testing.T, seed string) *env {
	t.Helper()
	e := newEnv(t, 0)
	e.slapd.Stop()
	e.slapd = slapdtest.Start(t, seed)
	return e
}

// TestPreserveFlattensForATargetWithoutNestedGroups: groups.nesting preserve against a target
// whose Group schema takes only users as members (and refuses a group member): the plan says so
// and sends the groups flattened, which the target accepts; the next run writes nothing.
func TestPreserveFlattensForATargetWithoutNestedGroups(t *testing.T) {
	tg := targettest.Start(t)
	tg.Set(func(b *targettest.Behaviour) { b.UsersOnlyInGroups = true })
	e := newEnvWithSeed(t, groupDirectory())
	e.targetURL, e.token = tg.URL, tg.Token
	e.client = e.newClient()
	o := runOpts{groups: groupsCfg(scimsync.NestingPreserve), ldap: inPeople}
	plan, res := e.mustRun(o)
	if len(res.Failed) > 0 || !strings.Contains(strings.Join(plan.Notices, "\n"), "nested groups are flattened") {
		t.Fatalf("%s %+v %q", scimsync.SummaryLine(plan), res.Failed, plan.Notices)
	}
	got := e.targetGroups()
	if strings.Join(got["chain-a"], ",") != "user002" || strings.Join(got["outer"], ",") != "user001,user009" {
		t.Fatalf("not flattened: chain-a %v outer %v", got["chain-a"], got["outer"])
	}
	for name, members := range got {
		for _, m := range members {
			if strings.HasPrefix(m, "@") {
				t.Fatalf("group %s has the group member %s", name, m)
			}
		}
	}
	tg.ResetCounts()
	if plan, _ := e.mustRun(o); plan.Pending() || tg.Writes() != 0 {
		t.Fatalf("the run after wrote %d: %s", tg.Writes(), scimsync.SummaryLine(plan))
	}
	// the target learns nested groups. A delta run goes by the capabilities kept from the last
	// discovery (a loosened schema refuses nothing, so nothing tells it): still flattened, and
	// nothing to write
	tg.Set(func(b *targettest.Behaviour) { b.UsersOnlyInGroups = false })
	tg.ResetCounts()
	if plan, _ := e.mustRun(o); plan.Pending() || tg.Writes() != 0 || plan.Discovery == nil || !plan.Discovery.Kept {
		t.Fatalf("the delta after the schema change wrote %d: %s %+v", tg.Writes(), scimsync.SummaryLine(plan), plan.Discovery)
	}
	// the next full reconcile reads the target's capabilities again: the nesting in effect
	// changes, so the groups are read in full and sent preserved
	full := o
	full.plan.Full = true
	plan, res = e.mustRun(full)
	if len(res.Failed) > 0 || plan.GroupRead == nil || !plan.GroupRead.Full || plan.Mode != "full" || plan.Discovery.Kept {
		t.Fatalf("after the schema change: %s %+v %+v", scimsync.SummaryLine(plan), plan.GroupRead, res.Failed)
	}
	e.mustRun(o) // nested groups created earlier are members by now; a group made this run joins next run
	if got := e.targetGroups(); strings.Join(got["chain-a"], ",") != "@chain-b" || strings.Join(got["outer"], ",") != "@inner,user009" {
		t.Fatalf("not preserved after the schema change: chain-a %v outer %v", got["chain-a"], got["outer"])
	}
}

// TestGroupsAdoptedHandsOffDepthAndPut covers what the other group tests do not: a group that
// already exists on the target is adopted by displayName; a groups.overrides rule makes one
// hands-off (reported, never written); groups.max_depth cuts a chain and says so; and a target
// without PATCH gets each group as a PUT, one request for a member leaving.
func TestGroupsAdoptedHandsOffDepthAndPut(t *testing.T) {
	tg := targettest.Start(t)
	tg.Set(func(b *targettest.Behaviour) { b.NoPatch = true })
	e := newEnvWithSeed(t, groupDirectory())
	e.targetURL, e.token = tg.URL, tg.Token
	e.client = e.newClient()
	ctx := context.Background()
	for _, name := range []string{"staff", "posix"} {
		if _, err := e.client.Create(ctx, scimclient.Groups, scim.Doc{"schemas": []any{scim.GroupSchema}, "displayName": name}); err != nil {
			t.Fatal(err)
		}
	}
	g := groupsCfg(scimsync.NestingFlatten)
	g.MaxDepth = 2
	g.Overrides = []scimsync.OverrideRule{{UserName: "posix", Mode: scim.ModeCMS}}
	o := runOpts{groups: g, ldap: inPeople}
	tg.ResetCounts()
	plan, res := e.mustRun(o)
	if len(res.Failed) > 0 {
		t.Fatalf("%+v", res.Failed)
	}
	byName := groupItems(plan)
	if it := byName["staff"]; it.Action != scimsync.ActionUpdate || !strings.Contains(it.Reason, "adopt") {
		t.Fatalf("staff is not adopted: %+v", it)
	}
	if it := byName["posix"]; it.Action != scimsync.ActionSkip {
		t.Fatalf("posix is not hands-off: %+v", it)
	}
	if !strings.Contains(strings.Join(plan.Warnings, "\n"), "deeper than groups.max_depth") {
		t.Fatalf("no depth warning: %q", plan.Warnings)
	}
	for _, r := range tg.Requests() {
		if r.Method == "PATCH" {
			t.Fatalf("a PATCH to a target without PATCH: %s", r.URI)
		}
	}
	got := e.targetGroups()
	if strings.Join(got["staff"], ",") != "user000,user001,user002,user003,user004" || len(got["posix"]) != 0 ||
		len(got["chain-a"]) != 0 || strings.Join(got["chain-b"], ",") != "user002" {
		t.Fatalf("staff %v posix %v chain-a %v chain-b %v", got["staff"], got["posix"], got["chain-a"], got["chain-b"])
	}
	e.slapd.DeleteValues(t, slapdtest.GroupDN("staff"), "member", slapdtest.PersonDN("user001"))
	tg.ResetCounts()
	e.mustRun(o)
	var writes []string
	for _, r := range tg.Requests() {
		if r.Method != "GET" {
			writes = append(writes, r.Method+" "+r.URI)
		}
	}
	if len(writes) != 1 || !strings.HasPrefix(writes[0], "PUT ") || !strings.Contains(writes[0], "/Groups/") {
		t.Fatalf("a member leaving staff: %v", writes)
	}
	if got := e.targetGroups(); strings.Join(got["staff"], ",") != "user000,user002,user003,user004" {
		t.Fatalf("staff after: %v", got["staff"])
	}
	tg.ResetCounts()
	if plan, _ := e.mustRun(o); plan.Pending() || tg.Writes() != 0 {
		t.Fatalf("the run after wrote %d: %s", tg.Writes(), scimsync.SummaryLine(plan))
	}
}

// TestInterruptedGroupCreateIsRecoveredNotRepeated: a run killed after its group POST reached
// the target, before recording it, leaves an intent; the next run finds the group by
// externalId, links it as created, adds its members, and never POSTs it again.
func TestInterruptedGroupCreateIsRecoveredNotRepeated(t *testing.T) {
	e := newEnvWithSeed(t, groupDirectory())
	o := runOpts{groups: groupsCfg(scimsync.NestingFlatten), ldap: inPeople}
	e.mustRun(o)
	e.slapd.Add(t, slapdtest.GroupOfNames("late", slapdtest.PersonDN("user001"), slapdtest.PersonDN("user002")))
	dry := o
	dry.dryRun = true
	plan, _, err := e.run(dry)
	if err != nil {
		t.Fatal(err)
	}
	var ext string
	for _, it := range plan.Items() {
		if it.Kind == scimsync.KindGroup && it.Name == "late" && it.Action == scimsync.ActionCreate {
			ext = it.ExternalID
		}
	}
	if ext == "" {
		t.Fatalf("no create planned for the new group: %s", scimsync.SummaryLine(plan))
	}
	// the write that went out, and the intent the killed run left
	if _, err := e.client.Create(context.Background(), scimclient.Groups, scim.Doc{"schemas": []any{scim.GroupSchema},
		"displayName": "late", "externalId": ext}); err != nil {
		t.Fatal(err)
	}
	st, err := state.Open(e.statePath, state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.PutIntents([]state.Intent{{Kind: state.LinkGroup, Action: "create", ExternalID: ext, Name: "late",
		DN: slapdtest.GroupDN("late"), RunID: 7, At: e.clock}}); err != nil {
		t.Fatal(err)
	}
	_ = st.Close()
	e.resetLog()
	plan, res := e.mustRun(o)
	if len(res.Failed) > 0 || countWrites(e.writeLog(), "POST") != 0 {
		t.Fatalf("recovery: %s %+v %v", scimsync.SummaryLine(plan), res.Failed, e.writeLog())
	}
	// the intent did the work: a refresh links the group as created, its members come as an
	// update of a group the sync created, never an adoption
	var recovered bool
	for _, it := range plan.Items() {
		if it.Kind != scimsync.KindGroup || it.ExternalID != ext {
			continue
		}
		recovered = recovered || (it.Action == scimsync.ActionRefresh && strings.Contains(it.Reason, "created by run 7"))
		if it.Adopt {
			t.Fatalf("the recovered group is adopted: %+v", it)
		}
	}
	if !recovered {
		t.Fatalf("no recovery in the plan: %+v", plan.Items())
	}
	st, err = state.Open(e.statePath, state.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	var link state.Link
	_ = st.View(func(v *state.View) error { link, _, err = v.Link(state.LinkGroup, ext); return err })
	_ = st.Close()
	if link.Origin != state.OriginCreated || link.TargetID == "" {
		t.Fatalf("the group's link: %+v", link)
	}
	got := e.targetGroups()
	if strings.Join(got["late"], ",") != "user001,user002" {
		t.Fatalf("late: %v", got["late"])
	}
	n := 0
	_ = e.client.List(context.Background(), scimclient.Groups, func(r scimclient.Resource) error {
		if r.Doc["displayName"] == "late" {
			n++
		}
		return nil
	})
	if n != 1 {
		t.Fatalf("%d groups named late on the target", n)
	}
	e.resetLog()
	if plan, _ := e.mustRun(o); plan.Pending() || len(e.writeLog()) != 0 {
		t.Fatalf("the run after wrote %v: %s", e.writeLog(), scimsync.SummaryLine(plan))
	}
	full := o
	full.plan.Full = true
	e.fullFindsNothing(full)
}

// TestGroupOverridesFromTheAdministrator: `scimsync override --group` makes a group hands-off
// (CMS) or owned (DEFAULT, even against a groups.overrides rule), before the rules, as for
// users; a user's override of the same name does not touch the group.
func TestGroupOverridesFromTheAdministrator(t *testing.T) {
	e := newEnvWithSeed(t, groupDirectory())
	st, err := state.Open(e.statePath, state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, err := range []error{
		st.SetGroupOverride("Staff", state.ModeCMS, e.clock),
		st.SetGroupOverride("posix", state.ModeDefault, e.clock),
		st.SetOverride("chain-a", state.ModeCMS, e.clock), // a user override, not the group's
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	_ = st.Close()
	g := groupsCfg(scimsync.NestingFlatten)
	g.Overrides = []scimsync.OverrideRule{{UserName: "posix", Mode: scim.ModeCMS}}
	o := runOpts{groups: g, ldap: inPeople}
	plan, res := e.mustRun(o)
	if len(res.Failed) > 0 {
		t.Fatalf("%+v", res.Failed)
	}
	byName := groupItems(plan)
	if it := byName["staff"]; it.Action != scimsync.ActionSkip || !strings.Contains(it.Reason, "scimsync override --group") {
		t.Fatalf("staff: %+v", it)
	}
	if byName["posix"].Action != scimsync.ActionCreate || byName["chain-a"].Action != scimsync.ActionCreate {
		t.Fatalf("posix %+v chain-a %+v", byName["posix"], byName["chain-a"])
	}
	got := e.targetGroups()
	if _, ok := got["staff"]; ok {
		t.Fatalf("the hands-off group was created: %v", got["staff"])
	}
	if plan, _ := e.mustRun(o); plan.Mode != "delta" || plan.Pending() {
		t.Fatalf("the run after: %s", scimsync.SummaryLine(plan))
	}
	// cleared: the group is in no delta, but an override change makes the next run a full
	// reconcile, which creates it
	st, err = state.Open(e.statePath, state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.ClearGroupOverride("staff"); err != nil {
		t.Fatal(err)
	}
	_ = st.Close()
	if plan, _ := e.mustRun(o); plan.Mode != "full" {
		t.Fatalf("the run after the override was cleared: %s", scimsync.SummaryLine(plan))
	}
	if got := e.targetGroups(); len(got["staff"]) != 5 {
		t.Fatalf("staff after the override is cleared: %v", got["staff"])
	}
}

// groupItems is a plan's group items by name.
func groupItems(plan *scimsync.Plan) map[string]scimsync.Item {
	out := map[string]scimsync.Item{}
	for _, it := range plan.Items() {
		if it.Kind == scimsync.KindGroup {
			out[it.Name] = it
		}
	}
	return out
}
