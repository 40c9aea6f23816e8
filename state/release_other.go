//go:build !linux

package state

// ReleaseMappedPages is a no-op where madvise is not available.
func (s *Store) ReleaseMappedPages() error { return nil }

func releaseMapped(addr, size uintptr) int { return 0 }
