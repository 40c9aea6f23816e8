package state

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Origin says how the sync came to own a target user.
type Origin string

const (
	// OriginCreated: the sync created the user on the target.
	OriginCreated Origin = "created"
	// OriginAdopted: the user existed on the target and the sync took it over.
	OriginAdopted Origin = "adopted"
)

// Link ties a directory user (by its stable id) to the target user the sync owns.
type Link struct {
	ExternalID string    `json:"externalId"`
	TargetID   string    `json:"targetId"`
	UserName   string    `json:"userName"`
	DN         string    `json:"dn"`
	Hash       string    `json:"hash"` // of the attributes last pushed
	Origin     Origin    `json:"origin"`
	DisabledAt time.Time `json:"disabledAt,omitzero"` // set while deprovisioned-but-not-deleted
	CreatedAt  time.Time `json:"createdAt"`
	UpdatedAt  time.Time `json:"updatedAt"`
}

// Mode is a user's managementMode.
type Mode string

const (
	// ModeDefault: the sync owns the user.
	ModeDefault Mode = "DEFAULT"
	// ModeCMS: hands off; someone else manages the user.
	ModeCMS Mode = "CMS"
)

// ParseMode accepts DEFAULT or CMS in any case.
func ParseMode(s string) (Mode, error) {
	switch Mode(strings.ToUpper(s)) {
	case ModeDefault:
		return ModeDefault, nil
	case ModeCMS:
		return ModeCMS, nil
	}
	return "", fmt.Errorf("managementMode %q: want DEFAULT or CMS", s)
}

// Override is an administrator's managementMode decision for one userName.
type Override struct {
	UserName string    `json:"userName"`
	Mode     Mode      `json:"mode"`
	SetAt    time.Time `json:"setAt"`
}

// Links returns every link by externalId.
func (s *Store) Links() (map[string]Link, error) {
	out := map[string]Link{}
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketLinks).ForEach(func(k, v []byte) error {
			var l Link
			if err := json.Unmarshal(v, &l); err != nil {
				return fmt.Errorf("link %q: %w", k, err)
			}
			out[string(k)] = l
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("state: read links: %w", err)
	}
	return out, nil
}

// SetOverride records mode for userName (case-insensitive).
func (s *Store) SetOverride(userName string, mode Mode, at time.Time) error {
	err := s.update(func(tx *bolt.Tx) error {
		return putJSON(tx.Bucket(bucketOverrides), []byte(strings.ToLower(userName)),
			Override{UserName: userName, Mode: mode, SetAt: at.UTC()})
	})
	if err != nil {
		return fmt.Errorf("state: set override %q: %w", userName, err)
	}
	return nil
}

// ClearOverride removes userName's override; clearing a missing one is not an error.
func (s *Store) ClearOverride(userName string) error {
	err := s.update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketOverrides).Delete([]byte(strings.ToLower(userName)))
	})
	if err != nil {
		return fmt.Errorf("state: clear override %q: %w", userName, err)
	}
	return nil
}

// Overrides returns every override keyed by lower-cased userName.
func (s *Store) Overrides() (map[string]Override, error) {
	out := map[string]Override{}
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketOverrides).ForEach(func(k, v []byte) error {
			var o Override
			if err := json.Unmarshal(v, &o); err != nil {
				return fmt.Errorf("override %q: %w", k, err)
			}
			out[string(k)] = o
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("state: read overrides: %w", err)
	}
	return out, nil
}

// Change is one entry of a run's change log.
type Change struct {
	At         time.Time         `json:"at"`
	Action     string            `json:"action"`
	ExternalID string            `json:"externalId"`
	UserName   string            `json:"userName"`
	TargetID   string            `json:"targetId,omitempty"`
	By         string            `json:"by"` // who made the change: "sync" or an admin command
	Old        map[string]string `json:"old,omitempty"`
	New        map[string]string `json:"new,omitempty"`
	// Error is set when the write was tried and failed (RecordFailures); empty means done.
	Error string `json:"error,omitempty"`
}

// Commit records one target write in a single transaction: the link as it now stands (or its
// removal when forget is set) and the change-log entry. Called right after each successful
// write, so a run killed at any point leaves state that matches the target.
func (s *Store) Commit(runID uint64, link Link, forget bool, ch Change) error {
	err := s.update(func(tx *bolt.Tx) error {
		links := tx.Bucket(bucketLinks)
		if forget {
			if err := links.Delete([]byte(link.ExternalID)); err != nil {
				return err
			}
		} else if err := putJSON(links, []byte(link.ExternalID), link); err != nil {
			return err
		}
		if runID == 0 {
			return nil
		}
		return putChange(tx, runID, ch)
	})
	if err != nil {
		return fmt.Errorf("state: commit %s of %q: %w", ch.Action, link.ExternalID, err)
	}
	return nil
}

// Changes returns the change log of one run, in order.
func (s *Store) Changes(runID uint64) ([]Change, error) {
	var out []Change
	prefix := be64(runID)
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketChanges).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			var ch Change
			if err := json.Unmarshal(v, &ch); err != nil {
				return err
			}
			out = append(out, ch)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("state: read changes of run %d: %w", runID, err)
	}
	return out, nil
}
