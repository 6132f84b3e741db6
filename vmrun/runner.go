package vmrun

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"

	"libvirt.org/go/libvirtxml"
)

// The files of a runner folder.
const (
	vmFile     = "vm.xml"
	volumeFile = "volume.xml"
	guestFile  = "runner.json"
)

// Runner is one runner definition, runners/<name>/, loaded and checked.
type Runner struct {
	Name      string                    // folder name
	Dir       string                    // absolute path of the folder
	Domain    *libvirtxml.Domain        // vm.xml as loaded (never mutated after load)
	Volume    *libvirtxml.StorageVolume // volume.xml as loaded (never mutated)
	BaseImage string                    // backing file path, from volume.xml
	Guest     Guest                     // runner.json over DefaultGuest()
}

// Guest says how a job is started inside the guest. The worker writes the script to ScriptPath
// with the agent, then guest-execs Command with env = Env + job env + CI_JOB_ID, CI_RUNNER,
// CI_OUTPUT(=OutputDir), CI_WORKDIR(=WorkDir), CI_SCRIPT(=ScriptPath), CI_LOG(=LogPort), CI_END
// (a random end marker the command must print to CI_LOG after the script, so the host knows the
// stream is drained).
type Guest struct {
	Command    []string `json:"command"`
	ScriptPath string   `json:"script_path"`
	WorkDir    string   `json:"work_dir"`
	OutputDir  string   `json:"output_dir"`
	LogPort    string   `json:"log_port"`
	// DataPort is the guest side of the data channel (CI_DATA).
	DataPort string `json:"data_port"`
	// InputCommand unpacks the job's inputs into WorkDir: a tar stream of CI_INPUT_SIZE bytes
	// read from CI_DATA. OutputCommand writes OutputDir as a tar stream to CI_DATA. Both run
	// with the same environment as Command.
	InputCommand  []string `json:"input_command"`
	OutputCommand []string `json:"output_command"`
	// Env is the base environment of the command. guest-exec replaces the guest's whole
	// environment with it, so it must hold whatever the interpreter needs (PATH, HOME, ...).
	// In runner.json, entries merge over the defaults and an entry set to null removes a
	// default (a Windows runner drops the Unix PATH that way).
	Env map[string]string `json:"env"`
}

// waitData waits up to 10 s for the data channel's device (without udev its link may come
// late) and fails when it is not there: writing to a plain file of that name would lose the
// stream.
const waitData = `i=0; while [ ! -c "$CI_DATA" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; [ -c "$CI_DATA" ] || { echo "no data channel at $CI_DATA" >&2; exit 90; }; `

// DefaultGuest fits a Linux guest with /bin/sh.
func DefaultGuest() Guest {
	return Guest{
		Command: []string{"/bin/sh", "-c",
			`i=0; while [ ! -c "$CI_LOG" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; exec >"$CI_LOG" 2>&1; mkdir -p "$CI_WORKDIR" "$CI_OUTPUT" && cd "$CI_WORKDIR" && /bin/sh "$CI_SCRIPT"; rc=$?; printf %s "$CI_END"; exit $rc`},
		ScriptPath: "/tmp/smallscale-job.sh",
		WorkDir:    "/tmp/smallscale/work",
		OutputDir:  "/tmp/smallscale/output",
		LogPort:    "/dev/virtio-ports/" + LogChannel,
		DataPort:   "/dev/virtio-ports/" + DataChannel,
		InputCommand: []string{"/bin/sh", "-c",
			waitData + `mkdir -p "$CI_WORKDIR" && head -c "$CI_INPUT_SIZE" <"$CI_DATA" | tar -xf - -C "$CI_WORKDIR"`},
		OutputCommand: []string{"/bin/sh", "-c",
			waitData + `mkdir -p "$CI_OUTPUT" && cd "$CI_OUTPUT" && tar -cf - . >"$CI_DATA"`},
		Env: map[string]string{
			"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			"HOME": "/root",
			"LANG": "C.UTF-8",
		},
	}
}

// runnerNameRE limits runner names to what fits unchanged into domain and volume names and
// into the queue's subject and consumer names (where '.' separates tokens).
var runnerNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]*$`)

// LoadRunner loads and checks the runner in dir: vm.xml, volume.xml, the optional runner.json,
// and that the base image volume.xml names can be opened. runner.json fields that are set
// override the defaults field by field (Env entries merge; unknown fields are an error naming
// the field). Every error wraps ErrInvalidRunner and names the file and what to do.
func LoadRunner(dir string) (*Runner, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrInvalidRunner, dir, err)
	}
	vm, err := readRunnerFile(abs, vmFile, true,
		"put the runner's domain there, as `virsh dumpxml <vm>` prints it")
	if err != nil {
		return nil, err
	}
	vol, err := readRunnerFile(abs, volumeFile, true,
		"put the overlay volume there (see runners/README): <volume> with <target><format type='qcow2'/></target> and a <backingStore> naming the base image")
	if err != nil {
		return nil, err
	}
	guest, err := readRunnerFile(abs, guestFile, false, "")
	if err != nil {
		return nil, err
	}
	r, err := parseRunner(abs, vm, vol, guest)
	if err != nil {
		return nil, err
	}
	if err := checkBaseImage(r.BaseImage, filepath.Join(abs, volumeFile)); err != nil {
		return nil, err
	}
	return r, nil
}

// LoadRunners loads every subdirectory of root that holds a vm.xml. A broken runner does not
// stop the others: it lands in problems keyed by name. err only when root itself cannot be
// read.
func LoadRunners(root string) (runners map[string]*Runner, problems map[string]error, err error) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, nil, fmt.Errorf("read runners directory: %w", err)
	}
	runners = make(map[string]*Runner)
	problems = make(map[string]error)
	for _, e := range entries {
		name := e.Name()
		dir := filepath.Join(root, name)
		info, err := os.Stat(dir) // follows a symlinked runner folder
		if err != nil {
			if e.Type()&fs.ModeSymlink != 0 {
				problems[name] = fmt.Errorf("%w: %s: broken symlink: %w", ErrInvalidRunner, dir, err)
			}
			continue
		}
		if !info.IsDir() {
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, vmFile)); err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				problems[name] = fmt.Errorf("%w: %w", ErrInvalidRunner, err)
			}
			continue // a folder without vm.xml is not a runner (e.g. shared set-up scripts)
		}
		r, err := LoadRunner(dir)
		if err != nil {
			problems[name] = err
			continue
		}
		runners[name] = r
	}
	return runners, problems, nil
}

// readRunnerFile reads dir/name. A missing optional file gives nil, nil.
func readRunnerFile(dir, name string, required bool, todo string) ([]byte, error) {
	path := filepath.Join(dir, name)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		return b, nil
	case errors.Is(err, fs.ErrNotExist) && !required:
		return nil, nil
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("%w: %s is missing: %s", ErrInvalidRunner, path, todo)
	default:
		return nil, fmt.Errorf("%w: %w", ErrInvalidRunner, err)
	}
}

// parseRunner builds a Runner from the contents of its files, checking everything that does
// not need the host. dir is absolute; its base name is the runner's name. guestJSON is nil when
// the runner has no runner.json.
func parseRunner(dir string, vmXML, volumeXML, guestJSON []byte) (*Runner, error) {
	name := filepath.Base(dir)
	if !runnerNameRE.MatchString(name) {
		return nil, fmt.Errorf("%w: %s: runner name %q may hold only ASCII letters, digits, '-' and '_' (it becomes part of domain, volume and queue names): rename the folder",
			ErrInvalidRunner, dir, name)
	}
	vmPath := filepath.Join(dir, vmFile)
	volPath := filepath.Join(dir, volumeFile)

	dom := &libvirtxml.Domain{}
	if err := dom.Unmarshal(string(vmXML)); err != nil {
		return nil, fmt.Errorf("%w: %s is not a libvirt domain (%w): replace it with the output of `virsh dumpxml <vm>`",
			ErrInvalidRunner, vmPath, err)
	}
	if dom.Type == "" {
		return nil, fmt.Errorf("%w: %s: <domain> has no type attribute: set type='kvm' (or 'qemu' for TCG)",
			ErrInvalidRunner, vmPath)
	}

	vol := &libvirtxml.StorageVolume{}
	if err := vol.Unmarshal(string(volumeXML)); err != nil {
		return nil, fmt.Errorf("%w: %s is not a libvirt storage volume (%w): see runners/README for its form",
			ErrInvalidRunner, volPath, err)
	}
	bs := vol.BackingStore
	if bs == nil || strings.TrimSpace(bs.Path) == "" {
		return nil, fmt.Errorf("%w: %s has no <backingStore><path>: add <backingStore><path>/absolute/path/to/base.qcow2</path><format type='qcow2'/></backingStore> naming the runner's base image",
			ErrInvalidRunner, volPath)
	}
	base := strings.TrimSpace(bs.Path)
	if !filepath.IsAbs(base) {
		return nil, fmt.Errorf("%w: %s: <backingStore><path> %q is relative: give the base image's absolute path",
			ErrInvalidRunner, volPath, base)
	}
	if bs.Format == nil || bs.Format.Type == "" {
		return nil, fmt.Errorf("%w: %s: <backingStore> has no <format>: add <format type='qcow2'/> (or the base image's real format) inside it; qemu-img 6.1 and later refuse an overlay whose backing format is not stated",
			ErrInvalidRunner, volPath)
	}
	if vol.Target == nil || vol.Target.Format == nil || vol.Target.Format.Type == "" {
		return nil, fmt.Errorf("%w: %s has no <target><format>: add <target><format type='qcow2'/></target>, or the overlay is created raw and cannot have a backing image",
			ErrInvalidRunner, volPath)
	}
	if _, ok := jobDisk(dom, base); !ok {
		return nil, fmt.Errorf("%w: %s has no <disk device='disk'> to run the job on: add the disk shown in runners/README, with <backingStore> pointing at %s",
			ErrInvalidRunner, vmPath, base)
	}

	guest, err := parseGuest(filepath.Join(dir, guestFile), guestJSON)
	if err != nil {
		return nil, err
	}
	return &Runner{
		Name:      name,
		Dir:       dir,
		Domain:    dom,
		Volume:    vol,
		BaseImage: base,
		Guest:     guest,
	}, nil
}

// jobDisk finds the disk a job runs on: the first <disk device='disk'> whose backingStore
// source file is base, else the first <disk device='disk'> (device defaults to disk).
func jobDisk(dom *libvirtxml.Domain, base string) (int, bool) {
	if dom.Devices == nil {
		return -1, false
	}
	first := -1
	for i, d := range dom.Devices.Disks {
		if d.Device != "" && d.Device != "disk" {
			continue
		}
		if first < 0 {
			first = i
		}
		if fileSource(d.BackingStore) == base {
			return i, true
		}
	}
	return first, first >= 0
}

// fileSource is the file of a file-type backing store, or "".
func fileSource(bs *libvirtxml.DomainDiskBackingStore) string {
	if bs == nil || bs.Source == nil || bs.Source.File == nil {
		return ""
	}
	return bs.Source.File.File
}

// checkBaseImage opens the base image the way QEMU will have to: for reading.
func checkBaseImage(base, volPath string) error {
	f, err := os.Open(base)
	if err != nil {
		return fmt.Errorf("%w: %w: %s names base image %s, which this worker cannot open (%w): create it, fix <backingStore><path>, or make it readable (world or group kvm)",
			ErrInvalidRunner, ErrBaseImage, volPath, base, err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return fmt.Errorf("%w: %w: %s: %w", ErrInvalidRunner, ErrBaseImage, base, err)
	}
	if info.IsDir() {
		return fmt.Errorf("%w: %w: %s names base image %s, which is a directory: point <backingStore><path> at the image file",
			ErrInvalidRunner, ErrBaseImage, volPath, base)
	}
	return nil
}

// guestJSON is runner.json as written: a field left out (or null) keeps the default.
type guestJSON struct {
	Command       []string           `json:"command"`
	ScriptPath    *string            `json:"script_path"`
	WorkDir       *string            `json:"work_dir"`
	OutputDir     *string            `json:"output_dir"`
	LogPort       *string            `json:"log_port"`
	DataPort      *string            `json:"data_port"`
	InputCommand  []string           `json:"input_command"`
	OutputCommand []string           `json:"output_command"`
	Env           map[string]*string `json:"env"`
}

const guestFields = "command, input_command, output_command, script_path, work_dir, output_dir, log_port, data_port, env"

// parseGuest lays runner.json (nil when absent) over DefaultGuest.
func parseGuest(path string, data []byte) (Guest, error) {
	g := DefaultGuest()
	if data == nil {
		return g, nil
	}
	var in guestJSON
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) && typeErr.Field != "" {
			return Guest{}, fmt.Errorf("%w: %s: field %q: want %s, found a JSON %s",
				ErrInvalidRunner, path, typeErr.Field, jsonKind(typeErr.Type.Kind()), typeErr.Value)
		}
		return Guest{}, fmt.Errorf("%w: %s: %w (runner.json is one JSON object with the fields %s)",
			ErrInvalidRunner, path, err, guestFields)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Guest{}, fmt.Errorf("%w: %s: text after the JSON object: keep a single object",
			ErrInvalidRunner, path)
	}

	if in.Command != nil {
		if len(in.Command) == 0 || in.Command[0] == "" {
			return Guest{}, fmt.Errorf("%w: %s: \"command\" is empty: give the program and its arguments, e.g. [\"/bin/sh\", \"-c\", \"...\"], or leave the field out to use the default",
				ErrInvalidRunner, path)
		}
		g.Command = in.Command
	}
	for _, c := range []struct {
		name string
		in   []string
		out  *[]string
	}{{"input_command", in.InputCommand, &g.InputCommand}, {"output_command", in.OutputCommand, &g.OutputCommand}} {
		if c.in == nil {
			continue
		}
		if len(c.in) == 0 || c.in[0] == "" {
			return Guest{}, fmt.Errorf("%w: %s: %q is empty: give the program and its arguments, or leave the field out to use the default",
				ErrInvalidRunner, path, c.name)
		}
		*c.out = c.in
	}
	for _, f := range []struct {
		name string
		in   *string
		out  *string
	}{
		{"script_path", in.ScriptPath, &g.ScriptPath},
		{"work_dir", in.WorkDir, &g.WorkDir},
		{"output_dir", in.OutputDir, &g.OutputDir},
		{"log_port", in.LogPort, &g.LogPort},
		{"data_port", in.DataPort, &g.DataPort},
	} {
		if f.in == nil {
			continue
		}
		if *f.in == "" {
			return Guest{}, fmt.Errorf("%w: %s: %q is empty: give a guest path or leave the field out to use the default %q",
				ErrInvalidRunner, path, f.name, *f.out)
		}
		*f.out = *f.in
	}
	for k, v := range in.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return Guest{}, fmt.Errorf("%w: %s: env name %q is not a valid variable name: remove it",
				ErrInvalidRunner, path, k)
		}
		if v == nil {
			delete(g.Env, k)
			continue
		}
		g.Env[k] = *v
	}
	return g, nil
}

// jsonKind names a Go kind the way runner.json's author thinks of it.
func jsonKind(k reflect.Kind) string {
	switch k {
	case reflect.Slice:
		return "a list of strings"
	case reflect.Map:
		return "an object of strings"
	default:
		return "a string"
	}
}
