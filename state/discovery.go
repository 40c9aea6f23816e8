package state

import (
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// keyDiscovery is the meta key of the kept target discovery. The meta bucket exists since
// schema 1 and a build that does not know the key ignores it, so keeping it needs no migration.
var keyDiscovery = []byte("target_discovery")

// Discovery is the target's discovery documents, kept so that a delta run need not ask the
// target for them again. Data is the SCIM client's encoding, opaque here.
type Discovery struct {
	Data json.RawMessage `json:"data"`
	// FetchedAt is when the target served the documents.
	FetchedAt time.Time `json:"fetchedAt"`
	// Config is the configuration fingerprint (which includes the target) the documents were
	// fetched under: under another, they are not used.
	Config string `json:"config"`
}

// Discovery returns the kept target discovery, if any.
func (v *View) Discovery() (Discovery, bool, error) {
	b := v.bucket(bucketMeta)
	if b == nil {
		return Discovery{}, false, nil
	}
	raw := b.Get(keyDiscovery)
	if raw == nil {
		return Discovery{}, false, nil
	}
	var d Discovery
	if err := json.Unmarshal(raw, &d); err != nil {
		return Discovery{}, false, fmt.Errorf("state: target discovery: %w", err)
	}
	return d, true, nil // Unmarshal copied Data out of the mapped page
}

// SetDiscovery keeps d in place of any earlier one.
func (s *Store) SetDiscovery(d Discovery) error {
	d.FetchedAt = d.FetchedAt.UTC()
	err := s.update(func(tx *bolt.Tx) error { return putJSON(tx.Bucket(bucketMeta), keyDiscovery, d) })
	if err != nil {
		return fmt.Errorf("state: keep target discovery: %w", err)
	}
	return nil
}

// ClearDiscovery forgets the kept target discovery: the next run asks the target again.
func (s *Store) ClearDiscovery() error {
	err := s.update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Delete(keyDiscovery) })
	if err != nil {
		return fmt.Errorf("state: clear target discovery: %w", err)
	}
	return nil
}
