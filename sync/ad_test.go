package sync_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scimsync/scimsync/config"
	"github.com/scimsync/scimsync/ldap"
	"github.com/scimsync/scimsync/ldap/sambatest"
	"github.com/scimsync/scimsync/scim"
	"github.com/scimsync/scimsync/scimclient/targettest"
	scimsync "github.com/scimsync/scimsync/sync"
)

func TestMain(m *testing.M) {
	code := m.Run()
	sambatest.Stop() // the shared DC, if a test started one
	os.Exit(code)
}

// adEnv syncs the directory cfg describes into the test target.
func adEnv(t *testing.T, cfg ldap.Config) (*env, *targettest.Target) {
	t.Helper()
	tg := targettest.Start(t)
	e := &env{t: t, directory: &cfg, statePath: filepath.Join(t.TempDir(), "sync.db"),
		clock: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), targetURL: tg.URL, token: tg.Token}
	e.client = e.newClient()
	return e, tg
}

func byName(users []scim.Doc) map[string]scim.Doc {
	out := map[string]scim.Doc{}
	for _, u := range users {
		out[strings.ToLower(fmt.Sprint(u["userName"]))] = u
	}
	return out
}

// TestADDefaultsFromAnLDIF is issue 9 case 4 on AD-shaped entries: with the generic profile and
// nothing configured, disabled accounts (userAccountControl bit 2) arrive inactive, computer and
// built-in accounts are left out, and the plan says both.
func TestADDefaultsFromAnLDIF(t *testing.T) {
	path, err := filepath.Abs("../ldap/testdata/ad-users.ldif")
	if err != nil {
		t.Fatal(err)
	}
	cfg := ldap.DefaultConfig()
	cfg.URL, cfg.BaseDN, cfg.UserFilter, cfg.IDAttribute = "file://"+path, "DC=example,DC=test", "(objectClass=user)", "objectGUID"
	e, tg := adEnv(t, cfg)
	plan, res, err := e.run(runOpts{})
	if err != nil || len(res.Failed) > 0 {
		t.Fatalf("%v %+v", err, res)
	}
	notes := strings.Join(plan.Notices, "\n")
	if !strings.Contains(notes, "computer and built-in accounts") || !strings.Contains(notes, "userAccountControl bit 2") {
		t.Fatalf("the plan does not say what it chose: %q", notes)
	}
	users := byName(tg.Users())
	for _, gone := range []string{"administrator", "guest", "krbtgt", "ws01$"} {
		if _, ok := users[gone]; ok {
			t.Errorf("%s was synced", gone)
		}
	}
	if plan.Excluded != 4 {
		t.Errorf("excluded %d, want 4 (Administrator, Guest, krbtgt, WS01$)", plan.Excluded)
	}
	for name, active := range map[string]bool{"alice": true, "bob": false, "carol": true, "dave": false, "eve": true} {
		u, ok := users[name]
		if !ok {
			t.Errorf("%s missing", name)
			continue
		}
		if got := u["active"] != false; got != active {
			t.Errorf("%s active=%v, want %v", name, u["active"], active)
		}
	}
	// the administrator may choose: exclude nothing
	e2, tg2 := adEnv(t, cfg)
	if _, _, err := e2.run(runOpts{mapping: func(m *scimsync.MappingConfig) { m.Exclude = "none" }}); err != nil {
		t.Fatal(err)
	}
	if _, ok := byName(tg2.Users())["krbtgt"]; !ok {
		t.Fatal("exclude: none still left krbtgt out")
	}
}

// TestSyncFromSambaAD runs the sync against a real Samba AD DC: the UPN bind, the AD defaults
// on the real built-in accounts, a disabled account, and DirSync deltas for a disable and a
// rename, each one write; the next full reconcile finds nothing.
func TestSyncFromSambaAD(t *testing.T) {
	dc := sambatest.Shared(t)
	ou := dc.OU(t, "SyncAD")
	for i := 0; i < 20; i++ {
		uac := 512
		if i == 7 {
			uac = 514
		}
		dc.AddUser(t, ou, fmt.Sprintf("Sync User %02d", i), fmt.Sprintf("sync%02d", i), uac,
			map[string][]string{"mail": {fmt.Sprintf("sync%02d@example.test", i)}, "givenName": {"Sync"}, "sn": {fmt.Sprintf("User%02d", i)}})
	}
	cfg := ldap.DefaultConfig()
	cfg.URL, cfg.BindDN, cfg.BindPassword = sambatest.URL, sambatest.AdminUPN, config.NewSecret(sambatest.AdminPW)
	cfg.BaseDN, cfg.UserFilter, cfg.IDAttribute = sambatest.BaseDN, "(&(objectCategory=person)(objectClass=user)(|(sAMAccountName=sync*)(isCriticalSystemObject=TRUE)))", "objectGUID"
	e, tg := adEnv(t, cfg)
	plan, res, err := e.run(runOpts{})
	if err != nil || len(res.Failed) > 0 || res.Done[scimsync.ActionCreate] != 20 {
		t.Fatalf("initial from Samba: %v %+v %s", err, res, scimsync.SummaryLine(plan))
	}
	users := byName(tg.Users())
	if _, ok := users["krbtgt"]; ok || users["sync07"]["active"] != false || users["sync03"]["active"] == false {
		t.Fatalf("AD defaults on Samba: krbtgt synced or sync07 active: %v", users["sync07"])
	}
	dc.Replace(t, "CN=Sync User 03,"+ou, "userAccountControl", "514")
	dc.Replace(t, "CN=Sync User 04,"+ou, "title", "Engineer")
	tg.ResetCounts()
	plan, res, err = e.run(runOpts{})
	if err != nil || plan.Mode != "delta" || tg.Writes() != 2 || res.Done[scimsync.ActionUpdate] != 2 {
		t.Fatalf("DirSync delta: %v %s %+v, %d writes", err, scimsync.SummaryLine(plan), res, tg.Writes())
	}
	if u := byName(tg.Users())["sync03"]; u["active"] != false {
		t.Fatalf("disabled in AD, active on the target: %v", u)
	}
	e.fullFindsNothing(runOpts{})
}

// TestSambaGroupBeyondTheRangeLimit reads an AD group of more than 1,500 members (AD returns
// member;range=0-1499 and the rest on request) and sends it whole, in batches.
func TestSambaGroupBeyondTheRangeLimit(t *testing.T) {
	sambatest.Shared(t)
	cfg := ldap.DefaultConfig()
	cfg.URL, cfg.BindDN, cfg.BindPassword = sambatest.URL, sambatest.AdminDN, config.NewSecret(sambatest.AdminPW)
	cfg.BaseDN, cfg.UserFilter, cfg.IDAttribute = sambatest.SeedOU, "(&(objectCategory=person)(objectClass=user))", "objectGUID"
	e, tg := adEnv(t, cfg)
	g := scimsync.DefaultGroupsConfig()
	g.BaseDN, g.Filter, g.MemberAttributes = sambatest.SeedOU, "(objectClass=group)", []string{"member"}
	plan, res, err := e.run(runOpts{groups: &g})
	if err != nil || len(res.Failed) > 0 {
		t.Fatalf("%v %+v", err, res)
	}
	var big *scimsync.Item
	for _, it := range plan.Items() {
		if it.Kind == scimsync.KindGroup && "CN="+it.Name+","+sambatest.SeedOU == sambatest.BigGroup {
			it := it
			big = &it
		}
	}
	if big == nil || big.Members == nil || big.Members.Total != sambatest.BigGroupMembers || len(big.Members.Add) != sambatest.BigGroupMembers {
		t.Fatalf("the big group's plan: %+v", big)
	}
	posts, patches := 0, 0
	for _, r := range tg.Requests() {
		if strings.Contains(r.URI, "/Groups") {
			switch r.Method {
			case "POST":
				posts++
			case "PATCH":
				patches++
			}
		}
	}
	if want := (sambatest.BigGroupMembers - 1) / g.Batch; posts != 1 || patches != want {
		t.Errorf("%d POST and %d PATCH to /Groups, want 1 and %d (batches of %d)", posts, patches, want, g.Batch)
	}
	for _, grp := range tg.Groups() {
		if grp["displayName"] == big.Name {
			if n := len(scim.MemberIDs(grp["members"])); n != sambatest.BigGroupMembers {
				t.Fatalf("%d members on the target, want %d", n, sambatest.BigGroupMembers)
			}
			return
		}
	}
	t.Fatal("the big group is not on the target")
}
