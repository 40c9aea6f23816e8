//go:build linux

package state

import (
	"fmt"
	"syscall"

	bolt "go.etcd.io/bbolt"
)

// ReleaseMappedPages drops the state file's pages from this process's resident set. bbolt reads
// through a shared memory map, so a full scan (the SCIM server's start-up) leaves the whole file
// resident and counted in the process's RSS, though the server never reads it again; the pages
// stay in the kernel's page cache and come back on demand.
func (s *Store) ReleaseMappedPages() error {
	if s.db == nil {
		return nil
	}
	return s.db.View(func(tx *bolt.Tx) error {
		// a read transaction holds bbolt's mmap lock, so the mapping cannot move meanwhile
		addr, size := s.db.Info().Data, uintptr(tx.Size())
		if _, _, errno := syscall.Syscall(syscall.SYS_MADVISE, addr, size, syscall.MADV_DONTNEED); errno != 0 {
			return fmt.Errorf("state: release mapped pages: %w", errno)
		}
		return nil
	})
}
