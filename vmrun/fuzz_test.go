package vmrun

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"libvirt.org/go/libvirtxml"
)

// fuzzBasePaths are the base image paths the seeds name; the fuzz body points them at the
// stand-in base image, so that a seed's job disk can match the runner's base image.
var fuzzBasePaths = [][]byte{
	[]byte(testdataBase),
	[]byte("/var/lib/smallscale/images/tiny/base.qcow2"),
}

// FuzzDomainXML loads fuzzed vm.xml bytes as a runner (LoadRunner, with a fixed valid
// volume.xml and a stand-in base image) and rewrites it for a job whose id, runner and worker
// are fuzzed too.
//
// Properties: nothing panics; DomainXML fails only with ErrInvalidJobSpec or ErrInvalidRunner;
// its output reparses with libvirtxml and has the spec's name, no <uuid>, the job disk on the
// overlay with the base image below it, exactly one guest-agent channel, one log channel bound
// to spec.LogSocket and one data channel bound to spec.DataSocket, and a job mark that
// ParseJobMark reads back as the spec's id, runner and worker (exactly, when XML can hold them).
// DomainName never contains '/'. With XML-representable strings, checkJobDomain's checks of
// every job domain (leftover aliases, ports, labels, ...) hold too.
//
// Seeds: the testdata dumps, runners/tiny/vm.xml, and the hand-made documents in
// testdata/fuzz/FuzzDomainXML.
func FuzzDomainXML(f *testing.F) {
	const id = "0190a5d0-7c5e-7000-8000-000000000001"
	for _, p := range []string{
		filepath.Join("testdata", "desktop-running.xml"),
		filepath.Join("testdata", "tiny-running-dumpxml.xml"),
		filepath.Join("..", "runners", "tiny", "vm.xml"),
	} {
		b, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, id, "desktop", "hv-1", false)
		f.Add(b, "01J8Z3KQ", "tiny", "worker.example.org", true)
	}

	dir := filepath.Join(f.TempDir(), "fuzz")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		f.Fatal(err)
	}
	base := filepath.Join(f.TempDir(), "base.qcow2")
	if err := os.WriteFile(base, []byte("QFI\xfb"), 0o444); err != nil {
		f.Fatal(err)
	}
	vol := `<volume><name>overlay.qcow2</name><capacity unit='G'>1</capacity><target><format type='qcow2'/></target>` +
		`<backingStore><path>` + base + `</path><format type='qcow2'/></backingStore></volume>`
	if err := os.WriteFile(filepath.Join(dir, volumeFile), []byte(vol), 0o644); err != nil {
		f.Fatal(err)
	}
	vmPath := filepath.Join(dir, vmFile)

	f.Fuzz(func(t *testing.T, vmXML []byte, jobID, runner, worker string, tcg bool) {
		name := DomainName(runner, jobID)
		if strings.Contains(name, "/") {
			t.Fatalf("DomainName(%q, %q) = %q holds a '/'", runner, jobID, name)
		}
		for _, p := range fuzzBasePaths {
			vmXML = bytes.ReplaceAll(vmXML, p, []byte(base))
		}
		if err := os.WriteFile(vmPath, vmXML, 0o644); err != nil {
			t.Fatal(err)
		}
		r, err := LoadRunner(dir)
		if err != nil {
			if !errors.Is(err, ErrInvalidRunner) {
				t.Fatalf("LoadRunner error does not wrap ErrInvalidRunner: %v", err)
			}
			return
		}
		spec := JobSpec{
			DomainName:  name,
			OverlayPath: "/var/lib/libvirt/images/" + VolumeName(name),
			LogSocket:   "/run/smallscale/jobs/j1/log.sock",
			DataSocket:  "/run/smallscale/jobs/j1/data.sock",
			JobID:       jobID,
			Runner:      runner,
			Worker:      worker,
		}
		if tcg {
			spec.DomainType = "qemu"
		}
		out, err := r.DomainXML(spec)
		if err != nil {
			if !errors.Is(err, ErrInvalidJobSpec) && !errors.Is(err, ErrInvalidRunner) {
				t.Fatalf("DomainXML of a runner LoadRunner accepted: %v", err)
			}
			return
		}

		d := &libvirtxml.Domain{}
		if err := d.Unmarshal(out); err != nil {
			t.Fatalf("DomainXML output does not reparse: %v\n%s", err, out)
		}
		if d.Name != spec.DomainName {
			t.Errorf("name %q, want %q", d.Name, spec.DomainName)
		}
		if d.UUID != "" {
			t.Errorf("uuid %q kept", d.UUID)
		}
		if tcg && d.Type != "qemu" {
			t.Errorf("type %q, want qemu", d.Type)
		}
		i, ok := jobDisk(d, r.BaseImage)
		if !ok {
			t.Fatalf("output has no job disk:\n%s", out)
		}
		disk := d.Devices.Disks[i]
		if disk.Source == nil || disk.Source.File == nil || disk.Source.File.File != spec.OverlayPath {
			t.Errorf("job disk source %+v, want file %s", disk.Source, spec.OverlayPath)
		}
		if fileSource(disk.BackingStore) != r.BaseImage {
			t.Errorf("job disk backing store %+v, want %s", disk.BackingStore, r.BaseImage)
		}

		agents, logs, datas := 0, 0, 0
		for _, ch := range d.Devices.Channels {
			bound := func(path string) bool {
				return ch.Source != nil && ch.Source.UNIX != nil && ch.Source.UNIX.Mode == "bind" && ch.Source.UNIX.Path == path
			}
			switch virtioName(ch) {
			case AgentChannel:
				agents++
			case LogChannel:
				logs++
				if !bound(spec.LogSocket) {
					t.Errorf("log channel source %+v, want bind %s", ch.Source, spec.LogSocket)
				}
			case DataChannel:
				datas++
				if !bound(spec.DataSocket) {
					t.Errorf("data channel source %+v, want bind %s", ch.Source, spec.DataSocket)
				}
			}
		}
		if agents != 1 || logs != 1 || datas != 1 {
			t.Errorf("%d agent, %d log and %d data channels; want one each\n%s", agents, logs, datas, out)
		}

		if xmlText(jobID) && xmlText(runner) && xmlText(worker) {
			checkJobDomain(t, r, out, spec) // everything the table tests demand of a job domain
		}
		m, ok, err := ParseJobMark(out)
		if err != nil || !ok {
			t.Fatalf("ParseJobMark: ok %v, err %v", ok, err)
		}
		if want := (JobMark{JobID: jobID, Runner: runner, Worker: worker}); m != want &&
			xmlText(jobID) && xmlText(runner) && xmlText(worker) {
			t.Errorf("ParseJobMark = %+v, want %+v", m, want)
		}
	})
}

// xmlText reports whether XML character data can carry s unchanged: valid UTF-8 of XML
// characters only. encoding/xml writes U+FFFD for anything else.
func xmlText(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if !(r == 0x09 || r == 0x0A || r == 0x0D || r >= 0x20 && r <= 0xD7FF ||
			r >= 0xE000 && r <= 0xFFFD || r >= 0x10000 && r <= 0x10FFFF) {
			return false
		}
	}
	return true
}
