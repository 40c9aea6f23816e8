package main

// go run ./bench ldap [-n 100000]: the directory side alone, against ldapsearch in the same run.
// Both readers run as child processes so wall time and peak RSS are measured the same way
// (exec to exit; peak RSS as GNU time reports it). A full read asks for what a mapping needs; a delta is
// a syncrepl refresh from the cookie the full read returned, after a handful of changes.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/scimsync/scimsync/config"
	"github.com/scimsync/scimsync/ldap"
	"github.com/scimsync/scimsync/ldap/slapdtest"
)

// benchAttrs is what the generic profile's mapping reads from an inetOrgPerson.
var benchAttrs = []string{"uid", "cn", "sn", "givenName", "mail"}

const benchFilter = "(objectClass=inetOrgPerson)"

// measured is one child process run.
type measured struct {
	wall    time.Duration
	rssKiB  int64
	entries int // entries or changes the reader reported
}

func benchLDAP(tb *benchTB, args []string) error {
	fs := flag.NewFlagSet("ldap", flag.ContinueOnError)
	n := fs.Int("n", 100000, "users in the directory")
	reps := fs.Int("reps", 5, "runs of each measurement (the median is shown)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *n < 10 || *n > 1000000 || *reps < 1 || *reps > 50 {
		return errors.New("-n must be 10..1,000,000 and -reps 1..50")
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "bench: loading %d users with slapadd…\n", *n)
	var seed strings.Builder
	for i := 0; i < *n; i++ {
		seed.WriteString(slapdtest.Person(fmt.Sprintf("user%06d", i), slapdtest.UUID(i), "Given", fmt.Sprintf("Sn%d", i), fmt.Sprintf("user%06d@example.org", i)))
	}
	t0 := time.Now()
	ds := slapdtest.Start(tb, seed.String())
	seed.Reset()
	fmt.Fprintf(os.Stderr, "bench: slapd ready in %s\n", time.Since(t0).Round(time.Millisecond))
	dir := tb.TempDir()
	cursorFile := filepath.Join(dir, "cursor.json")

	ours := func(mode string) (measured, error) {
		return child(exec.Command(self, "ldap-read", ds.URL, mode, cursorFile))
	}
	ldapsearch := func(extra ...string) (measured, error) {
		a := append([]string{"-x", "-LLL", "-H", ds.URL, "-D", slapdtest.AdminDN, "-w", slapdtest.AdminPW, "-b", slapdtest.People}, extra...)
		a = append(append(a, benchFilter), append(slices.Clone(benchAttrs), "entryUUID")...)
		return child(exec.Command("ldapsearch", a...))
	}
	median := func(name string, want int, f func() (measured, error)) (measured, error) {
		var runs []measured
		for range *reps {
			m, err := f()
			if err != nil {
				return measured{}, fmt.Errorf("%s: %w", name, err)
			}
			if want >= 0 && m.entries != want {
				return measured{}, fmt.Errorf("%s: %d entries or changes, want %d", name, m.entries, want)
			}
			runs = append(runs, m)
		}
		slices.SortFunc(runs, func(a, b measured) int { return int(a.wall - b.wall) })
		med := runs[len(runs)/2]
		for _, r := range runs {
			med.rssKiB = max(med.rssKiB, r.rssKiB)
		}
		return med, nil
	}

	fullOurs, err := median("scimsync full read", *n, func() (measured, error) { return ours("full") })
	if err != nil {
		return err
	}
	fullLS, err := median("ldapsearch full read", *n, func() (measured, error) { return ldapsearch("-E", "pr=1000/noprompt") })
	if err != nil {
		return err
	}
	// the cursor file now holds the last full read's cursor; change a few entries
	raw, err := os.ReadFile(cursorFile)
	if err != nil {
		return err
	}
	cur, err := ldap.DecodeCursor(raw)
	if err != nil {
		return err
	}
	const modified, deleted, added = 6, 2, 2
	for i := 0; i < modified; i++ {
		ds.Replace(tb, slapdtest.PersonDN(fmt.Sprintf("user%06d", i*(*n/modified))), "mail", fmt.Sprintf("changed%d@example.org", i))
	}
	for i := 0; i < deleted; i++ {
		ds.Delete(tb, slapdtest.PersonDN(fmt.Sprintf("user%06d", *n-1-i)))
	}
	for i := 0; i < added; i++ {
		ds.Add(tb, slapdtest.Person(fmt.Sprintf("new%06d", i), slapdtest.UUID(*n+i), "New", "User", ""))
	}
	changes := modified + deleted + added
	deltaOurs, err := median("scimsync syncrepl delta", changes, func() (measured, error) { return ours("delta") })
	if err != nil {
		return err
	}
	// ldapsearch prints the changed entries; deletions arrive as a syncIdSet it only comments on
	deltaLS, err := median("ldapsearch -E sync=ro", -1, func() (measured, error) { return ldapsearch("-E", "sync=ro/"+string(cur.Cookie)) })
	if err != nil {
		return err
	}
	if deltaLS.entries != modified+added {
		return fmt.Errorf("ldapsearch -E sync=ro returned %d entries, want %d", deltaLS.entries, modified+added)
	}

	// one user on demand (sync --user): a targeted search by uid, and ByIDs for one entryUUID
	target := fmt.Sprintf("user%06d", *n/2)
	lookupOurs, err := median("scimsync targeted search", 1, func() (measured, error) { return ours("user:" + target) })
	if err != nil {
		return err
	}
	byIDOurs, err := median("scimsync ByIDs", 1, func() (measured, error) { return ours("id:" + slapdtest.UUID(*n/2)) })
	if err != nil {
		return err
	}
	lookupLS, err := median("ldapsearch targeted", 1, func() (measured, error) {
		return child(exec.Command("ldapsearch", "-x", "-LLL", "-H", ds.URL, "-D", slapdtest.AdminDN, "-w", slapdtest.AdminPW, "-b", slapdtest.People,
			"(&"+benchFilter+"(uid="+target+"))", "uid", "cn", "sn", "givenName", "mail", "entryUUID"))
	})
	if err != nil {
		return err
	}

	fmt.Printf("scimsync ldap: %d inetOrgPerson entries in slapd (memberof, ppolicy, syncprov), loopback\n", *n)
	fmt.Printf("attributes: %s + entryUUID; median of %d runs, peak RSS the largest; each reader a child process\n\n", strings.Join(benchAttrs, " "), *reps)
	fmt.Printf("%-34s %10s %10s %10s %12s %12s\n", "read", "scimsync", "ldapsearch", "ratio", "RSS scimsync", "RSS ldapsrch")
	row := func(name string, a, b measured) {
		fmt.Printf("%-34s %10s %10s %9.2fx %10dMiB %10dMiB\n", name, a.wall.Round(time.Millisecond), b.wall.Round(time.Millisecond),
			a.wall.Seconds()/b.wall.Seconds(), a.rssKiB/1024, b.rssKiB/1024)
	}
	row(fmt.Sprintf("full read, %d entries", *n), fullOurs, fullLS)
	row(fmt.Sprintf("syncrepl delta, %d changes", changes), deltaOurs, deltaLS)
	row("one user: Search (uid=…)", lookupOurs, lookupLS)
	row("one user: ByIDs (entryUUID)", byIDOurs, lookupLS)
	fmt.Printf("\nfull read: scimsync Read without a cursor (one syncrepl refresh that also returns the cookie); ldapsearch -E pr=1000/noprompt\n")
	fmt.Printf("delta: %d modified, %d deleted, %d added; scimsync Read(cursor) vs ldapsearch -E sync=ro/<same cookie>\n", modified, deleted, added)
	return nil
}

// child runs cmd and measures it; its stdout is the number of entries (ours prints it) or the
// LDIF whose "dn:" lines are counted (ldapsearch). Peak RSS comes from GNU time: a child that
// Go starts (vfork) inherits this process's high-water mark in its own ru_maxrss, so the
// kernel's figure for it would be ours, not the reader's.
func child(cmd *exec.Cmd) (measured, error) {
	timeBin, err := exec.LookPath("/usr/bin/time")
	if err != nil {
		return measured{}, errors.New("bench ldap measures peak RSS with GNU time: apt-get install time")
	}
	rssFile, err := os.CreateTemp("", "scimsync-bench-rss-")
	if err != nil {
		return measured{}, err
	}
	_ = rssFile.Close()
	defer os.Remove(rssFile.Name())
	cmd = exec.Command(timeBin, append([]string{"-f", "%M", "-o", rssFile.Name(), cmd.Path}, cmd.Args[1:]...)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return measured{}, err
	}
	cmd.Stderr = os.Stderr
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return measured{}, err
	}
	count, reported := 0, -1
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "dn: "):
			count++
		case strings.HasPrefix(line, "entries="):
			fmt.Sscan(strings.TrimPrefix(line, "entries="), &reported)
		}
	}
	_, _ = io.Copy(io.Discard, out)
	if err := cmd.Wait(); err != nil {
		return measured{}, fmt.Errorf("%s: %w", filepath.Base(cmd.Path), err)
	}
	m := measured{wall: time.Since(t0), entries: count}
	raw, err := os.ReadFile(rssFile.Name())
	if err != nil {
		return measured{}, err
	}
	if _, err := fmt.Sscan(strings.TrimSpace(string(raw)), &m.rssKiB); err != nil {
		return measured{}, fmt.Errorf("GNU time wrote %q: %w", raw, err)
	}
	if reported >= 0 {
		m.entries = reported
	}
	return m, nil
}

// ldapRead is the child side: one Read, full (storing the cursor) or from the stored cursor.
func ldapRead(args []string) error {
	if len(args) != 3 {
		return errors.New("usage: ldap-read URL full|delta|user:UID|id:UUID CURSORFILE")
	}
	url, mode, cursorFile := args[0], args[1], args[2]
	cfg := ldap.DefaultConfig()
	cfg.URL, cfg.BaseDN, cfg.UserFilter, cfg.PageSize = url, slapdtest.People, benchFilter, 1000
	cfg.BindDN, cfg.BindPassword = slapdtest.AdminDN, config.NewSecret(slapdtest.AdminPW)
	c, err := ldap.New(cfg)
	if err != nil {
		return err
	}
	var cur *ldap.Cursor
	if mode == "delta" {
		raw, err := os.ReadFile(cursorFile)
		if err != nil {
			return err
		}
		dc, err := ldap.DecodeCursor(raw)
		if err != nil {
			return err
		}
		cur = &dc
	}
	n := 0
	if uid, ok := strings.CutPrefix(mode, "user:"); ok {
		err := c.Search(context.Background(), c.UserQuery(benchAttrs), "(uid="+ldap.EscapeFilter(uid)+")", func(ldap.Entry) error { n++; return nil })
		fmt.Printf("entries=%d\n", n)
		return err
	}
	if id, ok := strings.CutPrefix(mode, "id:"); ok {
		err := c.ByIDs(context.Background(), c.UserQuery(benchAttrs), []string{id}, func(ldap.Entry) error { n++; return nil })
		fmt.Printf("entries=%d\n", n)
		return err
	}
	res, err := c.Read(context.Background(), c.UserQuery(benchAttrs), cur, func(ch ldap.Change) error {
		n++
		return nil
	})
	if err != nil {
		return err
	}
	if mode == "delta" && (res.Mechanism != ldap.DeltaSyncrepl || res.Full) {
		return fmt.Errorf("delta: %+v", res)
	}
	if mode == "full" {
		b, err := json.Marshal(res.Cursor)
		if err != nil {
			return err
		}
		if err := os.WriteFile(cursorFile, b, 0o600); err != nil {
			return err
		}
	}
	fmt.Printf("entries=%d\n", n)
	return nil
}
