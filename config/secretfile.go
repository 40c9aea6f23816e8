package config

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// SecretFile is one *_file key of a config file and the path it names (as written, before
// ${ENV} expansion).
type SecretFile struct {
	Key  string
	Path string
}

// ErrLoosePermissions marks a secret file that users other than its owner can read.
var ErrLoosePermissions = errors.New("readable by group or others")

// CheckSecretFile inspects the file a *_file key names: it must exist, be a regular file this
// process can read, and hold something. A file its group or others can read is returned as an
// error wrapping ErrLoosePermissions (a warning to print, not a reason to refuse to start). The
// content is never returned or printed.
func CheckSecretFile(path string) error {
	p, err := ExpandEnv(path)
	if err != nil {
		return fmt.Errorf("path %s: %w", path, err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		return err // names the path and says "no such file" or "permission denied"
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", p)
	}
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	var one [1]byte
	if n, err := f.Read(one[:]); n == 0 {
		if err == nil || errors.Is(err, io.EOF) {
			return fmt.Errorf("%s is empty", p)
		}
		return fmt.Errorf("read %s: %w", p, err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("%s has mode %04o, %w: chmod 600 it (or pass it with systemd's LoadCredential=)", p, perm, ErrLoosePermissions)
	}
	return nil
}
