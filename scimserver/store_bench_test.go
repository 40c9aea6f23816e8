package scimserver

import (
	"context"
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
				r := &record{id: newID(), seq: uint64(i + 1), version: 1,
					attrs: []byte(fmt.Sprintf(`{"userName":"u%d","externalId":"e%d","name":{"givenName":"G","familyName":"F%d"}}`, i, i, i))}
				raw, _ := r.encode()
				writes = append(writes, state.ResourceWrite{Kind: state.KindUser, ID: r.id, Data: raw})
			}
			if err := st.CommitResources(context.Background(), writes...); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				s, err := newStore(st, time.Now, storeLimits{maxResources: 1 << 30, maxPerToken: 1 << 30, maxGroupMembers: 1 << 30})
				if err != nil || len(s.userOrder) != n {
					b.Fatal(err)
				}
			}
		})
	}
}
