package scimserver

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// TestCommitMetrics: every acknowledged write is in a group-commit transaction the metrics saw.
func TestCommitMetrics(t *testing.T) {
	ts := startTestServerWith(t, "", func(*ServerConfig) {}, zap.NewNop())
	reg := prometheus.NewRegistry()
	if err := ts.srv.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"alice", "bob", "carol"} {
		ts.mustStatus(ts.do("POST", "/Users", userBody(name, "")), 201)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][2]float64{} // name -> count, sum
	for _, f := range families {
		for _, m := range f.GetMetric() {
			if h := m.GetHistogram(); h != nil {
				got[f.GetName()] = [2]float64{float64(h.GetSampleCount()), h.GetSampleSum()}
			}
		}
	}
	secs, writes := got["scimsync_scim_server_commit_seconds"], got["scimsync_scim_server_commit_writes"]
	if secs[0] < 1 || secs[1] <= 0 || writes[0] != secs[0] || writes[1] != 3 {
		t.Fatalf("commit metrics after 3 creates: seconds %v, writes %v", secs, writes)
	}
}
