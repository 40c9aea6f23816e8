package state

import (
	"encoding/json"
	"fmt"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// dropStoredPasswords removes the "password" attribute (any case) from every stored SCIM user.
// Values it cannot parse are left alone: the server reports those at load with their id.
func dropStoredPasswords(tx *bolt.Tx) error {
	b := tx.Bucket([]byte(KindUser))
	if b == nil {
		return nil
	}
	type change struct{ k, v []byte }
	var changes []change
	err := b.ForEach(func(k, v []byte) error {
		var rec map[string]json.RawMessage
		if json.Unmarshal(v, &rec) != nil {
			return nil
		}
		var attrs map[string]json.RawMessage
		if json.Unmarshal(rec["attrs"], &attrs) != nil {
			return nil
		}
		dropped := false
		for key := range attrs {
			if strings.EqualFold(key, "password") {
				delete(attrs, key)
				dropped = true
			}
		}
		if !dropped {
			return nil
		}
		raw, err := json.Marshal(attrs)
		if err != nil {
			return fmt.Errorf("user %q: %w", k, err)
		}
		rec["attrs"] = raw
		out, err := json.Marshal(rec)
		if err != nil {
			return fmt.Errorf("user %q: %w", k, err)
		}
		changes = append(changes, change{append([]byte(nil), k...), out})
		return nil
	})
	if err != nil {
		return err
	}
	// bbolt forbids writing a bucket while iterating it
	for _, c := range changes {
		if err := b.Put(c.k, c.v); err != nil {
			return fmt.Errorf("user %q: %w", c.k, err)
		}
	}
	return nil
}
