package files_test

import (
	"errors"
	"testing"

	"github.com/smallscale-ci/smallscale/files"
)

func TestCheckName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"a", true},
		{"a/b/c.txt", true},
		{"dir/", true},
		{"./a", true},
		{"a/./b", true},
		{"a//b", true},
		{"...", true},
		{"..a", true},
		{"a..", true},
		{".hidden", true},
		{"", false},
		{".", false},
		{"./", false},
		{"..", false},
		{"../x", false},
		{"a/../b", false}, // inside, but no name with .. is taken
		{"a/..", false},
		{"a/b/../../..", false},
		{"/etc/passwd", false},
		{"/", false},
		{`a\b`, false},
		{`..\x`, false},
		{"a\x00b", false},
	}
	for _, tt := range tests {
		err := files.CheckName(tt.name)
		if (err == nil) != tt.ok {
			t.Errorf("CheckName(%q) = %v, want ok %v", tt.name, err, tt.ok)
		}
		if err != nil && !errors.Is(err, files.ErrUnsafePath) {
			t.Errorf("CheckName(%q) = %v, not wrapping ErrUnsafePath", tt.name, err)
		}
	}
}

func TestCheckLink(t *testing.T) {
	tests := []struct {
		name, target string
		ok           bool
	}{
		{"l", "a", true},
		{"l", "a/b", true},
		{"l", ".", true},
		{"d/l", "..", true},
		{"d/l", "../x", true},
		{"d/e/l", "../../x", true},
		{"d/l", "./x", true},
		{"l", "a/../b", true},
		{"l", "a/./b/", true},
		{"l", "", false},
		{"l", "/", false},
		{"l", "/etc", false},
		{"d/l", "/d/x", false}, // absolute, even into the tree
		{"l", "..", false},
		{"l", "../x", false},
		{"d/l", "../..", false},
		{"d/e/l", "../../../x", false},
		{"l", "a/../../x", false},
		{"d/l", "x/../../../etc", false},
	}
	for _, tt := range tests {
		err := files.CheckLink(tt.name, tt.target)
		if (err == nil) != tt.ok {
			t.Errorf("CheckLink(%q, %q) = %v, want ok %v", tt.name, tt.target, err, tt.ok)
		}
		if err != nil && !errors.Is(err, files.ErrUnsafePath) {
			t.Errorf("CheckLink(%q, %q) = %v, not wrapping ErrUnsafePath", tt.name, tt.target, err)
		}
	}
}
