package vmrun

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"libvirt.org/go/libvirtxml"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

func testSpec(runner string) JobSpec {
	name := DomainName(runner, "01J8Z3KQ")
	return JobSpec{
		DomainName:  name,
		OverlayPath: "/var/lib/libvirt/images/" + VolumeName(name),
		LogSocket:   "/run/smallscale/jobs/01J8Z3KQ/log.sock",
		DataSocket:  "/run/smallscale/jobs/01J8Z3KQ/data.sock",
		JobID:       "01J8Z3KQ",
		Runner:      runner,
		Worker:      "hv-1",
	}
}

// desktopRunner is the testdata desktop runner, as parseRunner makes it (no base image check).
func desktopRunner(t *testing.T) *Runner {
	t.Helper()
	r, err := parseRunner("/srv/runners/desktop",
		[]byte(readTestdata(t, "desktop-running.xml")), []byte(readTestdata(t, "desktop-volume.xml")), nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// editCase is one row of an edit's table: a domain before and after the edit.
type editCase struct {
	name    string
	in      string   // <domain type='kvm'> body, or a whole <domain> document
	spec    JobSpec  // zero: testSpec("desktop")
	want    string   // the same after the edit
	wantErr []string // the edit fails with a message holding these
}

func parseDomain(t *testing.T, body string) *libvirtxml.Domain {
	t.Helper()
	doc := body
	if !strings.HasPrefix(strings.TrimSpace(body), "<domain") {
		doc = "<domain type='kvm'>" + body + "</domain>"
	}
	d := &libvirtxml.Domain{}
	if err := d.Unmarshal(doc); err != nil {
		t.Fatalf("test domain does not parse: %v\n%s", err, body)
	}
	return d
}

func marshalDomain(t *testing.T, d *libvirtxml.Domain) string {
	t.Helper()
	doc, err := d.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

// runEditCases applies edit to each case's domain and compares the result with the case's
// expected domain, both written by libvirtxml so that only content counts.
func runEditCases(t *testing.T, edit func(*libvirtxml.Domain, JobSpec) error, cases []editCase) {
	t.Helper()
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			spec := tt.spec
			if reflect.ValueOf(spec).IsZero() {
				spec = testSpec("desktop")
			}
			d := parseDomain(t, tt.in)
			err := edit(d, spec)
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatalf("no error; want one containing %q", tt.wantErr)
				}
				for _, p := range tt.wantErr {
					if !strings.Contains(err.Error(), p) {
						t.Errorf("error %q does not contain %q", err, p)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, want := marshalDomain(t, d), marshalDomain(t, parseDomain(t, tt.want))
			if got != want {
				t.Errorf("got\n%s\nwant\n%s", got, want)
			}
		})
	}
}

func TestSetIdentity(t *testing.T) {
	runEditCases(t, setIdentity, []editCase{
		{
			name: "name changed, uuid removed",
			in:   `<name>desk</name><uuid>6f0d2c1e-8a8b-4d53-9a57-3c1f2b7e9d10</uuid><title>Desktop</title>`,
			want: `<name>smallscale-desktop-01J8Z3KQ</name><title>Desktop</title>`,
		},
		{
			name: "running domain id removed",
			in:   `<domain type='kvm' id='7'><name>desk</name></domain>`,
			want: `<domain type='kvm'><name>smallscale-desktop-01J8Z3KQ</name></domain>`,
		},
		{
			name: "generation id value dropped, device kept",
			in:   `<name>desk</name><genid>43dc0cf8-809b-4adb-9bea-a9abb5f3d90e</genid>`,
			want: `<name>smallscale-desktop-01J8Z3KQ</name><genid/>`,
		},
		{
			name:    "empty name",
			in:      `<name>desk</name>`,
			spec:    JobSpec{JobID: "1"},
			wantErr: []string{"invalid job spec", `domain name ""`},
		},
		{
			name:    "name with a slash",
			in:      `<name>desk</name>`,
			spec:    JobSpec{DomainName: "a/b"},
			wantErr: []string{"invalid job spec", `"a/b"`},
		},
	})
}

func TestSetDomainType(t *testing.T) {
	const passthrough = `<cpu mode='host-passthrough' check='none' migratable='on'><cache mode='passthrough'/></cpu>`
	kvm := func(body string) string { return `<domain type='kvm'>` + body + `</domain>` }
	qemu := func(body string) string { return `<domain type='qemu'>` + body + `</domain>` }
	runEditCases(t, setDomainType, []editCase{
		{name: "no override keeps type and cpu", in: kvm(passthrough), spec: JobSpec{JobID: "1"}, want: kvm(passthrough)},
		{name: "kvm override keeps host-passthrough", in: qemu(passthrough), spec: JobSpec{DomainType: "kvm"}, want: kvm(passthrough)},
		{
			name: "qemu (TCG) turns host-passthrough into maximum",
			in:   kvm(passthrough),
			spec: JobSpec{DomainType: "qemu"},
			want: qemu(`<cpu mode='maximum' check='none' migratable='on'><cache mode='passthrough'/></cpu>`),
		},
		{
			name: "qemu keeps a named model",
			in:   kvm(`<cpu mode='custom' match='exact'><model fallback='forbid'>qemu64</model></cpu>`),
			spec: JobSpec{DomainType: "qemu"},
			want: qemu(`<cpu mode='custom' match='exact'><model fallback='forbid'>qemu64</model></cpu>`),
		},
		{
			name: "qemu keeps host-model",
			in:   kvm(`<cpu mode='host-model'/>`),
			spec: JobSpec{DomainType: "qemu"},
			want: qemu(`<cpu mode='host-model'/>`),
		},
		{name: "no cpu element", in: kvm(`<name>x</name>`), spec: JobSpec{DomainType: "qemu"}, want: qemu(`<name>x</name>`)},
	})
}

func TestPointJobDisk(t *testing.T) {
	r := &Runner{
		Name:      "desktop",
		BaseImage: "/images/base.qcow2",
		Volume: &libvirtxml.StorageVolume{BackingStore: &libvirtxml.StorageVolumeBackingStore{
			Path: "/images/base.qcow2", Format: &libvirtxml.StorageVolumeTargetFormat{Type: "qcow2"}}},
	}
	rawBase := *r
	rawBase.Volume = &libvirtxml.StorageVolume{BackingStore: &libvirtxml.StorageVolumeBackingStore{
		Path: "/images/base.qcow2", Format: &libvirtxml.StorageVolumeTargetFormat{Type: "raw"}}}
	const overlay = "/var/lib/libvirt/images/smallscale-desktop-01J8Z3KQ.qcow2"

	runEditCases(t, r.pointJobDisk, []editCase{
		{
			name: "job disk pointed at the overlay; running-domain leftovers dropped; cdrom kept",
			in: `<devices>
			  <disk type='file' device='disk'>
			    <driver name='qemu' type='qcow2' discard='unmap'/>
			    <source file='/var/lib/libvirt/images/transient-volume.qcow2' index='2'/>
			    <backingStore type='file' index='3'>
			      <format type='qcow2'/>
			      <source file='/images/base.qcow2'/>
			      <backingStore/>
			    </backingStore>
			    <target dev='vda' bus='virtio'/>
			    <alias name='virtio-disk0'/>
			    <address type='pci' domain='0x0000' bus='0x04' slot='0x00' function='0x0'/>
			  </disk>
			  <disk type='file' device='cdrom'>
			    <driver name='qemu' type='raw'/>
			    <source file='/isos/debian.iso' index='1'/>
			    <backingStore/>
			    <target dev='sda' bus='sata'/>
			    <readonly/>
			    <alias name='sata0-0-0'/>
			  </disk>
			</devices>`,
			want: `<devices>
			  <disk type='file' device='disk'>
			    <driver name='qemu' type='qcow2' discard='unmap'/>
			    <source file='` + overlay + `'/>
			    <backingStore type='file'>
			      <format type='qcow2'/>
			      <source file='/images/base.qcow2'/>
			      <backingStore/>
			    </backingStore>
			    <target dev='vda' bus='virtio'/>
			    <address type='pci' domain='0x0000' bus='0x04' slot='0x00' function='0x0'/>
			  </disk>
			  <disk type='file' device='cdrom'>
			    <driver name='qemu' type='raw'/>
			    <source file='/isos/debian.iso'/>
			    <backingStore/>
			    <target dev='sda' bus='sata'/>
			    <readonly/>
			  </disk>
			</devices>`,
		},
		{
			name: "the disk backed by the base image is the job disk, not the first",
			in: `<devices>
			  <disk type='file' device='disk'><source file='/data/scratch.raw'/><target dev='vda'/></disk>
			  <disk type='file' device='disk'>
			    <source file='/old/overlay.qcow2'/>
			    <backingStore type='file'><format type='qcow2'/><source file='/images/base.qcow2'/></backingStore>
			    <target dev='vdb'/>
			  </disk>
			</devices>`,
			want: `<devices>
			  <disk type='file' device='disk'><source file='/data/scratch.raw'/><target dev='vda'/></disk>
			  <disk type='file' device='disk'>
			    <driver name='qemu' type='qcow2'/>
			    <source file='` + overlay + `'/>
			    <backingStore type='file'><format type='qcow2'/><source file='/images/base.qcow2'/></backingStore>
			    <target dev='vdb'/>
			  </disk>
			</devices>`,
		},
		{
			name: "a volume disk without backing chain becomes a file disk with explicit backing",
			in: `<devices>
			  <disk type='volume' device='disk'>
			    <driver name='qemu' type='raw' cache='none'/>
			    <source pool='default' volume='ci.img'/>
			    <target dev='vda' bus='virtio'/>
			    <alias name='ua-jobdisk'/>
			  </disk>
			</devices>`,
			want: `<devices>
			  <disk type='file' device='disk'>
			    <driver name='qemu' type='qcow2' cache='none'/>
			    <source file='` + overlay + `'/>
			    <backingStore type='file'><format type='qcow2'/><source file='/images/base.qcow2'/></backingStore>
			    <target dev='vda' bus='virtio'/>
			    <alias name='ua-jobdisk'/>
			  </disk>
			</devices>`,
		},
		{
			name: "another base's chain is not kept below ours",
			in: `<devices><disk device='disk'>
			    <source file='/x.qcow2'/>
			    <backingStore type='file'><format type='qcow2'/><source file='/other/base.qcow2'/>
			      <backingStore type='file'><format type='raw'/><source file='/other/root.raw'/></backingStore>
			    </backingStore>
			    <target dev='vda'/>
			  </disk></devices>`,
			want: `<devices><disk type='file' device='disk'>
			    <driver name='qemu' type='qcow2'/>
			    <source file='` + overlay + `'/>
			    <backingStore type='file'><format type='qcow2'/><source file='/images/base.qcow2'/></backingStore>
			    <target dev='vda'/>
			  </disk></devices>`,
		},
		{
			name: "a block-job mirror is dropped",
			in: `<devices><disk type='file' device='disk'>
			    <source file='/x.qcow2'/>
			    <mirror type='file' job='copy' ready='yes'><format type='qcow2'/><source file='/copy.qcow2'/></mirror>
			    <target dev='vda'/>
			  </disk></devices>`,
			want: `<devices><disk type='file' device='disk'>
			    <driver name='qemu' type='qcow2'/>
			    <source file='` + overlay + `'/>
			    <backingStore type='file'><format type='qcow2'/><source file='/images/base.qcow2'/></backingStore>
			    <target dev='vda'/>
			  </disk></devices>`,
		},
		{
			name:    "relative overlay path",
			in:      `<devices><disk device='disk'><source file='/x.qcow2'/><target dev='vda'/></disk></devices>`,
			spec:    JobSpec{OverlayPath: "overlay.qcow2"},
			wantErr: []string{"invalid job spec", `"overlay.qcow2"`, "absolute"},
		},
		{
			name:    "no job disk",
			in:      `<devices><disk device='cdrom'><target dev='sda'/></disk></devices>`,
			wantErr: []string{"invalid runner", "no <disk device='disk'>"},
		},
	})

	t.Run("base format from volume.xml", func(t *testing.T) {
		runEditCases(t, rawBase.pointJobDisk, []editCase{{
			name: "raw",
			in:   `<devices><disk device='disk'><source file='/x.qcow2'/><target dev='vda'/></disk></devices>`,
			want: `<devices><disk type='file' device='disk'>
			    <driver name='qemu' type='qcow2'/>
			    <source file='` + overlay + `'/>
			    <backingStore type='file'><format type='raw'/><source file='/images/base.qcow2'/></backingStore>
			    <target dev='vda'/>
			  </disk></devices>`,
		}})
	})
}

func TestDropRuntimeAliases(t *testing.T) {
	runEditCases(t, dropRuntimeAliases, []editCase{
		{
			name: "generated aliases of every kind of device removed",
			in: `<devices>
			  <disk device='disk'><source file='/x'/><target dev='vda'/><alias name='virtio-disk0'/></disk>
			  <controller type='usb' index='0' model='qemu-xhci'><alias name='usb'/></controller>
			  <interface type='network'><source network='default'/><alias name='net0'/></interface>
			  <serial type='pty'><target port='0'/><alias name='serial0'/></serial>
			  <console type='pty'><target type='serial' port='0'/><alias name='serial0'/></console>
			  <channel type='spicevmc'><target type='virtio' name='com.redhat.spice.0'/><alias name='channel1'/></channel>
			  <input type='tablet' bus='usb'><alias name='input0'/></input>
			  <sound model='ich9'><alias name='sound0'/></sound>
			  <video><model type='qxl'/><alias name='video0'/></video>
			  <redirdev bus='usb' type='spicevmc'><alias name='redir0'/></redirdev>
			  <watchdog model='itco' action='reset'><alias name='watchdog0'/></watchdog>
			  <memballoon model='virtio'><alias name='balloon0'/></memballoon>
			  <rng model='virtio'><backend model='random'>/dev/urandom</backend><alias name='rng0'/></rng>
			</devices>`,
			want: `<devices>
			  <disk device='disk'><source file='/x'/><target dev='vda'/></disk>
			  <controller type='usb' index='0' model='qemu-xhci'></controller>
			  <interface type='network'><source network='default'/></interface>
			  <serial type='pty'><target port='0'/></serial>
			  <console type='pty'><target type='serial' port='0'/></console>
			  <channel type='spicevmc'><target type='virtio' name='com.redhat.spice.0'/></channel>
			  <input type='tablet' bus='usb'></input>
			  <sound model='ich9'></sound>
			  <video><model type='qxl'/></video>
			  <redirdev bus='usb' type='spicevmc'></redirdev>
			  <watchdog model='itco' action='reset'></watchdog>
			  <memballoon model='virtio'></memballoon>
			  <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>
			</devices>`,
		},
		{
			name: "user aliases kept",
			in:   `<devices><interface type='network'><source network='default'/><alias name='ua-uplink'/></interface></devices>`,
			want: `<devices><interface type='network'><source network='default'/><alias name='ua-uplink'/></interface></devices>`,
		},
		{name: "no devices", in: `<name>x</name>`, want: `<name>x</name>`},
	})
}

func TestDropInterfaceLeftovers(t *testing.T) {
	runEditCases(t, dropInterfaceLeftovers, []editCase{
		{
			name: "network interface: mac, tap device, port id and bridge removed; model, address kept",
			in: `<devices><interface type='network'>
			  <mac address='52:54:00:8b:1c:3e'/>
			  <source network='default' portgroup='ci' portid='4c1d2f6e-0b7a-4f0e-9d3c-2a6b8e1f5c47' bridge='virbr0'/>
			  <target dev='vnet3'/>
			  <model type='virtio'/>
			  <link state='up'/>
			  <address type='pci' domain='0x0000' bus='0x01' slot='0x00' function='0x0'/>
			</interface></devices>`,
			want: `<devices><interface type='network'>
			  <source network='default' portgroup='ci'/>
			  <model type='virtio'/>
			  <link state='up'/>
			  <address type='pci' domain='0x0000' bus='0x01' slot='0x00' function='0x0'/>
			</interface></devices>`,
		},
		{
			name: "bridge interface keeps its bridge",
			in: `<devices><interface type='bridge'><mac address='52:54:00:00:00:01'/>
			  <source bridge='br0'/><target dev='vnet0'/><model type='e1000e'/></interface></devices>`,
			want: `<devices><interface type='bridge'><source bridge='br0'/><model type='e1000e'/></interface></devices>`,
		},
		{
			name: "user-mode interface untouched but for the mac",
			in:   `<devices><interface type='user'><mac address='52:54:00:00:00:02'/><model type='virtio'/></interface></devices>`,
			want: `<devices><interface type='user'><model type='virtio'/></interface></devices>`,
		},
	})
}

func TestDropCharDevLeftovers(t *testing.T) {
	runEditCases(t, dropCharDevLeftovers, []editCase{
		{
			name: "pty paths and tty removed",
			in: `<devices>
			  <serial type='pty'><source path='/dev/pts/4'/><target type='isa-serial' port='0'><model name='isa-serial'/></target></serial>
			  <parallel type='pty'><source path='/dev/pts/5'/><target port='0'/></parallel>
			  <console type='pty' tty='/dev/pts/4'><source path='/dev/pts/4'/><target type='serial' port='0'/></console>
			</devices>`,
			want: `<devices>
			  <serial type='pty'><target type='isa-serial' port='0'><model name='isa-serial'/></target></serial>
			  <parallel type='pty'><target port='0'/></parallel>
			  <console type='pty'><target type='serial' port='0'/></console>
			</devices>`,
		},
		{
			name: "unix channel socket path and connection state removed; mode kept",
			in: `<devices>
			  <channel type='unix'>
			    <source mode='bind' path='/var/lib/libvirt/qemu/channel/target/domain-7-desk/org.qemu.guest_agent.0'/>
			    <target type='virtio' name='org.qemu.guest_agent.0' state='connected'/>
			    <address type='virtio-serial' controller='0' bus='0' port='1'/>
			  </channel>
			  <channel type='spicevmc'><target type='virtio' name='com.redhat.spice.0' state='disconnected'/></channel>
			</devices>`,
			want: `<devices>
			  <channel type='unix'>
			    <source mode='bind'/>
			    <target type='virtio' name='org.qemu.guest_agent.0'/>
			    <address type='virtio-serial' controller='0' bus='0' port='1'/>
			  </channel>
			  <channel type='spicevmc'><target type='virtio' name='com.redhat.spice.0'/></channel>
			</devices>`,
		},
		{
			name: "configured serial backends kept",
			in: `<devices>
			  <serial type='file'><source path='/var/log/ci/serial.log'/><target port='0'/></serial>
			  <serial type='tcp'><source mode='bind' host='127.0.0.1' service='4555'/><protocol type='telnet'/><target port='1'/></serial>
			  <console type='stdio'><target type='serial' port='0'/></console>
			</devices>`,
			want: `<devices>
			  <serial type='file'><source path='/var/log/ci/serial.log'/><target port='0'/></serial>
			  <serial type='tcp'><source mode='bind' host='127.0.0.1' service='4555'/><protocol type='telnet'/><target port='1'/></serial>
			  <console type='stdio'><target type='serial' port='0'/></console>
			</devices>`,
		},
	})
}

func TestFreeGraphicsPorts(t *testing.T) {
	runEditCases(t, freeGraphicsPorts, []editCase{
		{
			name: "spice fixed port freed; loopback listen kept",
			in: `<devices><graphics type='spice' port='5900' autoport='no' listen='127.0.0.1'>
			  <listen type='address' address='127.0.0.1'/><image compression='off'/></graphics></devices>`,
			want: `<devices><graphics type='spice' autoport='yes'>
			  <listen type='address' address='127.0.0.1'/><image compression='off'/></graphics></devices>`,
		},
		{
			name: "spice generated ports and tls port dropped",
			in: `<devices><graphics type='spice' port='5901' tlsPort='5902' autoport='yes' listen='0.0.0.0' defaultMode='secure'>
			  <listen type='address' address='0.0.0.0'/></graphics></devices>`,
			want: `<devices><graphics type='spice' autoport='yes' defaultMode='secure'>
			  <listen type='address' address='0.0.0.0'/></graphics></devices>`,
		},
		{
			name: "vnc: host-specific address dropped, websocket allocated too",
			in: `<devices><graphics type='vnc' port='5903' autoport='no' websocket='5703' listen='192.168.1.10' keymap='de'>
			  <listen type='address' address='192.168.1.10'/></graphics></devices>`,
			want: `<devices><graphics type='vnc' autoport='yes' websocket='-1' keymap='de'>
			  <listen type='address'/></graphics></devices>`,
		},
		{
			name: "listen network: address resolved from the network dropped, network kept",
			in: `<devices><graphics type='vnc' port='5900' autoport='yes' listen='192.168.122.1'>
			  <listen type='network' address='192.168.122.1' network='default'/></graphics></devices>`,
			want: `<devices><graphics type='vnc' autoport='yes'>
			  <listen type='network' network='default'/></graphics></devices>`,
		},
		{
			name: "vnc on a unix socket: generated socket path dropped, no port added",
			in: `<devices><graphics type='vnc' socket='/var/lib/libvirt/qemu/domain-7-desk/vnc.sock'>
			  <listen type='socket' socket='/var/lib/libvirt/qemu/domain-7-desk/vnc.sock'/></graphics></devices>`,
			want: `<devices><graphics type='vnc'><listen type='socket'/></graphics></devices>`,
		},
		{
			name: "legacy listen attribute alone: loopback kept",
			in:   `<devices><graphics type='vnc' port='-1' listen='::1'/></devices>`,
			want: `<devices><graphics type='vnc' autoport='yes' listen='::1'/></devices>`,
		},
		{
			name: "legacy listen attribute alone: host address dropped",
			in:   `<devices><graphics type='vnc' port='5900' listen='10.0.0.5'/></devices>`,
			want: `<devices><graphics type='vnc' autoport='yes'/></devices>`,
		},
		{
			name: "listen none kept",
			in:   `<devices><graphics type='spice' autoport='yes'><listen type='none'/><gl enable='no'/></graphics></devices>`,
			want: `<devices><graphics type='spice' autoport='yes'><listen type='none'/><gl enable='no'/></graphics></devices>`,
		},
		{
			name: "other graphics untouched",
			in:   `<devices><graphics type='egl-headless'><gl rendernode='/dev/dri/renderD128'/></graphics></devices>`,
			want: `<devices><graphics type='egl-headless'><gl rendernode='/dev/dri/renderD128'/></graphics></devices>`,
		},
	})
}

func TestDropDynamicSecLabels(t *testing.T) {
	runEditCases(t, dropDynamicSecLabels, []editCase{
		{
			name: "dynamic labels dropped, static and none kept",
			in: `<name>x</name>
			  <seclabel type='dynamic' model='apparmor' relabel='yes'>
			    <label>libvirt-6f0d2c1e-8a8b-4d53-9a57-3c1f2b7e9d10</label>
			    <imagelabel>libvirt-6f0d2c1e-8a8b-4d53-9a57-3c1f2b7e9d10</imagelabel>
			  </seclabel>
			  <seclabel type='dynamic' model='dac' relabel='yes'><label>+64055:+994</label><imagelabel>+64055:+994</imagelabel></seclabel>
			  <seclabel type='static' model='selinux' relabel='no'><label>system_u:system_r:svirt_t:s0:c10,c20</label></seclabel>
			  <seclabel type='none' model='dac'/>`,
			want: `<name>x</name>
			  <seclabel type='static' model='selinux' relabel='no'><label>system_u:system_r:svirt_t:s0:c10,c20</label></seclabel>
			  <seclabel type='none' model='dac'/>`,
		},
		{
			name: "per-device labels dropped: disk source, backing store, character device",
			in: `<devices>
			  <disk type='file' device='cdrom'>
			    <source file='/isos/d.iso'><seclabel model='dac' relabel='no'/></source>
			    <backingStore type='file'><format type='raw'/><source file='/isos/b.raw'><seclabel model='selinux' labelskip='yes'/></source></backingStore>
			    <target dev='sda'/>
			  </disk>
			  <serial type='file'><source path='/var/log/s.log'><seclabel model='dac' relabel='no'/></source><target port='0'/></serial>
			</devices>`,
			want: `<devices>
			  <disk type='file' device='cdrom'>
			    <source file='/isos/d.iso'/>
			    <backingStore type='file'><format type='raw'/><source file='/isos/b.raw'/></backingStore>
			    <target dev='sda'/>
			  </disk>
			  <serial type='file'><source path='/var/log/s.log'/><target port='0'/></serial>
			</devices>`,
		},
	})
}

func TestDropFirmwareLeftovers(t *testing.T) {
	runEditCases(t, dropFirmwareLeftovers, []editCase{
		{
			name: "autoselection: selected loader and nvram dropped, feature requests kept",
			in: `<os firmware='efi'><type arch='x86_64' machine='pc-q35-7.2'>hvm</type>
			  <firmware><feature enabled='no' name='enrolled-keys'/><feature enabled='no' name='secure-boot'/></firmware>
			  <loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.fd</loader>
			  <nvram template='/usr/share/OVMF/OVMF_VARS_4M.fd'>/var/lib/libvirt/qemu/nvram/desk_VARS.fd</nvram>
			  <boot dev='hd'/></os>`,
			want: `<os firmware='efi'><type arch='x86_64' machine='pc-q35-7.2'>hvm</type>
			  <firmware><feature enabled='no' name='enrolled-keys'/><feature enabled='no' name='secure-boot'/></firmware>
			  <boot dev='hd'/></os>`,
		},
		{
			name: "autoselection: secure boot request on the loader kept",
			in: `<os firmware='efi'><type arch='x86_64' machine='q35'>hvm</type>
			  <loader readonly='yes' secure='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.ms.fd</loader>
			  <nvram template='/usr/share/OVMF/OVMF_VARS_4M.ms.fd' format='raw'>/var/lib/libvirt/qemu/nvram/w_VARS.fd</nvram></os>`,
			want: `<os firmware='efi'><type arch='x86_64' machine='q35'>hvm</type>
			  <loader secure='yes'/><nvram format='raw'/></os>`,
		},
		{
			name: "manual firmware: per-VM variable store path dropped, loader and template kept",
			in: `<os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type>
			  <loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.fd</loader>
			  <nvram template='/usr/share/OVMF/OVMF_VARS_4M.fd'>/var/lib/libvirt/qemu/nvram/desk_VARS.fd</nvram></os>`,
			want: `<os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type>
			  <loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.fd</loader>
			  <nvram template='/usr/share/OVMF/OVMF_VARS_4M.fd'/></os>`,
		},
		{
			name: "manual firmware: a bare path leaves no nvram element",
			in: `<os><type arch='x86_64' machine='q35'>hvm</type>
			  <loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE.fd</loader>
			  <nvram>/var/lib/libvirt/qemu/nvram/desk_VARS.fd</nvram></os>`,
			want: `<os><type arch='x86_64' machine='q35'>hvm</type>
			  <loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE.fd</loader></os>`,
		},
		{
			name: "file source dropped",
			in: `<os><type arch='x86_64' machine='q35'>hvm</type>
			  <nvram type='file' template='/usr/share/OVMF/OVMF_VARS.fd'><source file='/vars/desk.fd'/></nvram></os>`,
			want: `<os><type arch='x86_64' machine='q35'>hvm</type>
			  <nvram template='/usr/share/OVMF/OVMF_VARS.fd'/></os>`,
		},
		{
			name: "bios domain untouched",
			in:   `<os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>`,
			want: `<os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>`,
		},
		{
			name: "direct kernel boot untouched",
			in:   `<os><type arch='x86_64' machine='pc'>hvm</type><kernel>/k</kernel><initrd>/i</initrd><cmdline>console=ttyS0</cmdline></os>`,
			want: `<os><type arch='x86_64' machine='pc'>hvm</type><kernel>/k</kernel><initrd>/i</initrd><cmdline>console=ttyS0</cmdline></os>`,
		},
		{name: "no os", in: `<name>x</name>`, want: `<name>x</name>`},
	})
}

func TestEnsureAgentChannel(t *testing.T) {
	const agent = `<channel type='unix'><source mode='bind'/><target type='virtio' name='org.qemu.guest_agent.0'/></channel>`
	runEditCases(t, ensureAgentChannel, []editCase{
		{
			name: "added when missing",
			in:   `<devices><channel type='spicevmc'><target type='virtio' name='com.redhat.spice.0'/></channel></devices>`,
			want: `<devices><channel type='spicevmc'><target type='virtio' name='com.redhat.spice.0'/></channel>` + agent + `</devices>`,
		},
		{
			name: "kept when present, address and all",
			in: `<devices><channel type='unix'><source mode='bind'/><target type='virtio' name='org.qemu.guest_agent.0'/>
			  <address type='virtio-serial' controller='0' bus='0' port='1'/></channel></devices>`,
			want: `<devices><channel type='unix'><source mode='bind'/><target type='virtio' name='org.qemu.guest_agent.0'/>
			  <address type='virtio-serial' controller='0' bus='0' port='1'/></channel></devices>`,
		},
		{
			name: "an agent channel of another backend counts",
			in:   `<devices><channel type='pty'><target type='virtio' name='org.qemu.guest_agent.0'/></channel></devices>`,
			want: `<devices><channel type='pty'><target type='virtio' name='org.qemu.guest_agent.0'/></channel></devices>`,
		},
		{name: "no devices at all", in: `<name>x</name>`, want: `<name>x</name><devices>` + agent + `</devices>`},
	})
}

func TestSetLogChannel(t *testing.T) {
	const logCh = `<channel type='unix'><source mode='bind' path='/run/smallscale/jobs/01J8Z3KQ/log.sock'/>
	  <target type='virtio' name='org.smallscale.log'/></channel>`
	const agent = `<channel type='unix'><source mode='bind'/><target type='virtio' name='org.qemu.guest_agent.0'/></channel>`
	runEditCases(t, setLogChannel, []editCase{
		{name: "added", in: `<devices>` + agent + `</devices>`, want: `<devices>` + agent + logCh + `</devices>`},
		{
			name: "an existing log channel replaced",
			in: `<devices><channel type='unix'><source mode='bind' path='/old/log.sock'/><target type='virtio' name='org.smallscale.log'/>
			  <address type='virtio-serial' controller='0' bus='0' port='3'/></channel>` + agent + `</devices>`,
			want: `<devices>` + agent + logCh + `</devices>`,
		},
		{name: "no devices", in: `<name>x</name>`, want: `<name>x</name><devices>` + logCh + `</devices>`},
		{
			name: "relative socket", in: `<devices/>`, spec: JobSpec{LogSocket: "log.sock"},
			wantErr: []string{"invalid job spec", `"log.sock"`, "absolute"},
		},
		{
			name: "socket path too long", in: `<devices/>`, spec: JobSpec{LogSocket: "/" + strings.Repeat("x", 110)},
			wantErr: []string{"invalid job spec", "111 bytes", "at most 107"},
		},
	})
}

func TestMarkJob(t *testing.T) {
	const mark = `<job xmlns="urn:smallscale:job:1"><id>01J8Z3KQ</id><runner>desktop</runner><worker>hv-1</worker></job>`
	const osinfo = `<libosinfo:libosinfo xmlns:libosinfo="http://libosinfo.org/xmlns/libvirt/domain/1.0">
      <libosinfo:os id="http://debian.org/debian/12"/>
    </libosinfo:libosinfo>`
	tests := []struct {
		name    string
		in      string // <domain> body
		spec    JobSpec
		want    string // inner XML of <metadata>
		wantErr string
	}{
		{name: "no metadata", in: `<name>x</name>`, want: mark},
		{name: "other metadata kept as written", in: `<metadata>` + osinfo + `</metadata>`, want: osinfo + mark},
		{
			name: "stale mark replaced, also in prefixed form",
			in: `<metadata><ss:job xmlns:ss="urn:smallscale:job:1"><ss:id>OLD</ss:id></ss:job>` + osinfo +
				`<job xmlns="urn:smallscale:job:1"><id>OLDER</id></job></metadata>`,
			want: osinfo + mark,
		},
		{
			name: "special characters escaped",
			in:   `<name>x</name>`,
			spec: JobSpec{JobID: `a<b>&"c'`, Runner: "desktop", Worker: "hv-1"},
			want: `<job xmlns="urn:smallscale:job:1"><id>a&lt;b&gt;&amp;&#34;c&#39;</id><runner>desktop</runner><worker>hv-1</worker></job>`,
		},
		{name: "no job id", in: `<name>x</name>`, spec: JobSpec{Runner: "desktop", Worker: "hv-1"}, wantErr: "invalid job spec"},
		{name: "no worker", in: `<name>x</name>`, spec: JobSpec{JobID: "1", Runner: "desktop"}, wantErr: "the job mark needs all three"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := tt.spec
			if reflect.ValueOf(spec).IsZero() {
				spec = testSpec("desktop")
			}
			d := parseDomain(t, tt.in)
			err := markJob(d, spec)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v; want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d.Metadata == nil || d.Metadata.XML != tt.want {
				t.Errorf("metadata\n%+v\nwant\n%s", d.Metadata, tt.want)
			}
			m, ok, err := ParseJobMark(marshalDomain(t, d))
			if err != nil || !ok || m != (JobMark{spec.JobID, spec.Runner, spec.Worker}) {
				t.Errorf("ParseJobMark = %+v, %v, %v; want the mark of %+v", m, ok, err, spec)
			}
		})
	}

	t.Run("unreadable metadata", func(t *testing.T) {
		d := &libvirtxml.Domain{Metadata: &libvirtxml.DomainMetadata{XML: `<a xmlns="urn:x"><b></a>`}}
		err := markJob(d, testSpec("desktop"))
		if !errors.Is(err, ErrInvalidRunner) {
			t.Errorf("error %v; want ErrInvalidRunner", err)
		}
	})
}

func TestParseJobMark(t *testing.T) {
	tests := []struct {
		name    string
		xml     string
		want    JobMark
		ok      bool
		wantErr error // nil: no error; errAny: some error
	}{
		{
			name: "default namespace",
			xml: `<domain type='kvm' id='3'><name>n</name><metadata>
			  <job xmlns="urn:smallscale:job:1"><id>j1</id><runner>tiny</runner><worker>hv-1</worker></job>
			</metadata></domain>`,
			want: JobMark{"j1", "tiny", "hv-1"}, ok: true,
		},
		{
			name: "prefixed, as libvirt may write it back, among other metadata",
			xml: `<domain type='kvm'><name>n</name><metadata>
			  <libosinfo:libosinfo xmlns:libosinfo="http://libosinfo.org/xmlns/libvirt/domain/1.0"><libosinfo:os id="x"/></libosinfo:libosinfo>
			  <smallscale:job xmlns:smallscale="urn:smallscale:job:1"><smallscale:id>j2</smallscale:id><smallscale:runner>desktop</smallscale:runner><smallscale:worker>hv-2</smallscale:worker></smallscale:job>
			</metadata></domain>`,
			want: JobMark{"j2", "desktop", "hv-2"}, ok: true,
		},
		{name: "no metadata", xml: `<domain type='kvm'><name>n</name></domain>`},
		{
			name: "other metadata only",
			xml:  `<domain type='kvm'><name>n</name><metadata><app:x xmlns:app="urn:app"/></metadata></domain>`,
		},
		{
			name: "a job element of another namespace",
			xml:  `<domain type='kvm'><metadata><job xmlns="urn:smallscale:job:2"><id>j</id></job></metadata></domain>`,
		},
		{
			name:    "mark without id",
			xml:     `<domain type='kvm'><metadata><job xmlns="urn:smallscale:job:1"><runner>r</runner></job></metadata></domain>`,
			wantErr: ErrInvalidJobMark,
		},
		{name: "not XML", xml: `domain`, wantErr: errAny},
		{name: "not a domain", xml: `<volume><name>v</name></volume>`, wantErr: errAny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok, err := ParseJobMark(tt.xml)
			switch {
			case tt.wantErr == nil && err != nil:
				t.Fatal(err)
			case tt.wantErr != nil && err == nil:
				t.Fatalf("no error; want %v", tt.wantErr)
			case tt.wantErr != nil && tt.wantErr != errAny && !errors.Is(err, tt.wantErr):
				t.Fatalf("error %v; want %v", err, tt.wantErr)
			}
			if got != tt.want || ok != tt.ok {
				t.Errorf("ParseJobMark = %+v, %v; want %+v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

var errAny = errors.New("any error")

func TestDomainXMLGolden(t *testing.T) {
	r := desktopRunner(t)
	spec := testSpec(r.Name)
	spec.DomainType = "qemu"
	got, err := r.DomainXML(spec)
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "desktop-running.golden.xml", got)
	checkJobDomain(t, r, got, spec)
}

func TestVolumeXMLGolden(t *testing.T) {
	r := desktopRunner(t)
	got, err := r.VolumeXML(VolumeName(testSpec(r.Name).DomainName))
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "desktop-volume.golden.xml", got)

	v := &libvirtxml.StorageVolume{}
	if err := v.Unmarshal(got); err != nil {
		t.Fatal(err)
	}
	if v.Name != "smallscale-desktop-01J8Z3KQ.qcow2" || v.Key != "" || v.Target.Path != "" ||
		v.Allocation == nil || v.Allocation.Value != 0 || v.Capacity.Value != 85899345920 ||
		v.Target.Format.Type != "qcow2" || v.BackingStore.Path != testdataBase || v.BackingStore.Format.Type != "qcow2" {
		t.Errorf("volume not as specified:\n%s", got)
	}
}

func TestVolumeXMLFromVolDump(t *testing.T) {
	// volume.xml taken from `virsh vol-dumpxml` carries output-only fields.
	vol := &libvirtxml.StorageVolume{}
	if err := vol.Unmarshal(`<volume type='file'>
	  <name>transient-volume.qcow2</name>
	  <key>/var/lib/libvirt/images/transient-volume.qcow2</key>
	  <capacity unit='bytes'>67108864</capacity>
	  <allocation unit='bytes'>200704</allocation>
	  <physical unit='bytes'>196624</physical>
	  <target>
	    <path>/var/lib/libvirt/images/transient-volume.qcow2</path>
	    <format type='qcow2'/>
	    <permissions><mode>0600</mode><owner>64055</owner><group>994</group></permissions>
	    <timestamps><atime>1700000000.1</atime><mtime>1700000000.2</mtime><ctime>1700000000.3</ctime></timestamps>
	    <compat>1.1</compat>
	  </target>
	  <backingStore>
	    <path>/images/base.qcow2</path>
	    <format type='qcow2'/>
	    <permissions><mode>0644</mode><owner>0</owner><group>0</group></permissions>
	  </backingStore>
	</volume>`); err != nil {
		t.Fatal(err)
	}
	r := &Runner{Name: "tiny", Volume: vol, BaseImage: "/images/base.qcow2"}
	got, err := r.VolumeXML("smallscale-tiny-1.qcow2")
	if err != nil {
		t.Fatal(err)
	}
	want := `<volume type="file">
  <name>smallscale-tiny-1.qcow2</name>
  <allocation>0</allocation>
  <capacity unit="bytes">67108864</capacity>
  <target>
    <format type="qcow2"></format>
    <permissions>
      <owner>64055</owner>
      <group>994</group>
      <mode>0600</mode>
    </permissions>
    <compat>1.1</compat>
  </target>
  <backingStore>
    <path>/images/base.qcow2</path>
    <format type="qcow2"></format>
  </backingStore>
</volume>`
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}

	for _, bad := range []string{"", "a/b"} {
		if _, err := r.VolumeXML(bad); !errors.Is(err, ErrInvalidJobSpec) {
			t.Errorf("VolumeXML(%q) error %v; want ErrInvalidJobSpec", bad, err)
		}
	}
}

func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./vmrun -run %s -update to create it)", err, t.Name())
	}
	if got+"\n" != string(want) {
		t.Errorf("output differs from %s (go test ./vmrun -run %s -update rewrites it after review)\ngot:\n%s",
			path, t.Name(), got)
	}
}

// checkJobDomain reparses a DomainXML result and checks what every job domain must be,
// whatever the runner.
func checkJobDomain(t *testing.T, r *Runner, out string, spec JobSpec) {
	t.Helper()
	d := &libvirtxml.Domain{}
	if err := d.Unmarshal(out); err != nil {
		t.Fatalf("DomainXML output does not parse: %v", err)
	}
	if again := marshalDomain(t, d); again != out {
		t.Errorf("DomainXML output does not survive a libvirtxml round trip:\n%s\nvs\n%s", out, again)
	}
	if d.Name != spec.DomainName || d.UUID != "" || d.ID != nil {
		t.Errorf("name %q uuid %q id %v", d.Name, d.UUID, d.ID)
	}
	if spec.DomainType != "" && d.Type != spec.DomainType {
		t.Errorf("type %q, want %q", d.Type, spec.DomainType)
	}
	if d.GenID != nil && d.GenID.Value != "" {
		t.Errorf("genid %q kept", d.GenID.Value)
	}

	i, ok := jobDisk(d, r.BaseImage)
	if !ok {
		t.Fatal("no job disk")
	}
	disk := d.Devices.Disks[i]
	if disk.Source == nil || disk.Source.File == nil || disk.Source.File.File != spec.OverlayPath {
		t.Errorf("job disk source %+v, want file %s", disk.Source, spec.OverlayPath)
	}
	if disk.Driver == nil || disk.Driver.Type != "qcow2" {
		t.Errorf("job disk driver %+v, want type qcow2", disk.Driver)
	}
	if fileSource(disk.BackingStore) != r.BaseImage || disk.BackingStore.Format == nil ||
		disk.BackingStore.Format.Type != r.baseFormat() {
		t.Errorf("job disk backing store %+v, want %s (%s)", disk.BackingStore, r.BaseImage, r.baseFormat())
	}
	for _, dk := range d.Devices.Disks {
		if dk.Source != nil && dk.Source.Index != 0 {
			t.Errorf("disk %s keeps source index %d", dk.Target.Dev, dk.Source.Index)
		}
		for bs := dk.BackingStore; bs != nil; bs = bs.BackingStore {
			if bs.Index != 0 {
				t.Errorf("disk %s keeps backing store index %d", dk.Target.Dev, bs.Index)
			}
		}
	}

	aliasType := reflect.TypeOf((*libvirtxml.DomainAlias)(nil))
	labelsType := reflect.TypeOf([]libvirtxml.DomainDeviceSecLabel(nil))
	walkDevices(d, func(v reflect.Value) {
		if v.Type() == aliasType && !v.IsNil() && !strings.HasPrefix(v.Elem().FieldByName("Name").String(), "ua-") {
			t.Errorf("generated alias %q kept", v.Elem().FieldByName("Name").String())
		}
		if v.Type() == labelsType && v.Len() > 0 {
			t.Errorf("device seclabel kept: %+v", v.Interface())
		}
	})
	for _, iface := range d.Devices.Interfaces {
		if iface.MAC != nil || iface.Target != nil {
			t.Errorf("interface keeps mac %+v or target %+v", iface.MAC, iface.Target)
		}
	}
	ptys := func(s *libvirtxml.DomainChardevSource) {
		if s != nil && s.Pty != nil && s.Pty.Path != "" {
			t.Errorf("pty path %s kept", s.Pty.Path)
		}
	}
	for _, s := range d.Devices.Serials {
		ptys(s.Source)
	}
	for _, c := range d.Devices.Consoles {
		ptys(c.Source)
		if c.TTY != "" {
			t.Errorf("console tty %s kept", c.TTY)
		}
	}
	agents, logs := 0, 0
	for _, ch := range d.Devices.Channels {
		switch virtioName(ch) {
		case AgentChannel:
			agents++
		case LogChannel:
			logs++
			if ch.Source == nil || ch.Source.UNIX == nil || ch.Source.UNIX.Path != spec.LogSocket || ch.Source.UNIX.Mode != "bind" {
				t.Errorf("log channel source %+v, want bind %s", ch.Source, spec.LogSocket)
			}
			continue
		case DataChannel:
			if ch.Source == nil || ch.Source.UNIX == nil || ch.Source.UNIX.Path != spec.DataSocket || ch.Source.UNIX.Mode != "bind" {
				t.Errorf("data channel source %+v, want bind %s", ch.Source, spec.DataSocket)
			}
			continue
		}
		if ch.Source != nil && ch.Source.UNIX != nil && ch.Source.UNIX.Path != "" {
			t.Errorf("channel %s keeps socket %s", virtioName(ch), ch.Source.UNIX.Path)
		}
		if ch.Target != nil && ch.Target.VirtIO != nil && ch.Target.VirtIO.State != "" {
			t.Errorf("channel %s keeps state %s", virtioName(ch), ch.Target.VirtIO.State)
		}
	}
	if agents != 1 || logs != 1 {
		t.Errorf("%d agent channels and %d log channels, want one each", agents, logs)
	}
	for _, g := range d.Devices.Graphics {
		if g.VNC != nil && g.VNC.Port > 0 || g.Spice != nil && (g.Spice.Port > 0 || g.Spice.TLSPort > 0) {
			t.Errorf("graphics keeps a fixed port: %+v %+v", g.VNC, g.Spice)
		}
	}
	for _, l := range d.SecLabel {
		if l.Type == "dynamic" {
			t.Errorf("dynamic seclabel kept: %+v", l)
		}
	}
	if d.OS != nil && d.OS.NVRam != nil && (d.OS.NVRam.NVRam != "" || d.OS.NVRam.Source != nil) {
		t.Errorf("nvram path kept: %+v", d.OS.NVRam)
	}
	if d.OS != nil && d.OS.Firmware != "" && d.OS.Loader != nil && d.OS.Loader.Path != "" {
		t.Errorf("autoselected loader %s kept", d.OS.Loader.Path)
	}
	m, ok, err := ParseJobMark(out)
	if err != nil || !ok || m != (JobMark{spec.JobID, spec.Runner, spec.Worker}) {
		t.Errorf("ParseJobMark = %+v, %v, %v", m, ok, err)
	}
}

func TestDomainXMLLeavesRunnerAlone(t *testing.T) {
	r := desktopRunner(t)
	beforeDom, beforeVol := marshalDomain(t, r.Domain), mustMarshalVolume(t, r.Volume)

	var wg sync.WaitGroup
	outs := make([]string, 8)
	errs := make([]error, 8)
	for i := range outs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			spec := testSpec(r.Name)
			outs[i], errs[i] = r.DomainXML(spec)
			if errs[i] == nil {
				_, errs[i] = r.VolumeXML(VolumeName(spec.DomainName))
			}
		}()
	}
	wg.Wait()
	for i := range outs {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if outs[i] != outs[0] {
			t.Errorf("DomainXML is not deterministic: call %d differs", i)
		}
	}
	if marshalDomain(t, r.Domain) != beforeDom || mustMarshalVolume(t, r.Volume) != beforeVol {
		t.Error("DomainXML or VolumeXML changed the runner's loaded XML")
	}
}

func mustMarshalVolume(t *testing.T, v *libvirtxml.StorageVolume) string {
	t.Helper()
	doc, err := v.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

func TestDomainXMLErrorsNameTheEdit(t *testing.T) {
	r := desktopRunner(t)
	spec := testSpec(r.Name)
	spec.LogSocket = ""
	_, err := r.DomainXML(spec)
	if !errors.Is(err, ErrInvalidJobSpec) || !strings.Contains(err.Error(), "log channel") ||
		!strings.Contains(err.Error(), "runner desktop, job 01J8Z3KQ") {
		t.Errorf("error %v; want ErrInvalidJobSpec naming runner, job and the log channel edit", err)
	}
	if _, err := (&Runner{Name: "x"}).DomainXML(testSpec("x")); err == nil {
		t.Error("DomainXML of a runner without domain: no error")
	}
}

// TestDomainXMLTinyDump rewrites a genuine `virsh dumpxml` of the running tiny test VM, when a
// capture of one is in testdata.
func TestDomainXMLTinyDump(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("testdata", "tiny-running-dumpxml.xml"))
	if errors.Is(err, os.ErrNotExist) {
		t.Skip("no testdata/tiny-running-dumpxml.xml")
	}
	if err != nil {
		t.Fatal(err)
	}
	d := &libvirtxml.Domain{}
	if err := d.Unmarshal(string(doc)); err != nil {
		t.Fatal(err)
	}
	i, ok := jobDisk(d, "")
	if !ok {
		t.Fatal("dump has no disk")
	}
	base := fileSource(d.Devices.Disks[i].BackingStore)
	if base == "" {
		base = "/var/lib/smallscale/images/tiny/base.qcow2"
	}
	r := &Runner{
		Name:   "tiny",
		Domain: d,
		Volume: &libvirtxml.StorageVolume{BackingStore: &libvirtxml.StorageVolumeBackingStore{
			Path: base, Format: &libvirtxml.StorageVolumeTargetFormat{Type: "qcow2"}}},
		BaseImage: base,
	}
	spec := testSpec("tiny")
	out, err := r.DomainXML(spec)
	if err != nil {
		t.Fatal(err)
	}
	checkJobDomain(t, r, out, spec)
}
