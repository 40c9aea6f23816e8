package scimserver

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/scimsync/scimsync/state"
)

// BenchmarkStoreLoad measures what a restart costs: reading and indexing every stored user.
func BenchmarkStoreLoad(b *testing.B) {
	for _, n := range []int{10000, 50000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			st, err := state.Open(filepath.Join(b.TempDir(), "s.db"), state.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			var writes []state.ResourceWrite
			for i := 0; i < n; i++ {
				r := &resource{ID: newID(), Seq: uint64(i + 1), Version: 1,
					Attrs: map[string]any{"userName": fmt.Sprintf("u%d", i), "externalId": fmt.Sprintf("e%d", i)}}
				raw, _ := json.Marshal(r)
				writes = append(writes, state.ResourceWrite{Kind: state.KindUser, ID: r.ID, Data: raw})
			}
			if err := st.WriteResources(writes...); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				s, err := newStore(st, time.Now)
				if err != nil || len(s.users.order) != n {
					b.Fatal(err)
				}
			}
		})
	}
}
