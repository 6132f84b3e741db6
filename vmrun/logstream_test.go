package vmrun

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestCopyUntilMarker(t *testing.T) {
	marker := []byte("smallscale-end-0123456789abcdef")
	tests := []struct {
		name, in, want string
		seen           bool
	}{
		{"marker after output", "hello\nworld\n" + string(marker), "hello\nworld\n", true},
		{"no trailing newline", "partial" + string(marker), "partial", true},
		{"marker only", string(marker), "", true},
		{"junk after marker dropped", "a" + string(marker) + "zzz", "a", true},
		{"eof without marker", "cut short", "cut short", false},
		{"prefix of marker then eof", "x" + string(marker[:10]), "x" + string(marker[:10]), false},
		{"large output", strings.Repeat("y", 200000) + string(marker), strings.Repeat("y", 200000), true},
		{"marker prefix inside output", "a" + string(marker[:20]) + "b" + string(marker), "a" + string(marker[:20]) + "b", true},
	}
	for _, tt := range tests {
		for _, reader := range []struct {
			name string
			wrap func(io.Reader) io.Reader
		}{{"whole", func(r io.Reader) io.Reader { return r }}, {"one byte at a time", iotest.OneByteReader}} {
			t.Run(tt.name+"/"+reader.name, func(t *testing.T) {
				var out bytes.Buffer
				seen, err := copyUntilMarker(&out, reader.wrap(strings.NewReader(tt.in)), marker)
				if err != nil {
					t.Fatal(err)
				}
				if seen != tt.seen || out.String() != tt.want {
					t.Fatalf("got (%v, %d bytes %.40q), want (%v, %d bytes %.40q)", seen, out.Len(), out.String(), tt.seen, len(tt.want), tt.want)
				}
			})
		}
	}
}

// A short line is passed on at once, not held back until more output arrives.
func TestCopyUntilMarkerPassesShortLinesOn(t *testing.T) {
	pr, pw := io.Pipe()
	lines := make(chan string, 4)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = copyUntilMarker(writerFunc(func(p []byte) (int, error) { lines <- string(p); return len(p), nil }), pr, []byte("smallscale-end-0123456789abcdef"))
	}()
	if _, err := pw.Write([]byte("started\n")); err != nil {
		t.Fatal(err)
	}
	if got := <-lines; got != "started\n" {
		t.Fatalf("got %q, want the line at once", got)
	}
	pw.Close()
	<-done
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
