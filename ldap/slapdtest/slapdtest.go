// Package slapdtest starts a real OpenLDAP slapd on 127.0.0.1 in a temporary directory for
// integration tests and benchmarks. Tests skip when slapd is not installed, unless
// SCIMSYNC_REQUIRE_SLAPD is set (as .ci/run does), in which case they fail.
package slapdtest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The ppolicy overlay is loaded so entries can carry pwdAccountLockedTime (a locked account).

// Suffix and credentials of the test directory.
const (
	Suffix   = "dc=example,dc=org"
	People   = "ou=people," + Suffix
	Moved    = "ou=moved," + Suffix
	AdminDN  = "cn=admin," + Suffix
	AdminPW  = "test-admin-secret"
	slapdBin = "/usr/sbin/slapd"
)

// Server is a running slapd.
type Server struct {
	URL      string // ldap://127.0.0.1:PORT (StartTLS is offered when started with StartTLS)
	LDAPSURL string // ldaps://127.0.0.1:PORT, when started with StartTLS
	CAFile   string // PEM of the CA that signed the server certificate, when started with StartTLS
	dir      string
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

// Start runs slapd with the base entries (the suffix, ou=people, ou=moved) plus seed, an LDIF
// loaded offline with slapadd before the server starts (fast enough for 10,000 users).
func Start(tb TB, seed string) *Server {
	tb.Helper()
	return start(tb, seed, false)
}

// StartTLS is Start with a throwaway CA: ldap:// offers StartTLS and ldaps:// listens too.
func StartTLS(tb TB, seed string) *Server {
	tb.Helper()
	return start(tb, seed, true)
}

func start(tb TB, seed string, withTLS bool) *Server {
	tb.Helper()
	available(tb)
	dir := tb.TempDir()
	db := filepath.Join(dir, "db")
	if err := os.MkdirAll(db, 0o700); err != nil {
		tb.Fatalf("slapdtest: %v", err)
	}
	conf := filepath.Join(dir, "slapd.conf")
	text := slapdConf(dir, db)
	var caFile string
	if withTLS {
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
		"dn: %s\nobjectClass: organizationalUnit\nou: people\n\ndn: %s\nobjectClass: organizationalUnit\nou: moved\n\n",
		Suffix, People, Moved)
	add := exec.Command(findSlapadd(), "-q", "-f", conf)
	add.Stdin = strings.NewReader(base + seed)
	if out, err := add.CombinedOutput(); err != nil {
		tb.Fatalf("slapdtest: slapadd: %v\n%s", err, out)
	}
	port, err := freePort()
	if err != nil {
		tb.Fatalf("slapdtest: %v", err)
	}
	url := fmt.Sprintf("ldap://127.0.0.1:%d", port)
	listen := url + "/"
	var ldapsURL string
	if withTLS {
		tlsPort, err := freePort()
		if err != nil {
			tb.Fatalf("slapdtest: %v", err)
		}
		ldapsURL = fmt.Sprintf("ldaps://127.0.0.1:%d", tlsPort)
		listen += " " + ldapsURL + "/"
	}
	cmd := exec.Command(slapdBin, "-f", conf, "-h", listen, "-d", "0")
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		tb.Fatalf("slapdtest: start slapd: %v", err)
	}
	s := &Server{URL: url, LDAPSURL: ldapsURL, CAFile: caFile, dir: dir, cmd: cmd}
	tb.Cleanup(s.Stop)
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 200*time.Millisecond)
		if err == nil {
			_ = c.Close()
			break
		}
		if time.Now().After(deadline) {
			s.Stop()
			tb.Fatalf("slapdtest: slapd did not listen on %s: %s", url, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return s
}

func slapdConf(dir, db string) string {
	return fmt.Sprintf(`include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload ppolicy
pidfile %s/slapd.pid
sizelimit unlimited
database mdb
maxsize 1073741824
suffix "%s"
rootdn "%s"
rootpw %s
directory %s
index objectClass eq
index entryUUID eq
limits * size=unlimited size.pr=unlimited time=unlimited
overlay ppolicy
`, dir, Suffix, AdminDN, AdminPW, db)
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

// UUID returns a deterministic entryUUID for test user n.
func UUID(n int) string { return fmt.Sprintf("00000000-0000-4000-8000-%012d", n) }
