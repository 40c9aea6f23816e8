// Command bench measures scimsync against real processes on 127.0.0.1 and prints tables whose
// numbers are also given as ratios to a baseline measured in the same run (these machines are
// noisy; ratios travel, absolute numbers do not).
//
//	go run ./bench server   # scimsync serve: creates/gets/lists/patches at 1 and 32 clients, 10,000 users;
//	                        # a 10,000-member group PATCH; RSS and restart time at 100,000 users
//	go run ./bench server -compare OLD   # … plus the sw list scans of another build, same run
//	go run ./bench sync     # 100,000 users in slapd -> scimsync serve: initial, no change, 100 changes, one user, full reconcile
//	go run ./bench ldap     # 100,000 users in slapd: full read and syncrepl delta vs ldapsearch (-n N)
//
// Every loop is bounded by a fixed operation count; nothing runs open-ended.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	gosync "sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) >= 2 && os.Args[1] == "ldap-read" {
		// the child process of `bench ldap`
		if err := ldapRead(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "bench ldap-read:", err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) < 2 || (os.Args[1] != "server" && os.Args[1] != "sync" && os.Args[1] != "ldap") {
		fmt.Fprintln(os.Stderr, "usage: go run ./bench server [-compare OLD_BINARY] [-pin=false] | sync [-n N] [-c C] [-pin=false] | ldap [-n N]")
		os.Exit(2)
	}
	tb := &benchTB{}
	defer tb.cleanup()
	var err error
	switch os.Args[1] {
	case "server":
		fs := flag.NewFlagSet("server", flag.ExitOnError)
		compare := fs.String("compare", "", "also measure sw list scans of this scimsync binary (e.g. one built from main)")
		pin := fs.Bool("pin", true, "run the server alone on the last CPU and the load generator on the others, as IdP clients on other machines would be (false: both share every CPU)")
		_ = fs.Parse(os.Args[2:])
		pinned := false
		if *pin {
			if pinned, err = pinTarget(); err != nil {
				err = fmt.Errorf("pinning the server to a CPU: %w", err)
				break
			}
		}
		err = benchServer(tb, *compare, pinned)
	case "ldap":
		err = benchLDAP(tb, os.Args[2:])
	default:
		err = benchSync(tb, os.Args[2:])
	}
	if err != nil {
		tb.cleanup()
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// benchTB lets the bench reuse the test harness (slapdtest) outside `go test`.
type benchTB struct{ cleanups []func() }

func (b *benchTB) Helper()                   {}
func (b *benchTB) Skip(args ...any)          { panic(fmt.Sprint(args...)) }
func (b *benchTB) Fatalf(f string, a ...any) { panic(fmt.Sprintf(f, a...)) }
func (b *benchTB) Logf(f string, a ...any)   { fmt.Fprintf(os.Stderr, f+"\n", a...) }
func (b *benchTB) Cleanup(f func())          { b.cleanups = append(b.cleanups, f) }
func (b *benchTB) TempDir() string {
	d, err := os.MkdirTemp("", "scimsync-bench-")
	if err != nil {
		panic(err)
	}
	b.Cleanup(func() { _ = os.RemoveAll(d) })
	return d
}
func (b *benchTB) cleanup() {
	for i := len(b.cleanups) - 1; i >= 0; i-- {
		b.cleanups[i]()
	}
	b.cleanups = nil
}

const token = "bench-token-0123456789abcdef"

func build(tb *benchTB) string {
	bin := filepath.Join(tb.TempDir(), "scimsync")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/scimsync").CombinedOutput(); err != nil {
		panic(fmt.Sprintf("build: %v\n%s", err, out))
	}
	return bin
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// targetCPU, when set, is the CPU every `scimsync serve` the bench starts runs on alone (see
// pinTarget).
var targetCPU string

// pinnedEnv marks a bench process that pinTarget has already moved to the other CPUs; its
// value is the target's CPU.
const pinnedEnv = "SCIMSYNC_BENCH_PINNED"

// pinTarget gives the target a CPU of its own, as an independent SCIM server on another machine
// would have: the bench re-executes itself on every CPU it may use but the last (so its load generator,
// slapd, ldapsearch and the sync processes, which inherit the mask, stay there), and starts each
// server on the last one. Without it, on a 2-CPU machine whatever the client spends is taken from
// the server, and "the target's rate" measures the sum of both. It reports false when the
// process may use a single CPU or taskset is missing.
func pinTarget() (bool, error) {
	if cpu := os.Getenv(pinnedEnv); cpu != "" {
		// re-executed: this process now runs only on the others
		targetCPU = cpu
		return true, nil
	}
	// the CPUs this process may use (a container or an outer taskset may allow only some)
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return false, nil
	}
	var cpus []string
	for c := 0; c < 1024; c++ {
		if set.IsSet(c) {
			cpus = append(cpus, strconv.Itoa(c))
		}
	}
	taskset, err := exec.LookPath("taskset")
	if len(cpus) < 2 || err != nil {
		return false, nil
	}
	self, err := os.Executable()
	if err != nil {
		return false, err
	}
	target, others := cpus[len(cpus)-1], strings.Join(cpus[:len(cpus)-1], ",")
	args := append([]string{"taskset", "-c", others, self}, os.Args[1:]...)
	return false, syscall.Exec(taskset, args, append(os.Environ(), pinnedEnv+"="+target))
}

// server is one `scimsync serve` process under test.
type server struct {
	cmd  *exec.Cmd
	base string
	addr string
	cfg  string
}

// startServe runs `scimsync serve` on a fresh state file in dir (or the one there) and waits
// until it answers; it returns the process and how long that took.
func startServe(tb *benchTB, bin, dir, addr string, env ...string) (*server, time.Duration) {
	cfg := filepath.Join(dir, "serve.yaml")
	_ = os.WriteFile(cfg, []byte(fmt.Sprintf("server:\n  listen: %s\n  max_results: 1000\n  tokens:\n    - name: bench\n      token: %s\nstate:\n  path: %s/server.db\nlog:\n  level: warn\n", addr, token, dir)), 0o600)
	cmd := exec.Command(bin, "serve", "--config", cfg)
	if targetCPU != "" {
		cmd = exec.Command("taskset", "-c", targetCPU, bin, "serve", "--config", cfg)
	}
	cmd.Stderr = os.Stderr
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		panic(err)
	}
	s := &server{cmd: cmd, base: "http://" + addr + "/scim/v2", addr: addr, cfg: cfg}
	tb.Cleanup(s.stop)
	for i := 0; i < 2000; i++ {
		if code, err := call("GET", s.base+"/Users?count=0", nil); err == nil && code == 200 {
			return s, time.Since(t0)
		}
		time.Sleep(5 * time.Millisecond)
	}
	panic("serve did not start")
}

func (s *server) stop() {
	if s.cmd.ProcessState != nil {
		return
	}
	_ = s.cmd.Process.Signal(os.Interrupt)
	_ = s.cmd.Wait()
}

// rss reads the resident set size of the process, in MiB.
func (s *server) rss() float64 { return procStatusMiB(s.cmd.Process.Pid, "VmRSS") }

// procStatusMiB reads a memory field of /proc/PID/status (VmRSS: resident now; VmHWM: the
// highest it has been), in MiB; 0 when it cannot.
func procStatusMiB(pid int, field string) float64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, field+":") {
			var kb float64
			_, _ = fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(line, field+":")), "%f", &kb)
			return kb / 1024
		}
	}
	return 0
}

var client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 2 * time.Minute}

func call(method, u string, body []byte) (int, error) {
	code, _, err := callBody(method, u, body)
	return code, err
}

func callBody(method, u string, body []byte) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, _ := http.NewRequest(method, u, rd)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/scim+json")
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, raw, nil
}

type stat struct {
	name    string
	clients int
	ops     int
	elapsed time.Duration
	lat     []time.Duration
}

func (s stat) rate() float64 { return float64(s.ops) / s.elapsed.Seconds() }
func (s stat) p(q float64) time.Duration {
	l := append([]time.Duration(nil), s.lat...)
	sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
	return l[int(float64(len(l)-1)*q)]
}

// load runs ops requests from clients goroutines; req(i) builds request i; want lists the
// statuses that count as success.
func load(name string, clients, ops int, want []int, req func(i int) (string, string, []byte)) (stat, error) {
	s := stat{name: name, clients: clients, ops: ops, lat: make([]time.Duration, ops)}
	// every request is built before the clock starts: on a small machine the load generator's
	// own work (encoding bodies) would take CPU from the server it measures
	type request struct {
		method, url string
		body        []byte
	}
	reqs := make([]request, ops)
	for i := range reqs {
		m, u, b := req(i)
		reqs[i] = request{m, u, b}
	}
	var wg gosync.WaitGroup
	var mu gosync.Mutex
	var firstErr error
	next := make(chan int, ops)
	for i := 0; i < ops; i++ {
		next <- i
	}
	close(next)
	start := time.Now()
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				r := reqs[i]
				t0 := time.Now()
				code, err := call(r.method, r.url, r.body)
				s.lat[i] = time.Since(t0)
				if err != nil || !slices.Contains(want, code) {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("%s %s: %d %v", r.method, r.url, code, err)
					}
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	s.elapsed = time.Since(start)
	return s, firstErr
}

func userJSON(i int) []byte {
	b, _ := json.Marshal(map[string]any{"schemas": []string{"urn:ietf:params:scim:schemas:core:2.0:User"},
		"userName": fmt.Sprintf("user%06d@example.org", i), "externalId": fmt.Sprintf("ext-%06d", i),
		"name":   map[string]any{"givenName": "Given", "familyName": fmt.Sprintf("Family%d", i)},
		"emails": []any{map[string]any{"value": fmt.Sprintf("user%06d@example.org", i), "type": "work"}}, "active": true})
	return b
}

var (
	ok200 = []int{200}
	ok201 = []int{201}
)

// fill creates users [from, to) at 32 clients.
func fill(base string, from, to int) error {
	_, err := load("fill", 32, to-from, ok201, func(i int) (string, string, []byte) {
		return "POST", base + "/Users", userJSON(from + i)
	})
	return err
}

// userIDs pages through the first n users (pages are capped at max_results).
func userIDs(base string, n int) ([]string, error) {
	ids := make([]string, 0, n)
	for len(ids) < n {
		code, raw, err := callBody("GET", base+fmt.Sprintf("/Users?startIndex=%d&count=%d&attributes=id", len(ids)+1, min(1000, n-len(ids))), nil)
		if err != nil || code != 200 {
			return nil, fmt.Errorf("list ids: %d %v", code, err)
		}
		var lr struct{ Resources []struct{ ID string } }
		if err := json.Unmarshal(raw, &lr); err != nil {
			return nil, err
		}
		if len(lr.Resources) == 0 {
			break
		}
		for _, r := range lr.Resources {
			ids = append(ids, r.ID)
		}
	}
	return ids, nil
}

// swScan is the list scan the issue measured: name.familyName sw, 10 per page.
func swScan(base string, clients, ops int) (stat, error) {
	return load("list scan (sw, 10/page)", clients, ops, ok200, func(i int) (string, string, []byte) {
		f := url.QueryEscape(fmt.Sprintf(`name.familyName sw "Family%d"`, i%100))
		return "GET", base + "/Users?count=10&filter=" + f, nil
	})
}

func benchServer(tb *benchTB, compare string, pinned bool) error {
	const stored = 10000
	bin := build(tb)
	dir := tb.TempDir()
	disk, err := diskCommits(dir, 1000)
	if err != nil {
		return err
	}
	srv, _ := startServe(tb, bin, dir, freeAddr())
	base := srv.base
	var rows []stat
	seed := 0
	for _, clients := range []int{1, 32} {
		n := 1000
		if clients == 32 {
			n = stored - 1000
		}
		off := seed
		s, err := load("create", clients, n, ok201, func(i int) (string, string, []byte) {
			return "POST", base + "/Users", userJSON(off + i)
		})
		if err != nil {
			return err
		}
		seed += n
		rows = append(rows, s)
	}
	ids, err := userIDs(base, 1000)
	if err != nil {
		return err
	}
	for _, clients := range []int{1, 32} {
		s, err := load("get", clients, 5000, ok200, func(i int) (string, string, []byte) {
			return "GET", base + "/Users/" + ids[i%len(ids)], nil
		})
		if err != nil {
			return err
		}
		rows = append(rows, s)
		s, err = load("list userName eq", clients, 5000, ok200, func(i int) (string, string, []byte) {
			f := url.QueryEscape(fmt.Sprintf(`userName eq "user%06d@example.org"`, (i*7919)%stored))
			return "GET", base + "/Users?filter=" + f, nil
		})
		if err != nil {
			return err
		}
		rows = append(rows, s)
		if s, err = swScan(base, clients, 2000); err != nil {
			return err
		}
		rows = append(rows, s)
		s, err = load("patch (replace title)", clients, 2000, ok200, func(i int) (string, string, []byte) {
			body := fmt.Sprintf(`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"title","value":"t%d-%d"}]}`, clients, i)
			return "PATCH", base + "/Users/" + ids[i%len(ids)], []byte(body)
		})
		if err != nil {
			return err
		}
		rows = append(rows, s)
	}

	// one PATCH adding 10,000 members to a group, and GETs issued while it runs
	group, err := bigGroupPatch(base, ids, stored)
	if err != nil {
		return err
	}

	var cmpRows []stat
	if compare != "" {
		// a build from before the GOMAXPROCS floor would run with one P on the pinned CPU;
		// give it the two this build runs with there, so the scans compare code, not settings
		var env []string
		if pinned {
			env = append(env, "GOMAXPROCS=2")
		}
		old, _ := startServe(tb, compare, tb.TempDir(), freeAddr(), env...)
		if err := fill(old.base, 0, stored); err != nil {
			return fmt.Errorf("compare binary: %w", err)
		}
		for _, clients := range []int{1, 32} {
			s, err := swScan(old.base, clients, 500)
			if err != nil {
				return fmt.Errorf("compare binary: %w", err)
			}
			s.name = "list scan (sw), compared"
			cmpRows = append(cmpRows, s)
		}
		old.stop()
	}

	// 100,000 stored users: memory, and how long a restart takes
	if err := fill(base, stored, 100000); err != nil {
		return err
	}
	rssFull := srv.rss()
	if _, err := swScan(base, 1, 20); err != nil {
		return err
	}
	rssAfterScan := srv.rss()
	srv.stop()
	restarted, startup := startServe(tb, bin, dir, srv.addr)
	rssRestart := restarted.rss()

	baseline := rows[0].rate()
	fmt.Printf("scimsync serve on loopback, %d users stored; ratios against this run's single-client create rate (%.0f/s)\n", stored, baseline)
	if pinned {
		fmt.Printf("CPUs: the server alone on CPU %s, the load generator on the others (-pin=false: both share every CPU)\n\n", targetCPU)
	} else {
		fmt.Printf("CPUs: the server and the load generator share every CPU (not pinned)\n\n")
	}
	fmt.Printf("%-28s %7s %7s %10s %10s %10s %9s\n", "operation", "clients", "ops", "ops/s", "p50", "p99", "vs base")
	for _, r := range append(rows, cmpRows...) {
		fmt.Printf("%-28s %7d %7d %10.0f %10s %10s %8.2fx\n", r.name, r.clients, r.ops, r.rate(),
			r.p(0.50).Round(time.Microsecond), r.p(0.99).Round(time.Microsecond), r.rate()/baseline)
	}
	for _, c := range cmpRows {
		for _, r := range rows {
			if r.name == "list scan (sw, 10/page)" && r.clients == c.clients {
				fmt.Printf("\nsw list scans at %d client(s): %.0f/s, the compared binary %.0f/s: %.1fx", c.clients, r.rate(), c.rate(), r.rate()/c.rate())
			}
		}
	}
	if len(cmpRows) > 0 {
		fmt.Println()
	}
	fmt.Printf("\n%s\n", group)
	fmt.Printf("\nthe disk under the state file, %d commit-shaped writes (32 KiB + fdatasync, then 4 KiB + fdatasync, as a bbolt commit writes pages then its meta page): p50 %s, p99 %s, max %s\n",
		disk.ops, disk.p(0.5).Round(time.Microsecond), disk.p(0.99).Round(time.Microsecond), disk.p(1).Round(time.Microsecond))
	fmt.Printf("\n100,000 users stored: RSS %.0f MiB after the creates, %.0f MiB after a scan; restart answered in %s with RSS %.0f MiB\n",
		rssFull, rssAfterScan, startup.Round(time.Millisecond), rssRestart)
	return nil
}

// diskCommits times n writes shaped like one bbolt commit in dir: a write acknowledged at 32
// clients waits for at least one of these, so their tail bounds the server's from below.
func diskCommits(dir string, n int) (stat, error) {
	f, err := os.Create(filepath.Join(dir, "disk-probe"))
	if err != nil {
		return stat{}, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	s := stat{name: "disk commit", clients: 1, ops: n, lat: make([]time.Duration, n)}
	pages, meta := make([]byte, 32<<10), make([]byte, 4<<10)
	start := time.Now()
	for i := range n {
		t0 := time.Now()
		if _, err := f.WriteAt(pages, int64(1+i%64)*int64(len(pages))); err != nil {
			return s, err
		}
		if err := syscall.Fdatasync(int(f.Fd())); err != nil {
			return s, err
		}
		if _, err := f.WriteAt(meta, 0); err != nil {
			return s, err
		}
		if err := syscall.Fdatasync(int(f.Fd())); err != nil {
			return s, err
		}
		s.lat[i] = time.Since(t0)
	}
	s.elapsed = time.Since(start)
	return s, nil
}

// bigGroupPatch adds 10,000 members to a new group in one PATCH while one client keeps
// GETting a user, and reports both.
func bigGroupPatch(base string, ids []string, stored int) (string, error) {
	code, raw, err := callBody("POST", base+"/Groups", []byte(`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"big"}`))
	if err != nil || code != 201 {
		return "", fmt.Errorf("create group: %d %v", code, err)
	}
	var g struct{ ID string }
	_ = json.Unmarshal(raw, &g)
	all, err := userIDs(base, stored)
	if err != nil {
		return "", err
	}
	members := make([]map[string]string, 0, len(all))
	for _, id := range all {
		members = append(members, map[string]string{"value": id})
	}
	body, _ := json.Marshal(map[string]any{"schemas": []string{"urn:ietf:params:scim:api:messages:2.0:PatchOp"},
		"Operations": []any{map[string]any{"op": "add", "path": "members", "value": members}}})
	idle, err := load("get while idle", 1, 300, ok200, func(i int) (string, string, []byte) { return "GET", base + "/Users/" + ids[i%len(ids)], nil })
	if err != nil {
		return "", err
	}
	done := make(chan struct{})
	var during []time.Duration
	go func() {
		defer close(done)
		for i := 0; i < 100000; i++ {
			t0 := time.Now()
			if _, err := call("GET", base+"/Users/"+ids[i%len(ids)], nil); err != nil {
				return
			}
			during = append(during, time.Since(t0))
			select {
			case <-stopGets:
				return
			default:
			}
		}
	}()
	t0 := time.Now()
	code, raw, err = callBody("PATCH", base+"/Groups/"+g.ID, body)
	took := time.Since(t0)
	stopGets <- struct{}{}
	<-done
	if err != nil || code != 204 {
		return "", fmt.Errorf("big PATCH: %d %v %s", code, err, raw)
	}
	d := stat{lat: during, ops: len(during)}
	if len(during) == 0 {
		d.lat = []time.Duration{0}
	}
	return fmt.Sprintf("PATCH adding %d members to a group in one request: %s (%d KiB body); a GET meanwhile: p50 %s, p99 %s, max %s over %d GETs (idle: p50 %s, p99 %s)",
		len(members), took.Round(time.Millisecond), len(body)>>10, d.p(0.5).Round(time.Microsecond), d.p(0.99).Round(time.Microsecond),
		d.p(1).Round(time.Microsecond), len(during), idle.p(0.5).Round(time.Microsecond), idle.p(0.99).Round(time.Microsecond)), nil
}

var stopGets = make(chan struct{}, 1)
