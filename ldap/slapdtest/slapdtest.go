// Package slapdtest starts a real OpenLDAP slapd on 127.0.0.1 in a temporary directory for
// integration tests and benchmarks. Tests skip when slapd is not installed, unless
// SCIMSYNC_REQUIRE_SLAPD is set (as .ci/run does), in which case they fail.
//
// The database loads the memberof, ppolicy and syncprov overlays in that order, so tests see
// what production directories do: memberOf written by the overlay (in its own DN escaping),
// pwdAccountLockedTime on locked accounts (ppolicy), and RFC 4533 syncrepl with a session log
// (syncprov). Seeding is offline with slapadd (fast); the helpers below change entries online,
// through the overlays, as an administrator would.
package slapdtest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	goldap "github.com/go-ldap/ldap/v3"
)

// Suffix and credentials of the test directory.
const (
	Suffix  = "dc=example,dc=org"
	People  = "ou=people," + Suffix
	Moved   = "ou=moved," + Suffix
	Groups  = "ou=groups," + Suffix
	AdminDN = "cn=admin," + Suffix
	AdminPW = "test-admin-secret"
	// ReaderDN is an ordinary account (the administrator is exempt from limits).
	ReaderDN = "cn=reader," + Suffix
	ReaderPW = "test-reader-secret"
	slapdBin = "/usr/sbin/slapd"
)

// Options change how the server is set up; the zero value is what Start uses.
type Options struct {
	// TLS adds a throwaway CA: ldap:// offers StartTLS and ldaps:// listens too.
	TLS bool
	// SessionLog is syncprov-sessionlog, the number of changes syncrepl can replay as a
	// delete phase; beyond it the provider falls back to a present phase. 0 means 100000.
	SessionLog int
	// SizeLimit, when > 0, caps what ordinary accounts (ReaderDN) get from one search, paged or
	// not, as a server administrator's limits would.
	SizeLimit int
}

// Server is a running slapd.
type Server struct {
	URL      string // ldap://127.0.0.1:PORT (StartTLS is offered when started with TLS)
	LDAPSURL string // ldaps://127.0.0.1:PORT, when started with TLS
	CAFile   string // PEM of the CA that signed the server certificate, when started with TLS
	dir      string
	conf     string
	listen   string
	port     int
	logs     *bytes.Buffer
	cmd      *exec.Cmd
}

// TB is what Start needs from testing.T or testing.B.
type TB interface {
	Helper()
	TempDir() string
	Skip(args ...any)
	Fatalf(format string, args ...any)
	Cleanup(func())
	Logf(format string, args ...any)
}

var _ TB = (*testing.T)(nil)

func available(tb TB) {
	tb.Helper()
	for _, bin := range []string{slapdBin, "ldapadd", "slapadd"} {
		if _, err := exec.LookPath(bin); err != nil {
			if os.Getenv("SCIMSYNC_REQUIRE_SLAPD") != "" {
				tb.Fatalf("slapdtest: %s not found and SCIMSYNC_REQUIRE_SLAPD is set (apt-get install -y slapd ldap-utils)", bin)
			}
			tb.Skip("slapdtest: slapd/ldap-utils not installed; set SCIMSYNC_REQUIRE_SLAPD=1 to fail instead")
		}
	}
}

func findSlapadd() string {
	if p, err := exec.LookPath("slapadd"); err == nil {
		return p
	}
	return "/usr/sbin/slapadd"
}

// Start runs slapd with the base entries (the suffix, ou=people, ou=moved, ou=groups) plus
// seed, an LDIF loaded offline with slapadd before the server starts (fast enough for 100,000
// users).
func Start(tb TB, seed string) *Server {
	tb.Helper()
	return StartWith(tb, seed, Options{})
}

// StartTLS is Start with a throwaway CA: ldap:// offers StartTLS and ldaps:// listens too.
func StartTLS(tb TB, seed string) *Server {
	tb.Helper()
	return StartWith(tb, seed, Options{TLS: true})
}

// StartWith is Start with options.
func StartWith(tb TB, seed string, opt Options) *Server {
	tb.Helper()
	available(tb)
	dir := tb.TempDir()
	db := filepath.Join(dir, "db")
	if err := os.MkdirAll(db, 0o700); err != nil {
		tb.Fatalf("slapdtest: %v", err)
	}
	conf := filepath.Join(dir, "slapd.conf")
	if opt.SessionLog == 0 {
		opt.SessionLog = 100000
	}
	text := slapdConf(dir, db, opt.SessionLog, opt.SizeLimit)
	var caFile string
	if opt.TLS {
		ca, cert, key, err := Certificates(dir)
		if err != nil {
			tb.Fatalf("slapdtest: %v", err)
		}
		caFile = ca
		text = fmt.Sprintf("TLSCACertificateFile %s\nTLSCertificateFile %s\nTLSCertificateKeyFile %s\n", ca, cert, key) + text
	}
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		tb.Fatalf("slapdtest: %v", err)
	}
	base := fmt.Sprintf("dn: %s\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n\n"+
		"dn: %s\nobjectClass: organizationalUnit\nou: people\n\ndn: %s\nobjectClass: organizationalUnit\nou: moved\n\n"+
		"dn: %s\nobjectClass: organizationalUnit\nou: groups\n\n"+
		"dn: %s\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: reader\nuserPassword: %s\n\n",
		Suffix, People, Moved, Groups, ReaderDN, ReaderPW)
	// -w writes the contextCSN, so syncrepl has a state to start from before the first change
	add := exec.Command(findSlapadd(), "-q", "-w", "-f", conf)
	add.Stdin = strings.NewReader(base + seed)
	if out, err := add.CombinedOutput(); err != nil {
		tb.Fatalf("slapdtest: slapadd: %v\n%s", err, out)
	}
	port, err := freePort()
	if err != nil {
		tb.Fatalf("slapdtest: %v", err)
	}
	s := &Server{URL: fmt.Sprintf("ldap://127.0.0.1:%d", port), CAFile: caFile, dir: dir, conf: conf, port: port}
	s.listen = s.URL + "/"
	if opt.TLS {
		tlsPort, err := freePort()
		if err != nil {
			tb.Fatalf("slapdtest: %v", err)
		}
		s.LDAPSURL = fmt.Sprintf("ldaps://127.0.0.1:%d", tlsPort)
		s.listen += " " + s.LDAPSURL + "/"
	}
	tb.Cleanup(s.Stop)
	s.run(tb)
	return s
}

func (s *Server) run(tb TB) {
	tb.Helper()
	cmd := exec.Command(slapdBin, "-f", s.conf, "-h", s.listen, "-d", "0")
	s.logs = &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = s.logs, s.logs
	if err := cmd.Start(); err != nil {
		tb.Fatalf("slapdtest: start slapd: %v", err)
	}
	s.cmd = cmd
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", s.port), 200*time.Millisecond)
		if err == nil {
			_ = c.Close()
			return
		}
		if time.Now().After(deadline) {
			s.Stop()
			tb.Fatalf("slapdtest: slapd did not listen on %s: %s", s.URL, s.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Pause stops slapd without ending it (SIGSTOP): connections stay open and nothing answers,
// as with a hung server. Resume undoes it.
func (s *Server) Pause(tb TB) {
	tb.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		tb.Fatalf("slapdtest: pause: %v", err)
	}
}

// Resume lets a paused slapd run again.
func (s *Server) Resume(tb TB) {
	tb.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		tb.Fatalf("slapdtest: resume: %v", err)
	}
}

// Restart stops slapd and starts it again on the same data and the same URLs, as after a
// reboot: what syncprov keeps only in memory (its session log) is gone, the database is not.
func (s *Server) Restart(tb TB) {
	tb.Helper()
	s.Stop()
	s.run(tb)
}

func slapdConf(dir, db string, sessionLog, sizeLimit int) string {
	limits := "limits * size=unlimited size.pr=unlimited time=unlimited"
	if sizeLimit > 0 {
		limits = fmt.Sprintf("limits users size.soft=%[1]d size.hard=%[1]d size.pr=noEstimate size.prtotal=%[1]d time=unlimited", sizeLimit)
	}
	return fmt.Sprintf(`include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
moduleload ppolicy
moduleload syncprov
pidfile %s/slapd.pid
sizelimit unlimited
database mdb
maxsize 4294967296
suffix "%s"
rootdn "%s"
rootpw %s
directory %s
index objectClass eq
index entryUUID eq
index entryCSN eq
index uid eq
%s
overlay memberof
overlay ppolicy
overlay syncprov
syncprov-checkpoint 100 1
syncprov-sessionlog %d
`, dir, Suffix, AdminDN, AdminPW, db, limits, sessionLog)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Stop ends slapd; it is registered as a cleanup and safe to call twice.
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGCONT) // a paused server cannot handle SIGINT
	_ = s.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
	}
	s.cmd = nil
}

// Modify applies LDIF change records (ldapmodify), e.g. to change, move or delete users.
func (s *Server) Modify(tb TB, ldif string) {
	tb.Helper()
	cmd := exec.Command("ldapmodify", "-x", "-H", s.URL, "-D", AdminDN, "-w", AdminPW)
	cmd.Stdin = strings.NewReader(ldif)
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("slapdtest: ldapmodify: %v\n%s", err, out)
	}
}

// Add adds the entries of a content LDIF (as Person and the group helpers render) online,
// through the overlays. The relax control lets the administrator keep the entryUUID the LDIF
// gives, so a test knows the UUID a delta will report.
func (s *Server) Add(tb TB, ldif string) {
	tb.Helper()
	cmd := exec.Command("ldapadd", "-e", "relax", "-x", "-H", s.URL, "-D", AdminDN, "-w", AdminPW)
	cmd.Stdin = strings.NewReader(ldif)
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("slapdtest: ldapadd: %v\n%s", err, out)
	}
}

// admin runs f on a connection bound as the directory's administrator.
func (s *Server) admin(tb TB, what string, f func(*goldap.Conn) error) {
	tb.Helper()
	conn, err := goldap.DialURL(s.URL, goldap.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}))
	if err != nil {
		tb.Fatalf("slapdtest: %s: dial: %v", what, err)
	}
	defer conn.Close()
	conn.SetTimeout(30 * time.Second)
	if err := conn.Bind(AdminDN, AdminPW); err != nil {
		tb.Fatalf("slapdtest: %s: bind: %v", what, err)
	}
	if err := f(conn); err != nil {
		tb.Fatalf("slapdtest: %s: %v", what, err)
	}
}

// Replace sets attr of dn to values (none: removes the attribute).
func (s *Server) Replace(tb TB, dn, attr string, values ...string) {
	tb.Helper()
	s.admin(tb, "replace "+attr+" of "+dn, func(c *goldap.Conn) error {
		m := goldap.NewModifyRequest(dn, nil)
		m.Replace(attr, values)
		return c.Modify(m)
	})
}

// AddValues adds values to attr of dn, e.g. a member to a group.
func (s *Server) AddValues(tb TB, dn, attr string, values ...string) {
	tb.Helper()
	s.admin(tb, "add "+attr+" to "+dn, func(c *goldap.Conn) error {
		m := goldap.NewModifyRequest(dn, nil)
		m.Add(attr, values)
		return c.Modify(m)
	})
}

// DeleteValues removes values from attr of dn, e.g. a member from a group.
func (s *Server) DeleteValues(tb TB, dn, attr string, values ...string) {
	tb.Helper()
	s.admin(tb, "delete "+attr+" from "+dn, func(c *goldap.Conn) error {
		m := goldap.NewModifyRequest(dn, nil)
		m.Delete(attr, values)
		return c.Modify(m)
	})
}

// Delete removes the entry dn.
func (s *Server) Delete(tb TB, dn string) {
	tb.Helper()
	s.admin(tb, "delete "+dn, func(c *goldap.Conn) error { return c.Del(goldap.NewDelRequest(dn, nil)) })
}

// Rename is modrdn: dn gets newRDN (e.g. "uid=alice2") and, when newSuperior is not "", moves
// under it. The old RDN value is removed from the entry.
func (s *Server) Rename(tb TB, dn, newRDN, newSuperior string) {
	tb.Helper()
	s.admin(tb, "rename "+dn, func(c *goldap.Conn) error {
		return c.ModifyDN(goldap.NewModifyDNRequest(dn, newRDN, true, newSuperior))
	})
}

// Person renders one inetOrgPerson entry under ou=people with a fixed entryUUID.
func Person(uid, uuid, given, sn, mail string) string {
	s := fmt.Sprintf("dn: uid=%s,%s\nobjectClass: inetOrgPerson\nuid: %s\ncn: %s %s\nsn: %s\nentryUUID: %s\n",
		uid, People, uid, given, sn, sn, uuid)
	if given != "" {
		s += "givenName: " + given + "\n"
	}
	if mail != "" {
		s += "mail: " + mail + "\n"
	}
	return s + "\n"
}

// PersonDN is the DN Person gives uid.
func PersonDN(uid string) string { return "uid=" + uid + "," + People }

// GroupOfNames renders a groupOfNames under ou=groups; rdnValue is escaped here, members are
// DNs used as given (so a test can give them in any escaping).
func GroupOfNames(rdnValue string, members ...string) string {
	s := fmt.Sprintf("dn: cn=%s,%s\nobjectClass: groupOfNames\ncn: %s\n", goldap.EscapeDN(rdnValue), Groups, rdnValue)
	for _, m := range members {
		s += "member: " + m + "\n"
	}
	return s + "\n"
}

// GroupOfUniqueNames renders a groupOfUniqueNames under ou=groups; members are
// nameAndOptionalUID values (a DN, optionally followed by #'…'B).
func GroupOfUniqueNames(rdnValue string, members ...string) string {
	s := fmt.Sprintf("dn: cn=%s,%s\nobjectClass: groupOfUniqueNames\ncn: %s\n", goldap.EscapeDN(rdnValue), Groups, rdnValue)
	for _, m := range members {
		s += "uniqueMember: " + m + "\n"
	}
	return s + "\n"
}

// PosixGroup renders a posixGroup under ou=groups whose members are uid values, not DNs.
func PosixGroup(rdnValue string, gid int, memberUIDs ...string) string {
	s := fmt.Sprintf("dn: cn=%s,%s\nobjectClass: posixGroup\ncn: %s\ngidNumber: %d\n", goldap.EscapeDN(rdnValue), Groups, rdnValue, gid)
	for _, m := range memberUIDs {
		s += "memberUid: " + m + "\n"
	}
	return s + "\n"
}

// GroupDN is the DN the group helpers give rdnValue.
func GroupDN(rdnValue string) string { return "cn=" + goldap.EscapeDN(rdnValue) + "," + Groups }

// UUID returns a deterministic entryUUID for test user n.
func UUID(n int) string { return fmt.Sprintf("00000000-0000-4000-8000-%012d", n) }
