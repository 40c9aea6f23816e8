// Package sambatest provisions a real Samba Active Directory domain controller on 127.0.0.1 for
// integration tests. Samba's LDAP server cannot move off port 389, so one DC serves a whole test
// binary (Shared, provisioned on first use, 5–8 s) and a file lock serialises DCs across
// processes; each test works in an OU of its own (OU). Tests skip when Samba is not installed,
// unless SCIMSYNC_REQUIRE_SAMBA is set (as .ci/run does), in which case they fail.
//
// The seed is AD-shaped and loaded offline with ldbadd before the DC starts (online adds are
// slow): SeedUsers users under SeedOU with userAccountControl (some disabled), a computer
// account, and BigGroup whose BigGroupMembers members exceed AD's 1,500-value range, so reading
// it exercises ranged retrieval. Guest, krbtgt and Administrator come with the provision.
package sambatest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	goldap "github.com/go-ldap/ldap/v3"
)

// The domain every DC of this package serves.
const (
	Realm    = "EXAMPLE.TEST"
	Domain   = "EXAMPLE"
	BaseDN   = "DC=example,DC=test"
	URL      = "ldap://127.0.0.1:389"
	AdminUPN = "Administrator@example.test"
	AdminDN  = "CN=Administrator,CN=Users," + BaseDN
	AdminPW  = "Scimsync-Test-Admin-1"

	SeedOU          = "OU=Seed," + BaseDN
	SeedUsers       = 1600
	BigGroup        = "CN=Big Group," + SeedOU
	BigGroupMembers = SeedUsers
	Computer        = "CN=WS0001," + SeedOU
	// Tombstone is seeded and deleted, so the domain has a deleted object from the start.
	Tombstone = "CN=Deleted Seed," + SeedOU
)

// SeedUserDN is the DN of seeded user n (0 ≤ n < SeedUsers); every seventh is disabled.
func SeedUserDN(n int) string { return fmt.Sprintf("CN=Seed User %04d,%s", n, SeedOU) }

// SeedDisabled reports whether seeded user n has the disabled bit (2) in userAccountControl.
func SeedDisabled(n int) bool { return n%7 == 3 }

// TB is what the harness needs from testing.T or testing.B.
type TB interface {
	Helper()
	Skip(args ...any)
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
}

var _ TB = (*testing.T)(nil)

// DC is a running Samba AD DC.
type DC struct {
	URL    string
	dir    string
	cmd    *exec.Cmd
	exited chan error // receives samba's exit
}

var shared struct {
	sync.Mutex
	dc     *DC
	lock   *os.File
	err    string
	ous    int
	second *DC // StartAnother's DC while it replaces the shared one
}

// available skips (or, with SCIMSYNC_REQUIRE_SAMBA, fails) when Samba is missing.
func available(tb TB) {
	tb.Helper()
	for _, bin := range []string{"samba", "samba-tool", "ldbadd", "ldbdel"} {
		if _, err := exec.LookPath(bin); err != nil {
			if os.Getenv("SCIMSYNC_REQUIRE_SAMBA") != "" {
				tb.Fatalf("sambatest: %s not found and SCIMSYNC_REQUIRE_SAMBA is set (apt-get install -y samba samba-ad-dc samba-dsdb-modules ldb-tools)", bin)
			}
			tb.Skip("sambatest: Samba AD DC not installed; set SCIMSYNC_REQUIRE_SAMBA=1 to fail instead")
		}
	}
}

// Shared returns the DC of this test binary, provisioning, seeding and starting it on first use.
// Call Stop from TestMain after m.Run.
func Shared(tb TB) *DC {
	tb.Helper()
	available(tb)
	shared.Lock()
	defer shared.Unlock()
	if shared.err != "" {
		tb.Fatalf("sambatest: %s", shared.err)
	}
	if shared.dc != nil {
		return shared.dc
	}
	fail := func(format string, args ...any) {
		shared.err = fmt.Sprintf(format, args...)
		tb.Fatalf("sambatest: %s", shared.err)
	}
	lock, err := acquire(15 * time.Minute)
	if err != nil {
		fail("%v", err)
	}
	shared.lock = lock
	start := time.Now()
	dc, err := provision(seedLDIF())
	if err != nil {
		release()
		fail("%v", err)
	}
	if err := dc.start(); err != nil {
		_ = os.RemoveAll(dc.dir)
		release()
		fail("%v", err)
	}
	tb.Logf("sambatest: Samba AD DC provisioned, seeded and started in %s", time.Since(start).Round(100*time.Millisecond))
	shared.dc = dc
	return dc
}

// Stop ends the shared DC (and any DC StartAnother left running), removes its files and
// releases the cross-process lock. Safe to call when no DC was started.
func Stop() {
	shared.Lock()
	defer shared.Unlock()
	if shared.second != nil {
		shared.second.kill()
		_ = os.RemoveAll(shared.second.dir)
		shared.second = nil
	}
	if shared.dc != nil {
		shared.dc.kill()
		_ = os.RemoveAll(shared.dc.dir)
		shared.dc = nil
	}
	release()
}

// lockPath is shared by every process that runs a Samba DC for tests on this machine.
func lockPath() string { return filepath.Join(os.TempDir(), "scimsync-samba-389.lock") }

// acquire takes the cross-process lock, waiting at most wait (bounded: another test binary
// holding it for longer is a fault to report, not to wait out).
func acquire(wait time.Duration) (*os.File, error) {
	f, err := os.OpenFile(lockPath(), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(wait)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			_ = f.Close()
			return nil, fmt.Errorf("lock %s (another test binary runs a Samba DC on port 389): %w", lockPath(), err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func release() {
	if shared.lock != nil {
		_ = syscall.Flock(int(shared.lock.Fd()), syscall.LOCK_UN)
		_ = shared.lock.Close()
		shared.lock = nil
	}
}

// provision creates a DC in a new temporary directory and loads seed (LDIF, may be "") offline.
func provision(seed string) (*DC, error) {
	dir, err := os.MkdirTemp("", "scimsync-samba-")
	if err != nil {
		return nil, err
	}
	dc := &DC{URL: URL, dir: dir}
	ok := false
	defer func() {
		if !ok {
			_ = os.RemoveAll(dir)
		}
	}()
	if out, err := exec.Command("samba-tool", "domain", "provision", "--targetdir="+dir, "--realm="+Realm, "--domain="+Domain,
		"--server-role=dc", "--dns-backend=NONE", "--use-rfc2307", "--adminpass="+AdminPW, "--host-ip=127.0.0.1",
		"--option=interfaces=127.0.0.1", "--option=bind interfaces only=yes").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("samba-tool domain provision: %v\n%s", err, tail(out))
	}
	conf := dc.conf()
	text, err := os.ReadFile(conf)
	if err != nil {
		return nil, err
	}
	// only the LDAP server (no smbd, KDC or DNS), simple binds on plain ldap://, and every file
	// of the DC under dir
	extra := fmt.Sprintf("\tserver services = ldap\n\tldap server require strong auth = no\n\tpid directory = %[1]s/run\n"+
		"\tlog file = %[1]s/log.%%m\n\tlogging = file\n", dir)
	s := regexp.MustCompile(`(?m)^\s*(server services|log file|logging)\s*=.*\n`).ReplaceAllString(string(text), "")
	s = strings.Replace(s, "[global]\n", "[global]\n"+extra, 1)
	if err := os.WriteFile(conf, []byte(s), 0o600); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "run"), 0o700); err != nil {
		return nil, err
	}
	if seed != "" {
		sam := filepath.Join(dir, "private", "sam.ldb")
		add := exec.Command("ldbadd", "--nosync", "-H", sam)
		add.Stdin = strings.NewReader(seed)
		if out, err := add.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("ldbadd seed: %v\n%s", err, tail(out))
		}
		// a domain in use has deleted objects; a fresh provision has none, and a reader cannot
		// tell "none" from "not allowed to see them"
		if out, err := exec.Command("ldbdel", "--nosync", "-H", sam, Tombstone).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("ldbdel %s: %v\n%s", Tombstone, err, tail(out))
		}
	}
	ok = true
	return dc, nil
}

func (dc *DC) conf() string { return filepath.Join(dc.dir, "etc", "smb.conf") }

func (dc *DC) start() error {
	if c, err := net.DialTimeout("tcp", "127.0.0.1:389", time.Second); err == nil {
		_ = c.Close()
		return errors.New("port 389 on 127.0.0.1 is taken by another process (a system slapd or samba?): the test DC needs it")
	}
	cmd := exec.Command("samba", "-F", "-s", dc.conf())
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	// its own process group, so its workers can be stopped with it; and stopped with us if the
	// test binary dies without cleaning up
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start samba: %w", err)
	}
	dc.cmd, dc.exited = cmd, make(chan error, 1)
	go func() { dc.exited <- cmd.Wait() }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case err := <-dc.exited:
			dc.cmd = nil
			return fmt.Errorf("samba exited while starting (%v): %s", err, tail(logs.Bytes()))
		default:
		}
		if conn, err := dc.dial(); err == nil {
			_ = conn.Close()
			return nil
		}
		if time.Now().After(deadline) {
			dc.kill()
			return fmt.Errorf("samba did not answer LDAP binds on %s within 60 s: %s", dc.URL, tail(logs.Bytes()))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// kill stops samba: SIGTERM to the process we started, then, if it lingers, SIGKILL to the
// process group it leads (its workers).
func (dc *DC) kill() {
	if dc.cmd == nil {
		return
	}
	pid := dc.cmd.Process.Pid
	_ = syscall.Kill(pid, syscall.SIGTERM)
	select {
	case <-dc.exited:
	case <-time.After(15 * time.Second):
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-dc.exited
	}
	// workers that outlive the master would keep port 389
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	dc.cmd = nil
	for i := 0; i < 100; i++ {
		c, err := net.DialTimeout("tcp", "127.0.0.1:389", 100*time.Millisecond)
		if err != nil {
			return
		}
		_ = c.Close()
		time.Sleep(100 * time.Millisecond)
	}
}

// dial connects to the DC and binds as Administrator.
func (dc *DC) dial() (*goldap.Conn, error) {
	conn, err := goldap.DialURL(dc.URL, goldap.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}))
	if err != nil {
		return nil, err
	}
	conn.SetTimeout(60 * time.Second)
	if err := conn.Bind(AdminUPN, AdminPW); err != nil {
		_ = conn.Close()
		return nil, err
	}
	return conn, nil
}

// Admin runs f on a connection bound as Administrator.
func (dc *DC) Admin(tb TB, what string, f func(*goldap.Conn) error) {
	tb.Helper()
	conn, err := dc.dial()
	if err != nil {
		tb.Fatalf("sambatest: %s: %v", what, err)
	}
	defer conn.Close()
	if err := f(conn); err != nil {
		tb.Fatalf("sambatest: %s: %v", what, err)
	}
}

// OU creates a fresh organizational unit for one test, named after it, and returns its DN.
func (dc *DC) OU(tb TB, name string) string {
	tb.Helper()
	shared.Lock()
	shared.ous++
	n := shared.ous
	shared.Unlock()
	clean := regexp.MustCompile(`[^A-Za-z0-9]+`).ReplaceAllString(name, "-")
	if len(clean) > 40 {
		clean = clean[:40]
	}
	dn := fmt.Sprintf("OU=%s-%d,%s", clean, n, BaseDN)
	dc.Add(tb, dn, map[string][]string{"objectClass": {"organizationalUnit"}})
	return dn
}

// Add adds an entry online.
func (dc *DC) Add(tb TB, dn string, attrs map[string][]string) {
	tb.Helper()
	dc.Admin(tb, "add "+dn, func(c *goldap.Conn) error {
		req := goldap.NewAddRequest(dn, nil)
		for k, v := range attrs {
			req.Attribute(k, v)
		}
		return c.Add(req)
	})
}

// AddUser adds a user object (no password: Samba makes it disabled unless uac says otherwise)
// and returns its DN.
func (dc *DC) AddUser(tb TB, parent, cn, sam string, uac int, attrs map[string][]string) string {
	tb.Helper()
	dn := "CN=" + goldap.EscapeDN(cn) + "," + parent
	all := map[string][]string{"objectClass": {"user"}, "sAMAccountName": {sam}, "userAccountControl": {fmt.Sprint(uac)},
		"userPrincipalName": {sam + "@example.test"}}
	for k, v := range attrs {
		all[k] = v
	}
	dc.Add(tb, dn, all)
	return dn
}

// Replace sets attr of dn to values (none: removes it).
func (dc *DC) Replace(tb TB, dn, attr string, values ...string) {
	tb.Helper()
	dc.Admin(tb, "replace "+attr+" of "+dn, func(c *goldap.Conn) error {
		m := goldap.NewModifyRequest(dn, nil)
		m.Replace(attr, values)
		return c.Modify(m)
	})
}

// AddValues adds values to attr of dn (a member to a group).
func (dc *DC) AddValues(tb TB, dn, attr string, values ...string) {
	tb.Helper()
	dc.Admin(tb, "add "+attr+" to "+dn, func(c *goldap.Conn) error {
		m := goldap.NewModifyRequest(dn, nil)
		m.Add(attr, values)
		return c.Modify(m)
	})
}

// Delete deletes dn (it becomes a tombstone under CN=Deleted Objects).
func (dc *DC) Delete(tb TB, dn string) {
	tb.Helper()
	dc.Admin(tb, "delete "+dn, func(c *goldap.Conn) error { return c.Del(goldap.NewDelRequest(dn, nil)) })
}

// Move renames dn to newRDN under newParent ("" keeps the parent).
func (dc *DC) Move(tb TB, dn, newRDN, newParent string) {
	tb.Helper()
	dc.Admin(tb, "move "+dn, func(c *goldap.Conn) error {
		return c.ModifyDN(goldap.NewModifyDNRequest(dn, newRDN, true, newParent))
	})
}

// samba-tool runs against the DC's database directly (no network, no Kerberos).
func (dc *DC) tool(tb TB, args ...string) {
	tb.Helper()
	args = append(args, "-H", "tdb://"+filepath.Join(dc.dir, "private", "sam.ldb"), "-s", dc.conf())
	if out, err := exec.Command("samba-tool", args...).CombinedOutput(); err != nil {
		tb.Fatalf("sambatest: samba-tool %s: %v\n%s", args[0]+" "+args[1], err, tail(out))
	}
}

// CreateAccount creates an enabled user with a password, for binding as someone other than
// Administrator, and returns its UPN.
func (dc *DC) CreateAccount(tb TB, sam, password string) string {
	tb.Helper()
	dc.tool(tb, "user", "create", sam, password)
	return sam + "@example.test"
}

// GrantReplicatingChanges gives the account sam "Replicating Directory Changes" on the domain,
// the right DirSync needs.
func (dc *DC) GrantReplicatingChanges(tb TB, sam string) {
	tb.Helper()
	dc.tool(tb, "dsacl", "set", "--objectdn="+BaseDN, "--car=get-changes", "--action=allow",
		"--trusteedn=CN="+sam+",CN=Users,"+BaseDN)
}

// StartAnother replaces the shared DC, for one test, with a freshly provisioned DC of the same
// domain at the same URL: the same name, a different invocationId, as when a DC is rebuilt or
// another DC answers behind the same address. The returned func brings the shared DC back.
func (dc *DC) StartAnother(tb TB) (restore func()) {
	tb.Helper()
	shared.Lock()
	defer shared.Unlock()
	if dc != shared.dc {
		tb.Fatalf("sambatest: StartAnother needs the shared DC")
	}
	other, err := provision("")
	if err != nil {
		tb.Fatalf("sambatest: %v", err)
	}
	dc.kill()
	if err := other.start(); err != nil {
		_ = os.RemoveAll(other.dir)
		tb.Fatalf("sambatest: %v", err)
	}
	shared.second = other
	return func() {
		shared.Lock()
		defer shared.Unlock()
		other.kill()
		_ = os.RemoveAll(other.dir)
		shared.second = nil
		if err := dc.start(); err != nil {
			shared.err = err.Error()
			tb.Fatalf("sambatest: restart the shared DC: %v", err)
		}
	}
}

// seedLDIF renders the AD-shaped seed: SeedUsers users (every seventh disabled), a computer
// account and BigGroup with every seeded user as a member.
func seedLDIF() string {
	var b strings.Builder
	fmt.Fprintf(&b, "dn: %s\nobjectClass: organizationalUnit\nou: Seed\n\n", SeedOU)
	for i := range SeedUsers {
		uac := 512
		if SeedDisabled(i) {
			uac = 514
		}
		sam := fmt.Sprintf("seed%04d", i)
		fmt.Fprintf(&b, "dn: %s\nobjectClass: user\nsAMAccountName: %s\nuserPrincipalName: %s@example.test\n"+
			"userAccountControl: %d\ngivenName: Seed\nsn: User %04d\ndisplayName: Seed User %04d\nmail: %s@example.test\n\n",
			SeedUserDN(i), sam, sam, uac, i, i, sam)
	}
	fmt.Fprintf(&b, "dn: %s\nobjectClass: computer\nsAMAccountName: WS0001$\nuserAccountControl: 4096\ndNSHostName: ws0001.example.test\n\n", Computer)
	fmt.Fprintf(&b, "dn: %s\nobjectClass: user\nsAMAccountName: deleted-seed\nuserAccountControl: 514\n\n", Tombstone)
	fmt.Fprintf(&b, "dn: %s\nobjectClass: group\nsAMAccountName: big-group\n", BigGroup)
	for i := range BigGroupMembers {
		fmt.Fprintf(&b, "member: %s\n", SeedUserDN(i))
	}
	b.WriteString("\n")
	return b.String()
}

// syncBuffer is a bytes.Buffer samba's output goroutines may write to while we read it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.b.Bytes())
}

func tail(b []byte) string {
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}
