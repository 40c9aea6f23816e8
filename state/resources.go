package state

import (
	"bytes"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Kind names a bucket of SCIM server resources.
type Kind string

const (
	// KindUser holds the SCIM server's users.
	KindUser Kind = "scim_users"
	// KindGroup holds the SCIM server's groups.
	KindGroup Kind = "scim_groups"
)

// ResourceWrite is one put (Data != nil) or delete (Data == nil) of a stored resource.
type ResourceWrite struct {
	Kind Kind
	ID   string
	Data []byte
}

// ForEachResource calls fn with a copy of every stored resource of kind, in id order.
func (s *Store) ForEachResource(kind Kind, fn func(id string, data []byte) error) error {
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(kind))
		if b == nil {
			return fmt.Errorf("unknown resource kind %q", kind)
		}
		return b.ForEach(func(k, v []byte) error { return fn(string(k), bytes.Clone(v)) })
	})
	if err != nil {
		return fmt.Errorf("state: read %s: %w", kind, err)
	}
	return nil
}

// ScanResources calls fn with the stored resources of kind in batches of at most batch values,
// without copying them: the slices alias the state file's memory map and are valid only until
// fn returns (a caller that keeps anything copies it). It is the start-up path of the SCIM
// server, which decodes each batch on every core.
func (s *Store) ScanResources(kind Kind, batch int, fn func(values [][]byte) error) error {
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(kind))
		if b == nil {
			return fmt.Errorf("unknown resource kind %q", kind)
		}
		values := make([][]byte, 0, batch)
		err := b.ForEach(func(_, v []byte) error {
			values = append(values, v)
			if len(values) == batch {
				err := fn(values)
				values = values[:0]
				return err
			}
			return nil
		})
		if err == nil && len(values) > 0 {
			err = fn(values)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("state: read %s: %w", kind, err)
	}
	return nil
}
