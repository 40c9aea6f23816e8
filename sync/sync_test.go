package sync_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/scimsync/scimsync/config"
	"github.com/scimsync/scimsync/ldap"
	"github.com/scimsync/scimsync/ldap/slapdtest"
	"github.com/scimsync/scimsync/scim"
	"github.com/scimsync/scimsync/scimclient"
	"github.com/scimsync/scimsync/scimserver"
	"github.com/scimsync/scimsync/state"
	scimsync "github.com/scimsync/scimsync/sync"
)

const token = "sync-test-token-abcdef"

// env is one directory (slapd) and one target (scimsync's SCIM server over HTTP, behind a
// request log), plus the sync's own state file.
type env struct {
	t         *testing.T
	slapd     *slapdtest.Server
	targetURL string
	statePath string
	mu        gosync.Mutex
	writes    []string    // "METHOD path" of every non-GET request the target received
	requests  []string    // "METHOD path" of every request
	onWrite   func(n int) // called after each write is served
	clock     time.Time
	client    *scimclient.Client
	token     string                         // the target's bearer token
	tune      func(*scimclient.TargetConfig) // adjusts the client of every run
	log       *zap.Logger                    // the engine's logger; zaptest when nil
	directory *ldap.Config                   // the source when it is not slapd (Samba, an LDIF)
}

func person(i int) string {
	return slapdtest.Person(fmt.Sprintf("user%03d", i), slapdtest.UUID(i), "Given", fmt.Sprintf("Sn%d", i), fmt.Sprintf("user%03d@example.org", i))
}

func newEnv(t *testing.T, users int) *env {
	t.Helper()
	var seed strings.Builder
	for i := 0; i < users; i++ {
		seed.WriteString(person(i))
	}
	e := &env{t: t, slapd: slapdtest.Start(t, seed.String()), statePath: filepath.Join(t.TempDir(), "sync.db"),
		clock: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	st, err := state.Open(filepath.Join(t.TempDir(), "target.db"), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	scfg := scimserver.DefaultServerConfig()
	scfg.Tokens = []scimserver.TokenConfig{{Name: "sync", Token: config.NewSecret(token)}}
	srv, err := scimserver.NewServer(scfg, st, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		srv.Handler().ServeHTTP(w, r)
		e.mu.Lock()
		e.requests = append(e.requests, r.Method+" "+r.URL.Path)
		e.mu.Unlock()
		if r.Method != http.MethodGet {
			e.mu.Lock()
			e.writes = append(e.writes, r.Method+" "+r.URL.Path)
			n := len(e.writes)
			hook := e.onWrite
			e.mu.Unlock()
			if hook != nil {
				hook(n)
			}
		}
	})}
	go func() { _ = hs.Serve(ln) }()
	t.Cleanup(func() { _ = hs.Close(); _ = st.Close() })
	e.targetURL = "http://" + ln.Addr().String() + "/scim/v2"
	e.client = e.newClient()
	return e
}

func (e *env) newClient() *scimclient.Client {
	cfg := scimclient.DefaultTargetConfig()
	cfg.URL = e.targetURL
	cfg.Token = config.NewSecret(e.token)
	if e.token == "" {
		cfg.Token = config.NewSecret(token)
	}
	cfg.RequestsPerSecond = 0
	if e.tune != nil {
		e.tune(&cfg)
	}
	c, err := scimclient.NewClient(cfg, e.logger())
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

func (e *env) logger() *zap.Logger {
	if e.log != nil {
		return e.log
	}
	return zaptest.NewLogger(e.t, zaptest.Level(zap.WarnLevel))
}

func (e *env) writeLog() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.writes...)
}

func (e *env) setOnWrite(f func(n int)) {
	e.mu.Lock()
	e.onWrite = f
	e.mu.Unlock()
}

func (e *env) resetLog() {
	e.mu.Lock()
	e.writes, e.requests = nil, nil
	e.mu.Unlock()
}

// allRequests is every request since the last reset, discovery included.
func (e *env) allRequests() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.requests...)
}

// requestLog is every request since the last reset, discovery (/ServiceProviderConfig,
// /ResourceTypes, /Schemas) left out.
func (e *env) requestLog() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for _, r := range e.requests {
		if !strings.HasSuffix(r, "/ServiceProviderConfig") && !strings.HasSuffix(r, "/ResourceTypes") && !strings.HasSuffix(r, "/Schemas") {
			out = append(out, r)
		}
	}
	return out
}

type runOpts struct {
	profile string
	dryRun  bool
	plan    scimsync.PlanOptions
	sync    func(*scimsync.Config)
	mapping func(*scimsync.MappingConfig)
	ldap    func(*ldap.Config)
	groups  *scimsync.GroupsConfig
	ctx     context.Context
}

// engine builds the run's engine over a freshly opened state file; done closes it.
func (e *env) engine(o runOpts) (*scimsync.Engine, func()) {
	e.t.Helper()
	lcfg := ldap.DefaultConfig()
	if e.directory != nil {
		lcfg = *e.directory
	} else {
		lcfg.URL, lcfg.BindDN, lcfg.BindPassword, lcfg.BaseDN = e.slapd.URL, slapdtest.AdminDN, config.NewSecret(slapdtest.AdminPW), slapdtest.Suffix
		lcfg.PageSize = 7
	}
	if o.ldap != nil {
		o.ldap(&lcfg)
	}
	src, err := ldap.New(lcfg)
	if err != nil {
		e.t.Fatal(err)
	}
	mcfg := scimsync.MappingConfig{}
	if o.mapping != nil {
		o.mapping(&mcfg)
	}
	profile := o.profile
	if profile == "" {
		profile = "generic"
	}
	mapping, ps := scimsync.NewMapping(profile, mcfg)
	if len(ps) > 0 {
		e.t.Fatal(ps)
	}
	scfg := scimsync.DefaultConfig()
	if o.sync != nil {
		o.sync(&scfg)
	}
	st, err := state.Open(e.statePath, state.Options{ReadOnly: o.dryRun})
	if err != nil {
		e.t.Fatal(err)
	}
	eng, err := scimsync.New(scfg, mapping, src, e.newClient(), st, e.logger(),
		scimsync.Options{Concurrency: 4, Now: func() time.Time { return e.clock }, Groups: o.groups, Target: e.targetURL})
	if err != nil {
		e.t.Fatal(err)
	}
	return eng, func() { _ = st.Close() }
}

func (e *env) run(o runOpts) (*scimsync.Plan, *scimsync.Result, error) {
	e.t.Helper()
	eng, done := e.engine(o)
	defer done()
	ctx := o.ctx
	if ctx == nil {
		ctx = context.Background()
	}
	plan, err := eng.Plan(ctx, o.plan)
	if err != nil || o.dryRun {
		return plan, nil, err
	}
	res, err := eng.Apply(ctx, plan, nil)
	return plan, res, err
}

func (e *env) mustRun(o runOpts) (*scimsync.Plan, *scimsync.Result) {
	e.t.Helper()
	p, r, err := e.run(o)
	if err != nil {
		e.t.Fatal(err)
	}
	return p, r
}

func (e *env) targetUsers() map[string]scim.Doc {
	e.t.Helper()
	out := map[string]scim.Doc{}
	err := e.client.ListUsers(context.Background(), func(d scim.Doc) error {
		ext, _ := d["externalId"].(string)
		if _, dup := out[ext]; dup && ext != "" {
			e.t.Errorf("duplicate externalId %s on the target", ext)
		}
		out[ext] = d
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

func countWrites(log []string, method string) int {
	n := 0
	for _, l := range log {
		if strings.HasPrefix(l, method+" ") {
			n++
		}
	}
	return n
}

func TestInitialSyncThenSecondRunSendsNoWrites(t *testing.T) {
	e := newEnv(t, 30)
	plan, res := e.mustRun(runOpts{})
	if plan.Summary[scimsync.ActionCreate] != 30 || res.Done[scimsync.ActionCreate] != 30 {
		t.Fatalf("first run: %s / %+v", scimsync.SummaryLine(plan), res)
	}
	users := e.targetUsers()
	u := users[slapdtest.UUID(3)]
	ext := u[scim.ScimsyncSchema].(map[string]any)
	if len(users) != 30 || u["userName"] != "user003" || ext["ldapUserDN"] != "uid=user003,"+slapdtest.People || ext["managementMode"] != "DEFAULT" {
		t.Fatalf("target user: %v", u)
	}
	e.resetLog()
	plan, _ = e.mustRun(runOpts{})
	if w := e.writeLog(); len(w) != 0 || plan.Mode != "delta" || plan.Read.Entries != 0 || plan.Pending() {
		t.Fatalf("second run wrote %v; %s", w, scimsync.SummaryLine(plan))
	}
	// a full reconcile finds every user as it should be
	e.resetLog()
	plan, _ = e.mustRun(runOpts{plan: scimsync.PlanOptions{Full: true}})
	if w := e.writeLog(); len(w) != 0 || plan.Mode != "full" || plan.Unchanged != 30 || plan.Pending() {
		t.Fatalf("full reconcile wrote %v; %s", w, scimsync.SummaryLine(plan))
	}
}

func TestOneAttributeChangedIsExactlyOneUpdate(t *testing.T) {
	e := newEnv(t, 10)
	e.mustRun(runOpts{})
	e.slapd.Modify(t, "dn: uid=user004,"+slapdtest.People+"\nchangetype: modify\nreplace: title\ntitle: Engineer\n")
	e.resetLog()
	plan, _ := e.mustRun(runOpts{})
	if w := e.writeLog(); len(w) != 1 || countWrites(w, "PATCH") != 1 {
		t.Fatalf("writes %v", w)
	}
	it := plan.Items()[0]
	if it.Action != scimsync.ActionUpdate || len(it.Changes) != 1 || it.Changes[0].Attribute != "title" || it.Changes[0].New != "Engineer" {
		t.Fatalf("plan %+v", plan.Items())
	}
	if e.targetUsers()[slapdtest.UUID(4)]["title"] != "Engineer" {
		t.Fatal("title not on target")
	}
}

func TestMovedDNIsAnUpdateNotARecreate(t *testing.T) {
	e := newEnv(t, 5)
	e.mustRun(runOpts{})
	before := e.targetUsers()[slapdtest.UUID(2)]["id"]
	e.slapd.Modify(t, "dn: uid=user002,"+slapdtest.People+"\nchangetype: modrdn\nnewrdn: uid=user002\ndeleteoldrdn: 1\nnewsuperior: "+slapdtest.Moved+"\n")
	e.resetLog()
	plan, _ := e.mustRun(runOpts{})
	if w := e.writeLog(); len(w) != 1 || countWrites(w, "PATCH") != 1 {
		t.Fatalf("writes %v, plan %s", w, scimsync.SummaryLine(plan))
	}
	after := e.targetUsers()[slapdtest.UUID(2)]
	if after["id"] != before || after[scim.ScimsyncSchema].(map[string]any)["ldapUserDN"] != "uid=user002,"+slapdtest.Moved {
		t.Fatalf("after move: %v", after)
	}
}

func TestRemovedUserIsDisabledThenDeletedAfterGrace(t *testing.T) {
	e := newEnv(t, 30)
	grace := func(c *scimsync.Config) { c.DeleteAfter = config.Duration(72 * time.Hour) }
	e.mustRun(runOpts{sync: grace})
	e.slapd.Modify(t, "dn: uid=user007,"+slapdtest.People+"\nchangetype: delete\n")
	e.resetLog()
	plan, _ := e.mustRun(runOpts{sync: grace})
	if plan.Summary[scimsync.ActionDisable] != 1 || countWrites(e.writeLog(), "PATCH") != 1 {
		t.Fatalf("%s %v", scimsync.SummaryLine(plan), e.writeLog())
	}
	if u := e.targetUsers()[slapdtest.UUID(7)]; u["active"] != false {
		t.Fatalf("not disabled: %v", u)
	}
	e.clock = e.clock.Add(24 * time.Hour)
	e.resetLog()
	e.mustRun(runOpts{sync: grace})
	if w := e.writeLog(); len(w) != 0 {
		t.Fatalf("within the grace period: %v", w)
	}
	e.clock = e.clock.Add(72 * time.Hour)
	plan, _ = e.mustRun(runOpts{sync: grace})
	if plan.Summary[scimsync.ActionDelete] != 1 || countWrites(e.writeLog(), "DELETE") != 1 {
		t.Fatalf("after grace: %s %v", scimsync.SummaryLine(plan), e.writeLog())
	}
	if _, still := e.targetUsers()[slapdtest.UUID(7)]; still {
		t.Fatal("user still on target after the grace period")
	}
}

func TestPreexistingTargetUserIsAdopted(t *testing.T) {
	e := newEnv(t, 5)
	// made by someone else, with no externalId: found by userName, adopted, not duplicated
	if _, err := e.client.CreateUser(context.Background(), scim.Doc{"schemas": []any{scim.UserSchema}, "userName": "user001", "nickName": "Keep me"}); err != nil {
		t.Fatal(err)
	}
	// and one that is nobody's in the directory: never touched
	if _, err := e.client.CreateUser(context.Background(), scim.Doc{"schemas": []any{scim.UserSchema}, "userName": "outsider"}); err != nil {
		t.Fatal(err)
	}
	plan, _ := e.mustRun(runOpts{})
	var adopted *scimsync.Item
	for i, it := range plan.Items() {
		if it.Name == "user001" {
			adopted = &plan.Items()[i]
		}
	}
	if adopted == nil || adopted.Action != scimsync.ActionUpdate || !adopted.Adopt || adopted.MatchedBy != "userName" {
		t.Fatalf("plan %+v", plan.Items())
	}
	users := e.targetUsers()
	if len(users) != 6 || users[slapdtest.UUID(1)]["nickName"] != "Keep me" {
		t.Fatalf("after adoption: %d users, user001 %v", len(users), users[slapdtest.UUID(1)])
	}
	e.slapd.Modify(t, "dn: uid=user001,"+slapdtest.People+"\nchangetype: delete\n")
	plan, _ = e.mustRun(runOpts{})
	if plan.Summary[scimsync.ActionDisable] != 1 || e.targetUsers()[""]["userName"] != "outsider" {
		t.Fatalf("adopted user not deprovisioned or outsider touched: %s", scimsync.SummaryLine(plan))
	}
}

func TestHandsOffUsersAreNeverTouched(t *testing.T) {
	e := newEnv(t, 6)
	e.mustRun(runOpts{})
	ctx := context.Background()
	// 1: the target says CMS
	u1 := e.targetUsers()[slapdtest.UUID(1)]["id"].(string)
	if err := e.client.PatchUser(ctx, u1, []scimclient.PatchOp{{Op: "replace", Path: scim.ScimsyncSchema + ":managementMode", Value: "CMS"}}); err != nil {
		t.Fatal(err)
	}
	// 2: the administrator says CMS
	st, err := state.Open(e.statePath, state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SetOverride("USER002", state.ModeCMS, e.clock); err != nil {
		t.Fatal(err)
	}
	_ = st.Close()
	// 3: a config rule by userName pattern; 4: by filter
	rules := func(c *scimsync.Config) {
		c.Overrides = []scimsync.OverrideRule{{UserName: "user00[3]"}, {Filter: "(sn=Sn4)"}}
	}
	for _, i := range []int{1, 2, 3, 4} {
		e.slapd.Modify(t, fmt.Sprintf("dn: uid=user%03d,%s\nchangetype: modify\nreplace: title\ntitle: Changed\n", i, slapdtest.People))
	}
	e.slapd.Modify(t, "dn: uid=user005,"+slapdtest.People+"\nchangetype: modify\nreplace: title\ntitle: Changed\n")
	e.resetLog()
	plan, _ := e.mustRun(runOpts{sync: rules})
	skipped := map[string]string{}
	for _, it := range plan.Items() {
		if it.Action == scimsync.ActionSkip {
			skipped[it.Name] = it.Reason
		}
	}
	for _, n := range []string{"user001", "user002", "user003", "user004"} {
		if skipped[n] == "" {
			t.Errorf("%s not skipped: %+v", n, plan.Items())
		}
	}
	if w := e.writeLog(); len(w) != 1 {
		t.Fatalf("only user005 may be written: %v", w)
	}
	// deleting a hands-off user from the directory does not deprovision it either
	e.slapd.Modify(t, "dn: uid=user001,"+slapdtest.People+"\nchangetype: delete\n")
	e.resetLog()
	e.mustRun(runOpts{sync: rules})
	if w := e.writeLog(); len(w) != 0 {
		t.Fatalf("hands-off user deprovisioned: %v", w)
	}
}

func TestDirectoryFailureDeprovisionsNothing(t *testing.T) {
	e := newEnv(t, 10)
	e.mustRun(runOpts{})
	e.resetLog()
	_, _, err := e.run(runOpts{ldap: func(c *ldap.Config) { c.URL = "ldap://127.0.0.1:1"; c.DialTimeout = config.Duration(time.Second) }})
	if !errors.Is(err, scimsync.ErrSourceFailed) {
		t.Fatalf("unreachable: %v", err)
	}
	_, _, err = e.run(runOpts{ldap: func(c *ldap.Config) { c.UserFilter = "(uid=nobody-at-all)" }})
	if !errors.Is(err, scimsync.ErrEmptySource) {
		t.Fatalf("empty result: %v", err)
	}
	_, _, err = e.run(runOpts{ldap: func(c *ldap.Config) { c.BaseDN = slapdtest.Moved }})
	if !errors.Is(err, scimsync.ErrEmptySource) {
		t.Fatalf("wrong base: %v", err)
	}
	if w := e.writeLog(); len(w) != 0 {
		t.Fatalf("writes after failed reads: %v", w)
	}
}

func TestDeprovisionLimitStopsBeforeDeprovisioning(t *testing.T) {
	e := newEnv(t, 30)
	e.mustRun(runOpts{})
	for i := 0; i < 11; i++ {
		e.slapd.Modify(t, fmt.Sprintf("dn: uid=user%03d,%s\nchangetype: delete\n", i, slapdtest.People))
	}
	e.resetLog()
	plan, _, err := e.run(runOpts{})
	if !errors.Is(err, scimsync.ErrSafetyLimit) || !strings.Contains(err.Error(), "--allow-deprovision 11") {
		t.Fatalf("got %v", err)
	}
	if plan.Blocked == nil || len(e.writeLog()) != 0 {
		t.Fatalf("blocked %+v writes %v", plan.Blocked, e.writeLog())
	}
	plan, res := e.mustRun(runOpts{plan: scimsync.PlanOptions{AllowDeprovision: 11}})
	if res.Done[scimsync.ActionDisable] != 11 || plan.Blocked != nil {
		t.Fatalf("with --allow-deprovision 5: %+v", res)
	}
}

func TestCancelledRunConvergesWithoutDuplicates(t *testing.T) {
	e := newEnv(t, 40)
	ctx, cancel := context.WithCancel(context.Background())
	e.setOnWrite(func(n int) {
		if n == 7 {
			cancel()
		}
	})
	_, _, err := e.run(runOpts{ctx: ctx})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("first run: %v", err)
	}
	e.setOnWrite(nil)
	if n := len(e.targetUsers()); n < 7 || n >= 40 {
		t.Fatalf("%d users after the cancelled run", n)
	}
	e.mustRun(runOpts{})
	if n := len(e.targetUsers()); n != 40 {
		t.Fatalf("%d users after rerun, want 40", n)
	}
	e.resetLog()
	e.mustRun(runOpts{})
	if w := e.writeLog(); len(w) != 0 {
		t.Fatalf("third run still writing: %v", w)
	}
}

func TestDryRunWritesNothing(t *testing.T) {
	e := newEnv(t, 12)
	// a dry run before any state exists neither fails nor creates the file
	plan, _, err := e.run(runOpts{dryRun: true})
	if err != nil || plan.Summary[scimsync.ActionCreate] != 12 {
		t.Fatalf("fresh dry run: %v", err)
	}
	if _, err := os.Stat(e.statePath); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("dry run created the state file")
	}
	e.mustRun(runOpts{})
	e.slapd.Modify(t, "dn: uid=user001,"+slapdtest.People+"\nchangetype: modify\nreplace: title\ntitle: X\n")
	e.slapd.Modify(t, "dn: uid=user002,"+slapdtest.People+"\nchangetype: delete\n")
	before, err := os.ReadFile(e.statePath)
	if err != nil {
		t.Fatal(err)
	}
	e.resetLog()
	plan, _, err = e.run(runOpts{dryRun: true})
	if err != nil || !plan.Pending() || plan.Summary[scimsync.ActionUpdate] != 1 || plan.Summary[scimsync.ActionDisable] != 1 {
		t.Fatalf("dry run plan: %v %s", err, scimsync.SummaryLine(plan))
	}
	after, _ := os.ReadFile(e.statePath)
	if !bytes.Equal(before, after) {
		t.Fatal("dry run changed the state file")
	}
	if w := e.writeLog(); len(w) != 0 {
		t.Fatalf("dry run wrote to the target: %v", w)
	}
	// the real run does what the dry run said
	_, res := e.mustRun(runOpts{})
	if res.Done[scimsync.ActionUpdate] != 1 || res.Done[scimsync.ActionDisable] != 1 {
		t.Fatalf("apply after dry run: %+v", res)
	}
}

func TestUnmappableEntryIsInvalidAndNeverDeprovisioned(t *testing.T) {
	e := newEnv(t, 8)
	requireMail := func(m *scimsync.MappingConfig) { m.Required = []string{"userName", "emails.work"} }
	e.mustRun(runOpts{mapping: requireMail})
	e.slapd.Modify(t, "dn: uid=user003,"+slapdtest.People+"\nchangetype: modify\ndelete: mail\n")
	e.resetLog()
	plan, _ := e.mustRun(runOpts{mapping: requireMail})
	var inv *scimsync.Item
	for i, it := range plan.Items() {
		if it.Action == scimsync.ActionInvalid {
			inv = &plan.Items()[i]
		}
	}
	if inv == nil || inv.Attribute != "emails.work" || !strings.Contains(inv.Reason, "mail") || inv.DN != "uid=user003,"+slapdtest.People {
		t.Fatalf("invalid item: %+v", plan.Items())
	}
	if w := e.writeLog(); len(w) != 0 || plan.Summary[scimsync.ActionDisable] != 0 {
		t.Fatalf("unmappable entry was deprovisioned: %v", w)
	}
	// the same entry, hands-off by a config rule: skipped with the reason, not reported invalid
	plan, _ = e.mustRun(runOpts{mapping: requireMail, sync: func(c *scimsync.Config) {
		c.Overrides = []scimsync.OverrideRule{{DNSubtree: "uid=user003," + slapdtest.People}}
	}})
	if plan.Summary[scimsync.ActionInvalid] != 0 || plan.Summary[scimsync.ActionSkip] != 1 || len(e.writeLog()) != 0 {
		t.Fatalf("hands-off unmappable entry: %s", scimsync.SummaryLine(plan))
	}
}

func TestSingleUserOnDemand(t *testing.T) {
	e := newEnv(t, 5)
	plan, res := e.mustRun(runOpts{plan: scimsync.PlanOptions{OnlyUser: "USER004"}})
	if len(plan.Items()) != 1 || plan.Items()[0].Name != "user004" || res.Done[scimsync.ActionCreate] != 1 || len(e.targetUsers()) != 1 {
		t.Fatalf("plan %+v", plan.Items())
	}
	_, _, err := e.run(runOpts{plan: scimsync.PlanOptions{OnlyUser: "nobody"}})
	if !errors.Is(err, scimsync.ErrUserNotFound) {
		t.Fatalf("unknown user: %v", err)
	}
}
