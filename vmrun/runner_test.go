package vmrun

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"libvirt.org/go/libvirtxml"
)

// testdataBase is the base image path the testdata runner files name.
const testdataBase = "/var/lib/smallscale/images/desktop/base.qcow2"

func readTestdata(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// runnerFiles is a runner's files as typed data, for tests to break one thing at a time.
type runnerFiles struct {
	vm    *libvirtxml.Domain
	vol   *libvirtxml.StorageVolume
	guest *string // runner.json; nil: none
}

// desktopFiles loads the testdata desktop runner with its base image moved to base.
func desktopFiles(t *testing.T, base string) runnerFiles {
	t.Helper()
	vm := &libvirtxml.Domain{}
	if err := vm.Unmarshal(readTestdata(t, "desktop-running.xml")); err != nil {
		t.Fatal(err)
	}
	vol := &libvirtxml.StorageVolume{}
	if err := vol.Unmarshal(readTestdata(t, "desktop-volume.xml")); err != nil {
		t.Fatal(err)
	}
	vol.BackingStore.Path = base
	vm.Devices.Disks[0].BackingStore.Source.File.File = base
	return runnerFiles{vm: vm, vol: vol}
}

// write puts the files into dir (created); a nil document is not written.
func (f runnerFiles) write(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	put := func(name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if f.vm != nil {
		doc, err := f.vm.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		put(vmFile, doc)
	}
	if f.vol != nil {
		doc, err := f.vol.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		put(volumeFile, doc)
	}
	if f.guest != nil {
		put(guestFile, *f.guest)
	}
}

// tinyBase creates a small stand-in base image (LoadRunner only opens it).
func tinyBase(t *testing.T) string {
	t.Helper()
	base := filepath.Join(t.TempDir(), "base.qcow2")
	if err := os.WriteFile(base, []byte("QFI\xfb"), 0o444); err != nil {
		t.Fatal(err)
	}
	return base
}

func ptr[T any](v T) *T { return &v }

func TestDefaultGuest(t *testing.T) {
	g := DefaultGuest()
	want := Guest{
		Command: []string{"/bin/sh", "-c",
			`i=0; while [ ! -c "$CI_LOG" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; exec >"$CI_LOG" 2>&1; mkdir -p "$CI_WORKDIR" "$CI_OUTPUT" && cd "$CI_WORKDIR" && /bin/sh "$CI_SCRIPT"; rc=$?; printf %s "$CI_END"; exit $rc`},
		ScriptPath: "/tmp/smallscale-job.sh",
		WorkDir:    "/tmp/smallscale/work",
		OutputDir:  "/tmp/smallscale/output",
		LogPort:    "/dev/virtio-ports/org.smallscale.log",
		DataPort:   "/dev/virtio-ports/org.smallscale.data",
		InputCommand: []string{"/bin/sh", "-c",
			`i=0; while [ ! -c "$CI_DATA" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; [ -c "$CI_DATA" ] || { echo "no data channel at $CI_DATA" >&2; exit 90; }; mkdir -p "$CI_WORKDIR" && head -c "$CI_INPUT_SIZE" <"$CI_DATA" | tar -xf - -C "$CI_WORKDIR"`},
		OutputCommand: []string{"/bin/sh", "-c",
			`i=0; while [ ! -c "$CI_DATA" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; [ -c "$CI_DATA" ] || { echo "no data channel at $CI_DATA" >&2; exit 90; }; mkdir -p "$CI_OUTPUT" && cd "$CI_OUTPUT" && tar -cf - . >"$CI_DATA"`},
		Env: map[string]string{
			"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			"HOME": "/root",
			"LANG": "C.UTF-8",
		},
	}
	if !reflect.DeepEqual(g, want) {
		t.Errorf("DefaultGuest() = %#v\nwant %#v", g, want)
	}
	g.Env["PATH"] = "changed"
	g.Command[0] = "changed"
	if again := DefaultGuest(); !reflect.DeepEqual(again, want) {
		t.Error("changing one DefaultGuest() result changed the next")
	}
}

func TestParseGuest(t *testing.T) {
	def := DefaultGuest()
	with := func(edit func(*Guest)) Guest {
		g := DefaultGuest()
		edit(&g)
		return g
	}
	tests := []struct {
		name    string
		json    *string // nil: no runner.json
		want    Guest
		wantErr []string
	}{
		{name: "no file keeps the defaults", want: def},
		{name: "empty object keeps the defaults", json: ptr(`{}`), want: def},
		{
			name: "set fields override field by field",
			json: ptr(`{"command": ["cmd.exe", "/c", "%CI_SCRIPT%"], "script_path": "C:\\job.cmd"}`),
			want: with(func(g *Guest) {
				g.Command = []string{"cmd.exe", "/c", "%CI_SCRIPT%"}
				g.ScriptPath = `C:\job.cmd`
			}),
		},
		{
			name: "all path fields",
			json: ptr(`{"work_dir": "/w", "output_dir": "/o", "log_port": "/dev/vport1p2"}`),
			want: with(func(g *Guest) { g.WorkDir, g.OutputDir, g.LogPort = "/w", "/o", "/dev/vport1p2" }),
		},
		{
			name: "env entries merge; null removes a default",
			json: ptr(`{"env": {"LANG": "de_DE.UTF-8", "CI": "true", "PATH": null}}`),
			want: with(func(g *Guest) {
				g.Env = map[string]string{"HOME": "/root", "LANG": "de_DE.UTF-8", "CI": "true"}
			}),
		},
		{name: "null command keeps the default", json: ptr(`{"command": null}`), want: def},
		{name: "unknown field", json: ptr(`{"comand": ["/bin/sh"]}`),
			wantErr: []string{"runner.json", `unknown field "comand"`, "command, script_path"}},
		{name: "malformed", json: ptr(`{"command": [`),
			wantErr: []string{"runner.json", "unexpected EOF"}},
		{name: "not an object", json: ptr(`["/bin/sh"]`),
			wantErr: []string{"runner.json", "cannot unmarshal"}},
		{name: "wrong type", json: ptr(`{"command": "/bin/sh -c true"}`),
			wantErr: []string{"runner.json", `field "command"`, "want a list of strings", "found a JSON string"}},
		{name: "two objects", json: ptr(`{} {}`),
			wantErr: []string{"runner.json", "text after the JSON object"}},
		{name: "empty command", json: ptr(`{"command": []}`),
			wantErr: []string{"runner.json", `"command" is empty`, "leave the field out"}},
		{name: "empty program", json: ptr(`{"command": [""]}`),
			wantErr: []string{"runner.json", `"command" is empty`}},
		{name: "empty path", json: ptr(`{"work_dir": ""}`),
			wantErr: []string{"runner.json", `"work_dir" is empty`, "/tmp/smallscale/work"}},
		{name: "bad env name", json: ptr(`{"env": {"A=B": "x"}}`),
			wantErr: []string{"runner.json", `env name "A=B"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var data []byte
			if tt.json != nil {
				data = []byte(*tt.json)
			}
			got, err := parseGuest("/r/tiny/runner.json", data)
			if len(tt.wantErr) > 0 {
				checkErr(t, err, ErrInvalidRunner, tt.wantErr...)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %#v\nwant %#v", got, tt.want)
			}
		})
	}
}

// checkErr fails unless err wraps sentinel and its message holds every part.
func checkErr(t *testing.T, err, sentinel error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error; want one containing %q", parts)
	}
	if !errors.Is(err, sentinel) {
		t.Errorf("error %q does not wrap %q", err, sentinel)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not contain %q", err, p)
		}
	}
}

func TestLoadRunner(t *testing.T) {
	base := tinyBase(t)
	dir := filepath.Join(t.TempDir(), "desktop")
	files := desktopFiles(t, base)
	files.guest = ptr(`{"env": {"CI": "true"}}`)
	files.write(t, dir)

	r, err := LoadRunner(dir)
	if err != nil {
		t.Fatal(err)
	}
	if r.Name != "desktop" || r.Dir != dir || r.BaseImage != base {
		t.Errorf("Name, Dir, BaseImage = %q, %q, %q; want desktop, %q, %q", r.Name, r.Dir, r.BaseImage, dir, base)
	}
	if r.Domain == nil || r.Domain.Name != "desk" || r.Volume == nil || r.Volume.Name != "transient-volume.qcow2" {
		t.Errorf("Domain or Volume not loaded: %+v %+v", r.Domain, r.Volume)
	}
	if r.Guest.Env["CI"] != "true" || r.Guest.Env["HOME"] != "/root" || r.Guest.ScriptPath != DefaultGuest().ScriptPath {
		t.Errorf("Guest = %+v; want the defaults plus CI=true", r.Guest)
	}

	// A relative dir still gives an absolute Dir and the folder's name.
	t.Chdir(filepath.Dir(dir))
	r, err = LoadRunner("desktop")
	if err != nil {
		t.Fatal(err)
	}
	if r.Name != "desktop" || !filepath.IsAbs(r.Dir) {
		t.Errorf("LoadRunner(relative): Name %q, Dir %q", r.Name, r.Dir)
	}
}

func TestLoadRunnerErrors(t *testing.T) {
	base := tinyBase(t)
	tests := []struct {
		name     string
		folder   string               // default "desktop"
		edit     func(f *runnerFiles) // on the good files
		raw      map[string]string    // files written verbatim after edit
		wantBase bool                 // also wraps ErrBaseImage
		want     []string             // parts of the message
	}{
		{
			name: "vm.xml missing",
			edit: func(f *runnerFiles) { f.vm = nil },
			want: []string{"desktop/vm.xml is missing", "virsh dumpxml"},
		},
		{
			name: "volume.xml missing",
			edit: func(f *runnerFiles) { f.vol = nil },
			want: []string{"desktop/volume.xml is missing", "<backingStore>"},
		},
		{
			name: "vm.xml not XML",
			raw:  map[string]string{vmFile: "name: desk\n"},
			want: []string{"desktop/vm.xml is not a libvirt domain", "virsh dumpxml"},
		},
		{
			name: "vm.xml holds a volume",
			raw:  map[string]string{vmFile: readTestdata(t, "desktop-volume.xml")},
			want: []string{"desktop/vm.xml is not a libvirt domain", "<volume>"},
		},
		{
			name: "vm.xml empty",
			raw:  map[string]string{vmFile: ""},
			want: []string{"desktop/vm.xml is not a libvirt domain", "EOF"},
		},
		{
			name: "domain without type",
			edit: func(f *runnerFiles) { f.vm.Type = "" },
			want: []string{"desktop/vm.xml", "no type attribute", "type='kvm'"},
		},
		{
			name: "no job disk",
			edit: func(f *runnerFiles) { f.vm.Devices.Disks = f.vm.Devices.Disks[1:] }, // only the cdrom left
			want: []string{"desktop/vm.xml has no <disk device='disk'>", base},
		},
		{
			name: "volume.xml not XML",
			raw:  map[string]string{volumeFile: "{}"},
			want: []string{"desktop/volume.xml is not a libvirt storage volume"},
		},
		{
			name: "volume without backingStore",
			edit: func(f *runnerFiles) { f.vol.BackingStore = nil },
			want: []string{"desktop/volume.xml has no <backingStore><path>", "<format type='qcow2'/>"},
		},
		{
			name: "volume without backingStore path",
			edit: func(f *runnerFiles) { f.vol.BackingStore.Path = "" },
			want: []string{"desktop/volume.xml has no <backingStore><path>"},
		},
		{
			name: "relative backingStore path",
			edit: func(f *runnerFiles) { f.vol.BackingStore.Path = "images/base.qcow2" },
			want: []string{"desktop/volume.xml", `"images/base.qcow2" is relative`, "absolute path"},
		},
		{
			name: "backingStore without format",
			edit: func(f *runnerFiles) { f.vol.BackingStore.Format = nil },
			want: []string{"desktop/volume.xml", "<backingStore> has no <format>", "add <format type='qcow2'/>", "qemu-img 6.1"},
		},
		{
			name: "target without format",
			edit: func(f *runnerFiles) { f.vol.Target.Format = nil },
			want: []string{"desktop/volume.xml has no <target><format>", "<target><format type='qcow2'/></target>"},
		},
		{
			name:     "base image missing",
			edit:     func(f *runnerFiles) { f.vol.BackingStore.Path = base + ".gone" },
			wantBase: true,
			want:     []string{"desktop/volume.xml names base image " + base + ".gone", "no such file", "create it"},
		},
		{
			name:     "base image is a directory",
			edit:     func(f *runnerFiles) { f.vol.BackingStore.Path = filepath.Dir(base) },
			wantBase: true,
			want:     []string{"which is a directory", "point <backingStore><path> at the image file"},
		},
		{
			name: "runner.json malformed",
			raw:  map[string]string{guestFile: `{"command": ["/bin/sh",]}`},
			want: []string{"desktop/runner.json", "invalid character"},
		},
		{
			name: "runner.json with empty command",
			raw:  map[string]string{guestFile: `{"command": []}`},
			want: []string{"desktop/runner.json", `"command" is empty`},
		},
		{
			name:   "folder name unfit for names",
			folder: "debian.12",
			want:   []string{`runner name "debian.12"`, "rename the folder"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			folder := tt.folder
			if folder == "" {
				folder = "desktop"
			}
			dir := filepath.Join(t.TempDir(), folder)
			f := desktopFiles(t, base)
			if tt.edit != nil {
				tt.edit(&f)
			}
			f.write(t, dir)
			for name, content := range tt.raw {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			r, err := LoadRunner(dir)
			if r != nil {
				t.Errorf("LoadRunner returned a runner along with error %v", err)
			}
			checkErr(t, err, ErrInvalidRunner, tt.want...)
			if got := errors.Is(err, ErrBaseImage); got != tt.wantBase {
				t.Errorf("errors.Is(err, ErrBaseImage) = %v, want %v", got, tt.wantBase)
			}
		})
	}
}

func TestJobDisk(t *testing.T) {
	const base = "/images/base.qcow2"
	disk := func(device, backing string) libvirtxml.DomainDisk {
		d := libvirtxml.DomainDisk{Device: device}
		if backing != "" {
			d.BackingStore = &libvirtxml.DomainDiskBackingStore{
				Source: &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: backing}},
			}
		}
		return d
	}
	tests := []struct {
		name  string
		disks []libvirtxml.DomainDisk
		want  int // -1: none
	}{
		{"no disks", nil, -1},
		{"only a cdrom", []libvirtxml.DomainDisk{disk("cdrom", "")}, -1},
		{"first disk", []libvirtxml.DomainDisk{disk("cdrom", ""), disk("disk", ""), disk("disk", "")}, 1},
		{"device defaults to disk", []libvirtxml.DomainDisk{disk("", "")}, 0},
		{"the disk backed by the base wins", []libvirtxml.DomainDisk{disk("disk", "/other.qcow2"), disk("disk", base)}, 1},
		{"a cdrom backed by the base does not count", []libvirtxml.DomainDisk{disk("cdrom", base), disk("disk", "")}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dom := &libvirtxml.Domain{Devices: &libvirtxml.DomainDeviceList{Disks: tt.disks}}
			got, ok := jobDisk(dom, base)
			if !ok {
				got = -1
			}
			if got != tt.want {
				t.Errorf("jobDisk = %d, want %d", got, tt.want)
			}
		})
	}
	if _, ok := jobDisk(&libvirtxml.Domain{}, base); ok {
		t.Error("jobDisk found a disk in a domain without <devices>")
	}
}

func TestLoadRunners(t *testing.T) {
	base := tinyBase(t)
	root := t.TempDir()
	desktopFiles(t, base).write(t, filepath.Join(root, "good"))
	broken := desktopFiles(t, base)
	broken.vol.BackingStore.Format = nil
	broken.write(t, filepath.Join(root, "broken"))
	if err := os.MkdirAll(filepath.Join(root, "system-setup"), 0o755); err != nil { // no vm.xml: not a runner
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "README.md"), []byte("runners"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(root, "good"), filepath.Join(root, "linked")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(root, "nowhere"), filepath.Join(root, "dangling")); err != nil {
		t.Fatal(err)
	}

	runners, problems, err := LoadRunners(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(runners) != 2 || runners["good"] == nil || runners["linked"] == nil {
		t.Errorf("runners = %v; want good and linked", keys(runners))
	}
	if len(problems) != 2 {
		t.Errorf("problems = %v; want broken and dangling", problems)
	}
	checkErr(t, problems["broken"], ErrInvalidRunner, "broken/volume.xml", "<format type='qcow2'/>")
	checkErr(t, problems["dangling"], ErrInvalidRunner, "dangling", "broken symlink")

	if _, _, err := LoadRunners(filepath.Join(root, "missing")); err == nil {
		t.Error("LoadRunners on a missing root: no error")
	}
	empty := t.TempDir()
	runners, problems, err = LoadRunners(empty)
	if err != nil || runners == nil || problems == nil || len(runners)+len(problems) != 0 {
		t.Errorf("LoadRunners(empty) = %v, %v, %v; want empty maps", runners, problems, err)
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestRepoRunners checks the runner definitions checked into runners/ (all but the base image,
// which is built on the host).
func TestRepoRunners(t *testing.T) {
	dirs, _ := filepath.Glob(filepath.Join("..", "runners", "*", vmFile))
	if len(dirs) == 0 {
		t.Skip("no runners in ../runners")
	}
	for _, vmPath := range dirs {
		dir, _ := filepath.Abs(filepath.Dir(vmPath))
		t.Run(filepath.Base(dir), func(t *testing.T) {
			read := func(name string, required bool) []byte {
				b, err := readRunnerFile(dir, name, required, "")
				if err != nil {
					t.Fatal(err)
				}
				return b
			}
			r, err := parseRunner(dir, read(vmFile, true), read(volumeFile, true), read(guestFile, false))
			if err != nil {
				t.Fatal(err)
			}
			out, err := r.DomainXML(testSpec(r.Name))
			if err != nil {
				t.Fatal(err)
			}
			checkJobDomain(t, r, out, testSpec(r.Name))
		})
	}
}
