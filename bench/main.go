// Command bench measures scimsync against real processes on 127.0.0.1 and prints tables whose
// numbers are also given as ratios to a baseline measured in the same run (these machines are
// noisy; ratios travel, absolute numbers do not).
//
//	go run ./bench server   # scimsync serve: creates/gets/filtered lists at 1 and 32 clients, 10,000 users
//	go run ./bench sync     # 100,000 users in slapd -> scimsync serve: initial, no change, 100 changes, one user, full reconcile
//	go run ./bench ldap     # 100,000 users in slapd: full read and syncrepl delta vs ldapsearch (-n N)
//
// Every loop is bounded by a fixed operation count; nothing runs open-ended.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	gosync "sync"
	"time"
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
	if len(os.Args) < 2 || (os.Args[1] == "server" && len(os.Args) != 2) || (os.Args[1] != "server" && os.Args[1] != "sync" && os.Args[1] != "ldap") {
		fmt.Fprintln(os.Stderr, "usage: go run ./bench server | sync [-n N] [-c C] | ldap [-n N]")
		os.Exit(2)
	}
	tb := &benchTB{}
	defer tb.cleanup()
	var err error
	switch os.Args[1] {
	case "server":
		err = benchServer(tb)
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

// startServe runs `scimsync serve` and returns its base URL.
func startServe(tb *benchTB, bin string) string {
	dir := tb.TempDir()
	addr := freeAddr()
	cfg := filepath.Join(dir, "serve.yaml")
	_ = os.WriteFile(cfg, []byte(fmt.Sprintf("server:\n  listen: %s\n  max_results: 1000\n  tokens:\n    - name: bench\n      token: %s\nstate:\n  path: %s/server.db\nlog:\n  level: warn\n", addr, token, dir)), 0o600)
	cmd := exec.Command(bin, "serve", "--config", cfg)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		panic(err)
	}
	tb.Cleanup(func() { _ = cmd.Process.Signal(os.Interrupt); _ = cmd.Wait() })
	for i := 0; i < 200; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			_ = c.Close()
			return "http://" + addr + "/scim/v2"
		}
		time.Sleep(25 * time.Millisecond)
	}
	panic("serve did not start")
}

var client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

func call(method, u string, body []byte) (int, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, _ := http.NewRequest(method, u, rd)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/scim+json")
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
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
	sort.Slice(s.lat, func(i, j int) bool { return s.lat[i] < s.lat[j] })
	return s.lat[int(float64(len(s.lat)-1)*q)]
}

// load runs ops requests from clients goroutines; req(i) builds request i.
func load(name string, clients, ops int, want int, req func(i int) (string, string, []byte)) (stat, error) {
	s := stat{name: name, clients: clients, ops: ops, lat: make([]time.Duration, ops)}
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
				m, u, b := req(i)
				t0 := time.Now()
				code, err := call(m, u, b)
				s.lat[i] = time.Since(t0)
				if (err != nil || code != want) && firstErr == nil {
					mu.Lock()
					firstErr = fmt.Errorf("%s %s: %d %v", m, u, code, err)
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
		"userName": fmt.Sprintf("user%05d@example.org", i), "externalId": fmt.Sprintf("ext-%05d", i),
		"name":   map[string]any{"givenName": "Given", "familyName": fmt.Sprintf("Family%d", i)},
		"emails": []any{map[string]any{"value": fmt.Sprintf("user%05d@example.org", i), "type": "work"}}, "active": true})
	return b
}

// floor is the baseline: a plain net/http handler on loopback returning a user-sized body,
// i.e. what the HTTP stack alone costs on this machine right now.
func floor(tb *benchTB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	body := userJSON(1)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(body)
	})}
	go func() { _ = srv.Serve(ln) }()
	tb.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String()
}

func benchServer(tb *benchTB) error {
	const stored = 10000
	bin := build(tb)
	base := startServe(tb, bin)
	floorURL := floor(tb)
	var rows []stat
	seed := 0
	for _, clients := range []int{1, 32} {
		n := 1000
		if clients == 32 {
			n = stored - 1000
		}
		off := seed
		s, err := load("create", clients, n, 201, func(i int) (string, string, []byte) {
			return "POST", base + "/Users", userJSON(off + i)
		})
		if err != nil {
			return err
		}
		seed += n
		rows = append(rows, s)
	}
	// ids for GETs
	ids := make([]string, 0, 500)
	{
		req, _ := http.NewRequest("GET", base+"/Users?count=500&attributes=id", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		var lr struct{ Resources []struct{ ID string } }
		_ = json.NewDecoder(resp.Body).Decode(&lr)
		resp.Body.Close()
		for _, r := range lr.Resources {
			ids = append(ids, r.ID)
		}
	}
	for _, clients := range []int{1, 32} {
		s, err := load("get", clients, 5000, 200, func(i int) (string, string, []byte) {
			return "GET", base + "/Users/" + ids[i%len(ids)], nil
		})
		if err != nil {
			return err
		}
		rows = append(rows, s)
		s, err = load("list userName eq", clients, 5000, 200, func(i int) (string, string, []byte) {
			f := url.QueryEscape(fmt.Sprintf(`userName eq "user%05d@example.org"`, (i*7919)%stored))
			return "GET", base + "/Users?filter=" + f, nil
		})
		if err != nil {
			return err
		}
		rows = append(rows, s)
		s, err = load("list scan (sw, 10/page)", clients, 500, 200, func(i int) (string, string, []byte) {
			f := url.QueryEscape(fmt.Sprintf(`name.familyName sw "Family%d"`, i%100))
			return "GET", base + "/Users?count=10&filter=" + f, nil
		})
		if err != nil {
			return err
		}
		rows = append(rows, s)
	}
	floors := map[int]stat{}
	for _, clients := range []int{1, 32} {
		s, err := load("http floor", clients, 5000, 200, func(int) (string, string, []byte) { return "GET", floorURL, nil })
		if err != nil {
			return err
		}
		floors[clients] = s
	}
	fmt.Printf("scimsync serve on loopback, %d users stored (baseline: a bare net/http handler, same run)\n\n", stored)
	fmt.Printf("%-26s %7s %7s %10s %9s %9s %12s\n", "operation", "clients", "ops", "ops/s", "p50", "p99", "vs floor")
	for _, r := range append(rows, floors[1], floors[32]) {
		fmt.Printf("%-26s %7d %7d %10.0f %9s %9s %11.2fx\n", r.name, r.clients, r.ops, r.rate(),
			r.p(0.50).Round(time.Microsecond), r.p(0.99).Round(time.Microsecond), r.rate()/floors[r.clients].rate())
	}
	return nil
}
