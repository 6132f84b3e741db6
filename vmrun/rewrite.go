package vmrun

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"path/filepath"
	"reflect"
	"strings"

	"libvirt.org/go/libvirtxml"
)

const (
	// AgentChannel is the virtio-serial port qemu-guest-agent listens on.
	AgentChannel = "org.qemu.guest_agent.0"
	// LogChannel is the virtio-serial port the job's output is streamed through; in a Linux
	// guest it appears as /dev/virtio-ports/org.smallscale.log.
	LogChannel = "org.smallscale.log"
	// DataChannel is the virtio-serial port input files travel into the guest through, and
	// artifacts out of it, as tar streams.
	DataChannel = "org.smallscale.data"
	// MetadataNamespace is the namespace of the job mark in a domain's <metadata>.
	MetadataNamespace = "urn:smallscale:job:1"
)

// maxUnixSocketPath is the longest path a unix socket address holds (sun_path is 108 bytes,
// one of which is the terminating NUL).
const maxUnixSocketPath = 107

// JobSpec is what DomainXML needs to know about one job.
type JobSpec struct {
	DomainName  string
	OverlayPath string // absolute path of the overlay the worker created from VolumeXML
	LogSocket   string // host unix socket path for the log channel
	DataSocket  string // host unix socket path for the data channel
	JobID       string
	Runner      string
	Worker      string
	DomainType  string // "" keeps vm.xml's type; e.g. "qemu" forces TCG
}

// JobMark is what DomainXML writes into the domain's <metadata>:
// <job xmlns="urn:smallscale:job:1"><id>…</id><runner>…</runner><worker>…</worker></job>.
// It lets a worker find the domains it left behind after a crash.
type JobMark struct {
	JobID, Runner, Worker string
}

// jobMarkXML is the XML form of JobMark.
type jobMarkXML struct {
	XMLName xml.Name `xml:"urn:smallscale:job:1 job"`
	JobID   string   `xml:"id"`
	Runner  string   `xml:"runner"`
	Worker  string   `xml:"worker"`
}

// domainEdit is one step of turning a runner's vm.xml into a job's domain.
type domainEdit struct {
	name  string
	apply func(*libvirtxml.Domain, JobSpec) error
}

// domainEdits lists the edits DomainXML applies, in order (DESIGN, job life cycle step 4).
// Order matters: leftovers are dropped before smallscale's own channels are added, so the
// log channel's socket path survives.
func (r *Runner) domainEdits() []domainEdit {
	return []domainEdit{
		{"identity", setIdentity},
		{"domain type", setDomainType},
		{"job disk", r.pointJobDisk},
		{"device aliases", dropRuntimeAliases},
		{"interfaces", dropInterfaceLeftovers},
		{"character devices", dropCharDevLeftovers},
		{"graphics", freeGraphicsPorts},
		{"security labels", dropDynamicSecLabels},
		{"firmware", dropFirmwareLeftovers},
		{"agent channel", ensureAgentChannel},
		{"log channel", setLogChannel},
		{"data channel", setDataChannel},
		{"job mark", markJob},
	}
}

// DomainXML returns the domain a job boots: a deep copy of r.Domain with the edits of
// domainEdits applied in order, marshalled once.
func (r *Runner) DomainXML(spec JobSpec) (string, error) {
	dom, err := copyDomain(r.Domain)
	if err != nil {
		return "", fmt.Errorf("runner %s: copy vm.xml: %w", r.Name, err)
	}
	for _, e := range r.domainEdits() {
		if err := e.apply(dom, spec); err != nil {
			return "", fmt.Errorf("runner %s, job %s: %s: %w", r.Name, spec.JobID, e.name, err)
		}
	}
	out, err := dom.Marshal()
	if err != nil {
		return "", fmt.Errorf("runner %s, job %s: marshal domain: %w", r.Name, spec.JobID, err)
	}
	return out, nil
}

// copyDomain deep-copies a domain by a marshal and unmarshal round trip, which also proves
// that libvirtxml can write what it read.
func copyDomain(d *libvirtxml.Domain) (*libvirtxml.Domain, error) {
	if d == nil {
		return nil, errors.New("runner has no domain")
	}
	doc, err := d.Marshal()
	if err != nil {
		return nil, err
	}
	c := &libvirtxml.Domain{}
	if err := c.Unmarshal(doc); err != nil {
		return nil, err
	}
	return c, nil
}

// VolumeXML returns volume.xml with the name replaced, key and target path dropped (the pool
// decides), allocation 0, and the backingStore (path + explicit format) kept. Output-only
// fields of a `virsh vol-dumpxml` (physical size, timestamps, backing permissions) are dropped.
func (r *Runner) VolumeXML(name string) (string, error) {
	if name == "" || strings.Contains(name, "/") {
		return "", fmt.Errorf("%w: volume name %q: want a non-empty name without '/'", ErrInvalidJobSpec, name)
	}
	if r.Volume == nil || r.Volume.BackingStore == nil || r.Volume.BackingStore.Path == "" {
		return "", fmt.Errorf("%w: runner %s: volume.xml has no <backingStore><path>", ErrInvalidRunner, r.Name)
	}
	doc, err := r.Volume.Marshal()
	if err != nil {
		return "", fmt.Errorf("runner %s: marshal volume.xml: %w", r.Name, err)
	}
	v := &libvirtxml.StorageVolume{}
	if err := v.Unmarshal(doc); err != nil {
		return "", fmt.Errorf("runner %s: copy volume.xml: %w", r.Name, err)
	}

	v.Name = name
	v.Key = ""
	v.Allocation = &libvirtxml.StorageVolumeSize{Value: 0}
	v.Physical = nil
	if v.Target == nil {
		v.Target = &libvirtxml.StorageVolumeTarget{}
	}
	v.Target.Path = ""
	v.Target.Timestamps = nil
	if v.Target.Format == nil || v.Target.Format.Type == "" {
		v.Target.Format = &libvirtxml.StorageVolumeTargetFormat{Type: "qcow2"}
	}
	v.BackingStore.Path = strings.TrimSpace(v.BackingStore.Path)
	v.BackingStore.Permissions = nil
	if v.BackingStore.Format == nil || v.BackingStore.Format.Type == "" {
		v.BackingStore.Format = &libvirtxml.StorageVolumeTargetFormat{Type: "qcow2"}
	}
	out, err := v.Marshal()
	if err != nil {
		return "", fmt.Errorf("runner %s: marshal volume: %w", r.Name, err)
	}
	return out, nil
}

// baseFormat is the format of the base image as volume.xml states it.
func (r *Runner) baseFormat() string {
	if r.Volume != nil && r.Volume.BackingStore != nil && r.Volume.BackingStore.Format != nil &&
		r.Volume.BackingStore.Format.Type != "" {
		return r.Volume.BackingStore.Format.Type
	}
	return "qcow2"
}

// ParseJobMark reads the job mark back from a domain XML string; ok=false when the domain
// carries no smallscale mark. Only <metadata> is read, so any domain on the host can be asked.
func ParseJobMark(domainXML string) (JobMark, bool, error) {
	var doc struct {
		XMLName  xml.Name                   `xml:"domain"`
		Metadata *libvirtxml.DomainMetadata `xml:"metadata"`
	}
	if err := xml.Unmarshal([]byte(domainXML), &doc); err != nil {
		return JobMark{}, false, fmt.Errorf("parse domain XML: %w", err)
	}
	if doc.Metadata == nil {
		return JobMark{}, false, nil
	}
	elems, err := metadataElements(doc.Metadata.XML)
	if err != nil {
		return JobMark{}, false, fmt.Errorf("parse domain <metadata>: %w", err)
	}
	for _, e := range elems {
		if e.name.Space != MetadataNamespace || e.name.Local != "job" {
			continue
		}
		var m jobMarkXML
		if err := xml.Unmarshal([]byte(e.raw), &m); err != nil {
			return JobMark{}, false, fmt.Errorf("%w: %w", ErrInvalidJobMark, err)
		}
		if m.JobID == "" {
			return JobMark{}, false, fmt.Errorf("%w: no <id>", ErrInvalidJobMark)
		}
		return JobMark{JobID: m.JobID, Runner: m.Runner, Worker: m.Worker}, true, nil
	}
	return JobMark{}, false, nil
}

// metadataElement is one top-level element of a domain's <metadata>, kept as written:
// libvirtxml holds <metadata> as raw inner XML, and foreign metadata must pass through
// untouched.
type metadataElement struct {
	name xml.Name // namespace resolved
	raw  string
}

// metadataElements splits the inner XML of <metadata> into its top-level elements, dropping
// the whitespace and comments between them.
func metadataElements(inner string) ([]metadataElement, error) {
	dec := xml.NewDecoder(strings.NewReader(inner))
	var out []metadataElement
	for {
		start := dec.InputOffset()
		tok, err := dec.Token()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		se, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		if err := dec.Skip(); err != nil {
			return nil, err
		}
		out = append(out, metadataElement{name: se.Name, raw: inner[start:dec.InputOffset()]})
	}
}

// setIdentity gives the domain the job's name and drops what identifies the runner's own VM:
// its UUID (libvirt makes a new one; two jobs may not share one), the id of the running domain
// it was dumped from, and the VM generation id's value (an empty <genid/> keeps the device and
// makes libvirt generate a fresh id).
func setIdentity(d *libvirtxml.Domain, spec JobSpec) error {
	if spec.DomainName == "" || strings.Contains(spec.DomainName, "/") {
		return fmt.Errorf("%w: domain name %q: want a non-empty name without '/'", ErrInvalidJobSpec, spec.DomainName)
	}
	d.Name = spec.DomainName
	d.UUID = ""
	d.ID = nil
	if d.GenID != nil {
		d.GenID = &libvirtxml.DomainGenID{}
	}
	return nil
}

// setDomainType forces the domain type (e.g. "qemu" where KVM is not usable). TCG cannot pass
// the host CPU through (libvirt: "CPU mode 'host-passthrough' ... is not supported by
// hypervisor"), so a forced "qemu" turns host-passthrough into its TCG analogue, maximum.
func setDomainType(d *libvirtxml.Domain, spec JobSpec) error {
	if spec.DomainType == "" {
		return nil
	}
	d.Type = spec.DomainType
	if spec.DomainType == "qemu" && d.CPU != nil && d.CPU.Mode == "host-passthrough" {
		d.CPU.Mode = "maximum"
	}
	return nil
}

// pointJobDisk points the job disk at the job's overlay, a plain file (AppArmor's helper does
// not follow the backing chain of a type='volume' disk), with the base image and its format
// stated explicitly. From every disk it drops what only a running domain has: aliases, source
// and backing-store indexes, a block-job mirror.
func (r *Runner) pointJobDisk(d *libvirtxml.Domain, spec JobSpec) error {
	if !filepath.IsAbs(spec.OverlayPath) {
		return fmt.Errorf("%w: overlay path %q: want an absolute path", ErrInvalidJobSpec, spec.OverlayPath)
	}
	i, ok := jobDisk(d, r.BaseImage)
	if !ok {
		return fmt.Errorf("%w: runner %s: vm.xml has no <disk device='disk'>", ErrInvalidRunner, r.Name)
	}
	for j := range d.Devices.Disks {
		disk := &d.Devices.Disks[j]
		disk.Alias = dropGeneratedAlias(disk.Alias)
		disk.Mirror = nil
		if disk.Source != nil {
			disk.Source.Index = 0
		}
		for bs := disk.BackingStore; bs != nil; bs = bs.BackingStore {
			bs.Index = 0
		}
	}

	disk := &d.Devices.Disks[i]
	// Keep what vm.xml says lies below the base image (usually <backingStore/>: nothing).
	var belowBase *libvirtxml.DomainDiskBackingStore
	if fileSource(disk.BackingStore) == r.BaseImage {
		belowBase = disk.BackingStore.BackingStore
	}
	disk.Source = &libvirtxml.DomainDiskSource{
		File: &libvirtxml.DomainDiskSourceFile{File: spec.OverlayPath},
	}
	if disk.Driver == nil {
		disk.Driver = &libvirtxml.DomainDiskDriver{Name: "qemu"}
	}
	disk.Driver.Type = "qcow2"
	disk.BackingStore = &libvirtxml.DomainDiskBackingStore{
		Format:       &libvirtxml.DomainDiskFormat{Type: r.baseFormat()},
		Source:       &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: r.BaseImage}},
		BackingStore: belowBase,
	}
	return nil
}

// dropRuntimeAliases removes the device aliases libvirt generated for the running domain.
// User aliases ("ua-" prefix) are configuration and stay.
func dropRuntimeAliases(d *libvirtxml.Domain, _ JobSpec) error {
	aliasType := reflect.TypeOf((*libvirtxml.DomainAlias)(nil))
	walkDevices(d, func(v reflect.Value) {
		if v.Type() == aliasType && !v.IsNil() {
			v.Set(reflect.ValueOf(dropGeneratedAlias(v.Interface().(*libvirtxml.DomainAlias))))
		}
	})
	return nil
}

func dropGeneratedAlias(a *libvirtxml.DomainAlias) *libvirtxml.DomainAlias {
	if a != nil && strings.HasPrefix(a.Name, "ua-") {
		return a
	}
	return nil
}

// walkDevices calls visit for every settable field reachable from d.Devices. A reflective walk
// reaches every kind of device libvirtxml knows, including kinds added after this was written.
func walkDevices(d *libvirtxml.Domain, visit func(reflect.Value)) {
	if d.Devices != nil {
		walkValue(reflect.ValueOf(d.Devices).Elem(), visit)
	}
}

func walkValue(v reflect.Value, visit func(reflect.Value)) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			walkValue(v.Elem(), visit)
		}
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			f := v.Field(i)
			if !f.CanSet() {
				continue
			}
			visit(f)
			walkValue(f, visit)
		}
	case reflect.Slice, reflect.Array:
		for i := 0; i < v.Len(); i++ {
			walkValue(v.Index(i), visit)
		}
	}
}

// dropInterfaceLeftovers removes the MAC address (two jobs on one bridge must not share one;
// libvirt generates a fresh one), the host tap device (vnet3, macvtap0: a job cannot reuse
// the dumped VM's), and the port id and bridge libvirt filled in for a network interface.
func dropInterfaceLeftovers(d *libvirtxml.Domain, _ JobSpec) error {
	if d.Devices == nil {
		return nil
	}
	for i := range d.Devices.Interfaces {
		iface := &d.Devices.Interfaces[i]
		iface.MAC = nil
		iface.Target = nil
		if iface.Source != nil && iface.Source.Network != nil {
			iface.Source.Network.PortID = ""
			iface.Source.Network.Bridge = ""
		}
	}
	return nil
}

// dropCharDevLeftovers removes the pty paths and tty of the running domain's serial ports,
// consoles, parallel ports and channels, the socket paths of unix channels (libvirt makes one
// per domain; the dumped one lives in the old domain's directory), and the connection state
// of virtio channels.
func dropCharDevLeftovers(d *libvirtxml.Domain, _ JobSpec) error {
	if d.Devices == nil {
		return nil
	}
	dropPty := func(s *libvirtxml.DomainChardevSource) {
		if s != nil && s.Pty != nil {
			s.Pty.Path = ""
		}
	}
	for i := range d.Devices.Serials {
		dropPty(d.Devices.Serials[i].Source)
	}
	for i := range d.Devices.Parallels {
		dropPty(d.Devices.Parallels[i].Source)
	}
	for i := range d.Devices.Consoles {
		d.Devices.Consoles[i].TTY = ""
		dropPty(d.Devices.Consoles[i].Source)
	}
	for i := range d.Devices.Channels {
		ch := &d.Devices.Channels[i]
		dropPty(ch.Source)
		if ch.Source != nil && ch.Source.UNIX != nil {
			ch.Source.UNIX.Path = ""
		}
		if ch.Target != nil && ch.Target.VirtIO != nil {
			ch.Target.VirtIO.State = ""
		}
		if ch.Target != nil && ch.Target.Xen != nil {
			ch.Target.Xen.State = ""
		}
	}
	return nil
}

// freeGraphicsPorts lets libvirt pick VNC and SPICE ports (two jobs cannot share port 5900):
// autoport on, no fixed port, TLS port or websocket port (a websocket becomes websocket='-1',
// allocated too). Listen addresses are kept only when they are loopback or the wildcard, which
// exist on every host; another address (e.g. the dumping host's own IP, or the address libvirt
// resolved a listen network to) is dropped and the host's default applies. Generated socket
// paths are dropped.
func freeGraphicsPorts(d *libvirtxml.Domain, _ JobSpec) error {
	if d.Devices == nil {
		return nil
	}
	for i := range d.Devices.Graphics {
		g := &d.Devices.Graphics[i]
		switch {
		case g.VNC != nil:
			v := g.VNC
			if v.Port != 0 || v.AutoPort != "" {
				v.Port, v.AutoPort = 0, "yes"
			}
			if v.WebSocket != 0 {
				v.WebSocket = -1
			}
			v.Socket = ""
			v.Listen = cleanListeners(v.Listen, v.Listeners)
		case g.Spice != nil:
			s := g.Spice
			if s.Port != 0 || s.TLSPort != 0 || s.AutoPort != "" {
				s.Port, s.TLSPort, s.AutoPort = 0, 0, "yes"
			}
			s.Listen = cleanListeners(s.Listen, s.Listeners)
		}
	}
	return nil
}

// cleanListeners applies freeGraphicsPorts' listen policy to the <listen> children and returns
// what remains of the legacy listen attribute. With children present the attribute is dropped:
// libvirt derives it from the first child and refuses a mismatch.
func cleanListeners(legacy string, ls []libvirtxml.DomainGraphicListener) string {
	for i := range ls {
		switch l := &ls[i]; {
		case l.Address != nil && !portableListenAddress(l.Address.Address):
			l.Address.Address = ""
		case l.Network != nil:
			l.Network.Address = ""
		case l.Socket != nil:
			l.Socket.Socket = ""
		}
	}
	if len(ls) > 0 || !portableListenAddress(legacy) {
		return ""
	}
	return legacy
}

// portableListenAddress reports whether a listen address means the same on every host.
func portableListenAddress(addr string) bool {
	if addr == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(addr)
	return err == nil && (ip.IsLoopback() || ip.IsUnspecified())
}

// dropDynamicSecLabels removes <seclabel type='dynamic'> (label and imagelabel were generated
// for the dumped run; libvirt generates new ones) and every per-device <seclabel>.
func dropDynamicSecLabels(d *libvirtxml.Domain, _ JobSpec) error {
	var kept []libvirtxml.DomainSecLabel
	for _, l := range d.SecLabel {
		if l.Type != "dynamic" {
			kept = append(kept, l)
		}
	}
	d.SecLabel = kept
	deviceLabels := reflect.TypeOf([]libvirtxml.DomainDeviceSecLabel(nil))
	walkDevices(d, func(v reflect.Value) {
		if v.Type() == deviceLabels && !v.IsNil() {
			v.Set(reflect.Zero(deviceLabels))
		}
	})
	return nil
}

// dropFirmwareLeftovers removes the UEFI variable store's file: it belongs to the dumped VM,
// and jobs sharing it would block each other and leak state. libvirt creates a fresh one per
// domain name from the template (kept), or from the template it pairs with the loader.
//
// With firmware autoselection (<os firmware='efi'>) a running domain's dump also shows what
// libvirt selected on the dumping host: loader path, readonly, type and nvram template.
// libvirt 9.0 refuses those next to firmware='efi' ("loader attribute 'readonly' cannot be
// specified when firmware autoselection is enabled"), and the paths differ between
// distributions, so they go and the worker's libvirt selects again. The <firmware> feature
// requests and loader secure/stateless/format, which steer that selection, stay.
func dropFirmwareLeftovers(d *libvirtxml.Domain, _ JobSpec) error {
	if d.OS == nil {
		return nil
	}
	autoselect := d.OS.Firmware != ""
	if l := d.OS.Loader; l != nil && autoselect {
		l.Path, l.Readonly, l.Type = "", "", ""
		if *l == (libvirtxml.DomainLoader{}) {
			d.OS.Loader = nil
		}
	}
	if nv := d.OS.NVRam; nv != nil {
		nv.NVRam = ""
		if nv.Source != nil && (nv.Source.File != nil || nv.Source.Block != nil) {
			nv.Source = nil
		}
		if autoselect {
			nv.Template, nv.TemplateFormat = "", ""
		}
		if nv.Source == nil && nv.Template == "" && nv.TemplateFormat == "" && nv.Format == "" {
			d.OS.NVRam = nil
		}
	}
	if vs := d.OS.VarStore; vs != nil {
		vs.Path = ""
		if autoselect {
			vs.Template = ""
		}
	}
	return nil
}

// ensureAgentChannel adds the guest-agent channel when vm.xml lacks it.
func ensureAgentChannel(d *libvirtxml.Domain, _ JobSpec) error {
	if d.Devices == nil {
		d.Devices = &libvirtxml.DomainDeviceList{}
	}
	// Keep the first agent channel vm.xml has and drop any further one: two ports of one name
	// would leave the agent's side to chance.
	var kept []libvirtxml.DomainChannel
	found := false
	for _, ch := range d.Devices.Channels {
		if virtioName(ch) == AgentChannel {
			if found {
				continue
			}
			found = true
		}
		kept = append(kept, ch)
	}
	d.Devices.Channels = kept
	if found {
		return nil
	}
	d.Devices.Channels = append(d.Devices.Channels, libvirtxml.DomainChannel{
		Source: &libvirtxml.DomainChardevSource{UNIX: &libvirtxml.DomainChardevSourceUNIX{Mode: "bind"}},
		Target: &libvirtxml.DomainChannelTarget{VirtIO: &libvirtxml.DomainChannelTargetVirtIO{Name: AgentChannel}},
	})
	return nil
}

// setLogChannel replaces any log channel vm.xml has with one bound to the job's socket.
func setLogChannel(d *libvirtxml.Domain, spec JobSpec) error {
	return setBoundChannel(d, LogChannel, "log socket", spec.LogSocket)
}

// setDataChannel replaces any data channel vm.xml has with one bound to the job's socket.
func setDataChannel(d *libvirtxml.Domain, spec JobSpec) error {
	return setBoundChannel(d, DataChannel, "data socket", spec.DataSocket)
}

// setBoundChannel replaces the virtio channel called name with one whose host side is a unix
// socket QEMU listens on at path.
func setBoundChannel(d *libvirtxml.Domain, name, what, path string) error {
	if !filepath.IsAbs(path) {
		return fmt.Errorf("%w: %s %q: want an absolute path", ErrInvalidJobSpec, what, path)
	}
	if len(path) > maxUnixSocketPath {
		return fmt.Errorf("%w: %s %q is %d bytes long; a unix socket path holds at most %d: use a shorter directory",
			ErrInvalidJobSpec, what, path, len(path), maxUnixSocketPath)
	}
	if d.Devices == nil {
		d.Devices = &libvirtxml.DomainDeviceList{}
	}
	var kept []libvirtxml.DomainChannel
	for _, ch := range d.Devices.Channels {
		if virtioName(ch) != name {
			kept = append(kept, ch)
		}
	}
	d.Devices.Channels = append(kept, libvirtxml.DomainChannel{
		Source: &libvirtxml.DomainChardevSource{UNIX: &libvirtxml.DomainChardevSourceUNIX{Mode: "bind", Path: path}},
		Target: &libvirtxml.DomainChannelTarget{VirtIO: &libvirtxml.DomainChannelTargetVirtIO{Name: name}},
	})
	return nil
}

func virtioName(ch libvirtxml.DomainChannel) string {
	if ch.Target == nil || ch.Target.VirtIO == nil {
		return ""
	}
	return ch.Target.VirtIO.Name
}

// markJob writes the job mark into <metadata>, keeping other applications' metadata. A mark
// already there (a runner dumped from a job's domain) is replaced: libvirt keeps only the
// first element of each namespace, which would be the stale one.
func markJob(d *libvirtxml.Domain, spec JobSpec) error {
	if spec.JobID == "" || spec.Runner == "" || spec.Worker == "" {
		return fmt.Errorf("%w: job id %q, runner %q, worker %q: the job mark needs all three",
			ErrInvalidJobSpec, spec.JobID, spec.Runner, spec.Worker)
	}
	mark, err := xml.Marshal(jobMarkXML{JobID: spec.JobID, Runner: spec.Runner, Worker: spec.Worker})
	if err != nil {
		return err
	}
	var kept []string
	if d.Metadata != nil {
		elems, err := metadataElements(d.Metadata.XML)
		if err != nil {
			return fmt.Errorf("%w: vm.xml's <metadata> cannot be read: %w", ErrInvalidRunner, err)
		}
		for _, e := range elems {
			if e.name.Space != MetadataNamespace {
				kept = append(kept, e.raw)
			}
		}
	}
	d.Metadata = &libvirtxml.DomainMetadata{XML: strings.Join(append(kept, string(mark)), "")}
	return nil
}
