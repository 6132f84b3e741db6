package files

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path"
)

// WriteFile writes content to name inside root, creating parent directories, and checks its
// SHA-256 when want is not empty. os.Root refuses any name or existing link that would lead
// outside the directory, so nothing is ever written elsewhere.
func WriteFile(root *os.Root, name string, mode os.FileMode, content io.Reader, want string) (int64, error) {
	if err := CheckName(name); err != nil {
		return 0, err
	}
	if dir := path.Dir(name); dir != "." {
		if err := root.MkdirAll(dir, 0o755); err != nil {
			return 0, fmt.Errorf("create %s: %w", dir, err)
		}
	}
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode.Perm()|0o200)
	if err != nil {
		return 0, fmt.Errorf("create %s: %w", name, err)
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), content)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = root.Remove(name)
		return n, fmt.Errorf("write %s: %w", name, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); want != "" && got != want {
		_ = root.Remove(name)
		return n, fmt.Errorf("%s: SHA-256 %s, want %s", name, got, want)
	}
	if err := root.Chmod(name, mode.Perm()); err != nil {
		return n, fmt.Errorf("chmod %s: %w", name, err)
	}
	return n, nil
}

// WriteLink creates a symbolic link inside root after checking that it stays inside.
func WriteLink(root *os.Root, name, target string) error {
	if err := CheckName(name); err != nil {
		return err
	}
	if err := CheckLink(name, target); err != nil {
		return err
	}
	if dir := path.Dir(name); dir != "." {
		if err := root.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", dir, err)
		}
	}
	_ = root.Remove(name)
	return root.Symlink(target, name)
}
