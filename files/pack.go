package files

import (
	"archive/tar"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// Pack writes a tar of the given files and directories to w: each under its base name, trees
// whole, with their modes. It refuses links that point outside the archive (each link judged by
// its own text; a receiver must still not follow links while unpacking) and special files. It returns the number of bytes of file content packed.
func Pack(w io.Writer, paths []string) (int64, error) {
	tw := tar.NewWriter(w)
	var total int64
	seen := map[string]string{}
	for _, p := range paths {
		base := filepath.Base(filepath.Clean(p))
		if base == "/" || base == "." || base == ".." {
			return 0, fmt.Errorf("input %q: name a file or directory, not %q", p, base)
		}
		if prev, dup := seen[base]; dup {
			return 0, fmt.Errorf("inputs %q and %q both arrive as %q", prev, p, base)
		}
		seen[base] = p
		root := filepath.Dir(filepath.Clean(p))
		err := filepath.WalkDir(p, func(file string, d fs.DirEntry, err error) error {
			if err != nil {
				return fmt.Errorf("input %w", err)
			}
			rel, err := filepath.Rel(root, file)
			if err != nil {
				return err
			}
			name := filepath.ToSlash(rel)
			if err := CheckName(name); err != nil {
				return err
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			link := ""
			switch {
			case info.Mode().IsRegular(), info.IsDir():
			case info.Mode()&fs.ModeSymlink != 0:
				if link, err = os.Readlink(file); err != nil {
					return err
				}
				if err := CheckLink(name, filepath.ToSlash(link)); err != nil {
					return fmt.Errorf("input %s: %w", file, err)
				}
			default:
				return fmt.Errorf("input %s: %s is not a regular file, directory or link", file, info.Mode().Type())
			}
			hdr, err := tar.FileInfoHeader(info, filepath.ToSlash(link))
			if err != nil {
				return err
			}
			hdr.Name = name
			if info.IsDir() {
				hdr.Name += "/"
			}
			hdr.Uname, hdr.Gname, hdr.Uid, hdr.Gid = "", "", 0, 0
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			if !info.Mode().IsRegular() {
				return nil
			}
			f, err := os.Open(file)
			if err != nil {
				return fmt.Errorf("input %w", err)
			}
			defer f.Close()
			n, err := io.Copy(tw, f)
			total += n
			if err != nil {
				return fmt.Errorf("input %s: %w", file, err)
			}
			return nil
		})
		if err != nil {
			return total, err
		}
	}
	return total, tw.Close()
}
