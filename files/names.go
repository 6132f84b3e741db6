// Package files moves trees of files as tar streams between a submitter, the object store and a
// guest, and refuses what could escape a directory: absolute names, "..", links pointing
// outside. It streams; nothing holds a whole file in memory.
package files

import (
	"errors"
	"fmt"
	"path"
	"strings"
)

// ErrUnsafePath wraps every refusal of a name or link.
var ErrUnsafePath = errors.New("unsafe path")

// CheckName accepts a slash-separated relative name that stays inside its directory.
func CheckName(name string) error {
	bad := func(why string) error { return fmt.Errorf("%w: %q %s", ErrUnsafePath, name, why) }
	switch {
	case name == "":
		return bad("is empty")
	case strings.ContainsRune(name, 0):
		return bad("contains a NUL byte")
	case strings.HasPrefix(name, "/"):
		return bad("is absolute")
	case strings.Contains(name, `\`):
		return bad("contains a backslash")
	}
	for _, part := range strings.Split(name, "/") {
		if part == ".." {
			return bad("contains ..")
		}
	}
	if c := path.Clean(name); c == "." || c == ".." {
		return bad("names no file")
	}
	return nil
}

// CheckLink accepts a symbolic link at name whose target, resolved lexically from the link's
// own directory, stays inside the tree.
func CheckLink(name, target string) error {
	if target == "" || strings.HasPrefix(target, "/") {
		return fmt.Errorf("%w: link %q points outside its directory (to %q)", ErrUnsafePath, name, target)
	}
	resolved := path.Join(path.Dir(name), target)
	if resolved == ".." || strings.HasPrefix(resolved, "../") {
		return fmt.Errorf("%w: link %q points outside its directory (to %q)", ErrUnsafePath, name, target)
	}
	return nil
}

// clean drops a leading "./", as tar -C dir . writes names.
func clean(name string) string {
	for strings.HasPrefix(name, "./") {
		name = name[2:]
	}
	return strings.TrimSuffix(name, "/")
}
