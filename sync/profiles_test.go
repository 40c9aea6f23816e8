package sync_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	gosync "sync"
	"testing"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/scimsync/scimsync/config"
	"github.com/scimsync/scimsync/ldap"
	"github.com/scimsync/scimsync/ldap/slapdtest"
	"github.com/scimsync/scimsync/scim"
	"github.com/scimsync/scimsync/scimserver"
	"github.com/scimsync/scimsync/state"
	scimsync "github.com/scimsync/scimsync/sync"
)

// awkwardDirectory is 200 ordinary users plus the cases that break naive syncs.
func awkwardDirectory() string {
	var b strings.Builder
	for i := 0; i < 200; i++ {
		b.WriteString(slapdtest.Person(fmt.Sprintf("user%03d", i), slapdtest.UUID(i), "Given", fmt.Sprintf("Sn%d", i), fmt.Sprintf("user%03d@example.org", i)))
	}
	entry := func(n int, uid, cn, given, sn, mail, extra string) {
		fmt.Fprintf(&b, "dn: employeeNumber=%d,%s\nobjectClass: inetOrgPerson\nemployeeNumber: %d\nuid: %s\ncn: %s\nsn: %s\nentryUUID: %s\n",
			n, slapdtest.People, n, uid, cn, sn, slapdtest.UUID(n))
		if given != "" {
			fmt.Fprintf(&b, "givenName: %s\n", given)
		}
		if mail != "" {
			fmt.Fprintf(&b, "mail: %s\n", mail)
		}
		b.WriteString(extra + "\n")
	}
	entry(1001, "zoë.ünal", "Zoë Ünal", "Zoë", "Ünal", "zoe.unal@example.org", "")
	entry(1002, "jsmith", "Smith, John", "John", "Smith", "John.Smith@Example.org", "")
	entry(1003, "nogiven", "Nogiven Person", "", "Person", "nogiven@example.org", "")
	entry(1004, "nomail", "No Mail", "No", "Mail", "", "")
	entry(1005, "jo.hn", "Jo Hn", "Jo", "Hn", "jo.hn@example.org", "")
	entry(1006, "jo_hn", "Jo Hn", "Jo", "Hn", "jo_hn@example.org", "")
	entry(1007, strings.Repeat("a", 40), "Long Uid", "Long", "Uid", "long@example.org", "")
	entry(1008, "locked", "Locked Account", "Locked", "Account", "locked@example.org", "pwdAccountLockedTime: 000001010000Z\n")
	return b.String()
}

// enforcer is a SCIM server that refuses what the real target would: the rules below are
// written from the seed user models, independently of the sync's own profile rules.
type enforcer struct {
	mu       gosync.Mutex
	rejected []string
	check    func(doc map[string]any) string // "" when acceptable
}

func nuageRules(doc map[string]any) string {
	name, _ := doc["userName"].(string)
	if !regexp.MustCompile(`^[A-Za-z0-9-]{1,32}$`).MatchString(name) {
		return "userName " + name
	}
	n, _ := doc["name"].(map[string]any)
	for _, k := range []string{"givenName", "familyName"} {
		v, _ := n[k].(string)
		if l := utf8.RuneCountInString(v); l < 1 || l > 255 {
			return "name." + k
		}
	}
	if workEmail(doc) == "" {
		return "email"
	}
	ext, _ := doc[scim.ScimsyncSchema].(map[string]any)
	if ext["ldapUserDN"] == nil || ext["managementMode"] == nil || doc["externalId"] == nil {
		return "LDAPUserDN, managementMode and externalID are required"
	}
	return ""
}

func passboltRules(doc map[string]any) string {
	name, _ := doc["userName"].(string)
	if !strings.Contains(name, "@") || name != strings.ToLower(name) {
		return "username must be a lower-case email: " + name
	}
	n, _ := doc["name"].(map[string]any)
	if n["givenName"] == nil || n["familyName"] == nil {
		return "profile first/last name"
	}
	return ""
}

func civisRules(doc map[string]any) string {
	if doc["userName"] == nil || doc["displayName"] == nil || workEmail(doc) == "" {
		return "user, name and email are required"
	}
	return ""
}

func cloudomationRules(doc map[string]any) string {
	name, _ := doc["userName"].(string)
	if name == "" || utf8.RuneCountInString(name) > 128 || workEmail(doc) == "" || utf8.RuneCountInString(workEmail(doc)) > 128 {
		return "name and email: 1-128 characters"
	}
	return ""
}

func workEmail(doc map[string]any) string {
	list, _ := doc["emails"].([]any)
	for _, e := range list {
		m, _ := e.(map[string]any)
		if v, _ := m["value"].(string); v != "" {
			return v
		}
	}
	return ""
}

// handler checks creates and replaces in full, and each PATCH by the resource it would produce.
func (en *enforcer) handler(t *testing.T, srv *scimserver.Server, token string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost || r.Method == http.MethodPut {
			body, _ := io.ReadAll(r.Body)
			var doc map[string]any
			_ = json.Unmarshal(body, &doc)
			if why := en.check(doc); why != "" {
				en.reject(w, r, why)
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		if r.Method != http.MethodPatch {
			srv.Handler().ServeHTTP(w, r)
			return
		}
		// apply the PATCH, then check the result; undo by PUT of the old copy when it breaks a rule
		before := get(t, srv, r.URL.Path, token)
		rec := &recorder{header: http.Header{}}
		srv.Handler().ServeHTTP(rec, r)
		if rec.status < 300 {
			if why := en.check(get(t, srv, r.URL.Path, token)); why != "" {
				raw, _ := json.Marshal(before)
				put, _ := http.NewRequest(http.MethodPut, r.URL.String(), bytes.NewReader(raw))
				put.Header = r.Header.Clone()
				srv.Handler().ServeHTTP(&recorder{header: http.Header{}}, put)
				en.reject(w, r, why)
				return
			}
		}
		for k, v := range rec.header {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.status)
		_, _ = w.Write(rec.body.Bytes())
	})
}

func (en *enforcer) reject(w http.ResponseWriter, r *http.Request, why string) {
	en.mu.Lock()
	en.rejected = append(en.rejected, r.Method+" "+r.URL.Path+": "+why)
	en.mu.Unlock()
	w.WriteHeader(http.StatusBadRequest)
	_, _ = fmt.Fprintf(w, `{"schemas":[%q],"status":"400","scimType":"invalidValue","detail":%q}`, scim.ErrorSchema, why)
}

type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(c int) {
	if r.status == 0 {
		r.status = c
	}
}
func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = 200
	}
	return r.body.Write(p)
}

func get(t *testing.T, srv *scimserver.Server, path, token string) map[string]any {
	req, _ := http.NewRequest(http.MethodGet, path, nil)
	req.Host = "127.0.0.1"
	req.Header.Set("Authorization", "Bearer "+token)
	rec := &recorder{header: http.Header{}}
	srv.Handler().ServeHTTP(rec, req)
	var doc map[string]any
	_ = json.Unmarshal(rec.body.Bytes(), &doc)
	return doc
}

func TestProfilesAgainstEnforcingTargets(t *testing.T) {
	ds := slapdtest.Start(t, awkwardDirectory())
	tests := []struct {
		profile     string
		rules       func(map[string]any) string
		wantInvalid map[string]string // entry's RDN -> the attribute reported
	}{
		{"nuage-vsd", nuageRules, map[string]string{"employeeNumber=1004": "emails.work"}},
		{"passbolt", passboltRules, map[string]string{"employeeNumber=1004": "emails.work", "employeeNumber=1003": "name.givenName"}},
		{"civis", civisRules, map[string]string{"employeeNumber=1004": "emails.work"}},
		{"cloudomation", cloudomationRules, map[string]string{"employeeNumber=1004": "emails.work"}},
	}
	for _, tt := range tests {
		t.Run(tt.profile, func(t *testing.T) {
			st, err := state.Open(filepath.Join(t.TempDir(), "target.db"), state.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			scfg := scimserver.DefaultServerConfig()
			scfg.Tokens = []scimserver.TokenConfig{{Name: "sync", Token: config.NewSecret(token)}}
			srv, err := scimserver.NewServer(scfg, st, zap.NewNop())
			if err != nil {
				t.Fatal(err)
			}
			en := &enforcer{check: tt.rules}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			hs := &http.Server{Handler: en.handler(t, srv, token)}
			go func() { _ = hs.Serve(ln) }()
			defer hs.Close()
			e := &env{t: t, slapd: ds, targetURL: "http://" + ln.Addr().String() + "/scim/v2",
				statePath: filepath.Join(t.TempDir(), "sync.db")}
			e.client = e.newClient()
			profile := tt.profile
			names := make([]map[string]string, 3)
			var plans []*scimsync.Plan
			for run := 0; run < 3; run++ {
				plan, res := e.mustRun(runOpts{profile: profile, ldap: func(c *ldap.Config) { c.BaseDN = slapdtest.People }})
				plans = append(plans, plan)
				if len(res.Failed) > 0 {
					t.Fatalf("run %d: failures %+v", run+1, res.Failed)
				}
				names[run] = map[string]string{}
				for ext, u := range e.targetUsers() {
					names[run][ext] = u["userName"].(string)
				}
			}
			if len(en.rejected) != 0 {
				t.Fatalf("the target rejected %d requests: %v", len(en.rejected), en.rejected)
			}
			invalid := map[string]string{}
			for _, it := range plans[0].Items() {
				if it.Action == scimsync.ActionInvalid {
					rdn := strings.SplitN(it.DN, ",", 2)[0]
					invalid[rdn] = it.Attribute
					if want := tt.wantInvalid[rdn]; it.Attribute != want || it.Rule == "" || it.Reason == "" {
						t.Errorf("%s: attribute %q rule %q reason %q, want attribute %q", rdn, it.Attribute, it.Rule, it.Reason, want)
					}
				}
			}
			if tt.profile == "passbolt" {
				for _, it := range plans[0].Items() {
					if strings.HasPrefix(it.DN, "employeeNumber=1004,") && !strings.Contains(it.Reason, "userName is required") {
						t.Errorf("passbolt: the reason should also name userName (it is the email): %q", it.Reason)
					}
				}
			}
			if len(invalid) != len(tt.wantInvalid) || plans[0].Summary[scimsync.ActionInvalid] != len(tt.wantInvalid) {
				t.Fatalf("invalid: got %v (%d in plan), want %v", invalid, plans[0].Summary[scimsync.ActionInvalid], tt.wantInvalid)
			}
			if want := 208 - len(tt.wantInvalid); len(names[0]) != want {
				t.Fatalf("%d users on the target, want %d", len(names[0]), want)
			}
			for run := 1; run < 3; run++ {
				for ext, n := range names[0] {
					if names[run][ext] != n {
						t.Fatalf("userName of %s changed in run %d: %q -> %q", ext, run+1, n, names[run][ext])
					}
				}
				if plans[run].Pending() {
					t.Fatalf("run %d still had changes: %s", run+1, scimsync.SummaryLine(plans[run]))
				}
			}
			locked := e.targetUsers()[slapdtest.UUID(1008)]
			if locked["active"] != false {
				t.Fatalf("locked account is active on the target: %v", locked)
			}
			if tt.profile == "nuage-vsd" {
				got := []string{names[0][slapdtest.UUID(1005)], names[0][slapdtest.UUID(1006)], names[0][slapdtest.UUID(1001)], names[0][slapdtest.UUID(1007)]}
				if strings.Join(got, ",") != "jo-hn,jo-hn-2,zoe-unal,"+strings.Repeat("a", 32) {
					t.Fatalf("nuage userNames: %v", got)
				}
			}
			if tt.profile == "passbolt" && names[0][slapdtest.UUID(1002)] != "john.smith@example.org" {
				t.Fatalf("passbolt userName: %q", names[0][slapdtest.UUID(1002)])
			}
		})
	}
}
