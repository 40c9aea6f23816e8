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
		if errno := releaseMapped(s.db.Info().Data, uintptr(tx.Size())); errno != 0 {
			return fmt.Errorf("state: release mapped pages: %w", errno)
		}
		return nil
	})
}

// releaseMapped advises the kernel that the mapped range is not needed; the caller holds a
// transaction, so the mapping stays where it is.
func releaseMapped(addr, size uintptr) syscall.Errno {
	_, _, errno := syscall.Syscall(syscall.SYS_MADVISE, addr, size, syscall.MADV_DONTNEED)
	return errno
}
