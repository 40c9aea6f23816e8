package daemon

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
)

// labelValues lists the values metric name has for label, from reg.
func labelValues(t *testing.T, reg *prometheus.Registry, name, label string) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label {
					out[lp.GetValue()] += m.GetCounter().GetValue()
				}
			}
		}
	}
	return out
}

func TestServerRequestLabelsComeFromAFixedSet(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := newMetrics(reg, BuildInfo{})
	h := m.countServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer good" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	methods := []string{"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "get", "PROPFIND", "X" + strings.Repeat("Y", 4000)}
	for i := 0; i < 200; i++ {
		methods = append(methods, "M"+strings.Repeat("Z", i))
	}
	for _, method := range methods {
		for _, auth := range []string{"", "Bearer good"} {
			r := httptest.NewRequest(http.MethodGet, "/scim/v2/Users", nil)
			r.Method = method
			if auth != "" {
				r.Header.Set("Authorization", auth)
			}
			h.ServeHTTP(httptest.NewRecorder(), r)
		}
	}
	got := labelValues(t, reg, "scimsync_scim_server_requests_total", "method")
	allowed := map[string]bool{"GET": true, "POST": true, "PUT": true, "PATCH": true, "DELETE": true, "other": true, "unauthenticated": true}
	for v := range got {
		if !allowed[v] {
			t.Errorf("method label %.40q is not one of the fixed set", v)
		}
	}
	if got["unauthenticated"] != float64(len(methods)) {
		t.Errorf("unauthenticated requests counted %v, want %d", got["unauthenticated"], len(methods))
	}
	if len(got) > len(allowed) || got["other"] != float64(len(methods)-5) || got["GET"] != 1 {
		t.Errorf("authenticated requests: %d label values, %v other, %v GET", len(got), got["other"], got["GET"])
	}

	m.observeSCIM("PATCH", 1234)
	m.observeSCIM("PATCH", 0)
	status := labelValues(t, reg, "scimsync_scim_client_requests_total", "status")
	if status["other"] != 1 || status["0"] != 1 || len(status) != 2 {
		t.Errorf("client status labels: %v", status)
	}
	if v := testutil.ToFloat64(m.scimReqs.WithLabelValues("PATCH", "other")); v != 1 {
		t.Errorf("an impossible status from the target counted %v under other", v)
	}
}

func TestAdminListenerRefusesHugeHeaders(t *testing.T) {
	d := &Daemon{log: zap.NewNop(), level: zap.NewAtomicLevel(), reg: prometheus.NewRegistry(), cur: &Settings{Admin: DefaultAdminConfig()}}
	srv := d.newAdminServer()
	if srv.ErrorLog == nil {
		t.Fatal("net/http's own errors would go to the standard logger, past the redacting core")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	get := func(header string) int {
		req, _ := http.NewRequest(http.MethodGet, "http://"+ln.Addr().String()+"/healthz", nil)
		req.Header.Set("X-Filler", header)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get("small"); code != http.StatusOK {
		t.Fatalf("a normal request: %d", code)
	}
	if code := get(strings.Repeat("a", 200<<10)); code != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("a 200 KiB header: %d, want 431", code)
	}
}
