package vmrun

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"libvirt.org/go/libvirt"
	"libvirt.org/go/libvirtxml"
)

// This file is the thin layer over libvirt: connection, pool, volume and domain calls, no job
// logic.

var eventLoop sync.Once

// startEventLoop registers libvirt's default event implementation and runs it for the life of
// the process: the binding needs it for keepalive and events, before the first connection.
func startEventLoop() error {
	var err error
	eventLoop.Do(func() {
		if err = libvirt.EventRegisterDefaultImpl(); err != nil {
			return
		}
		go func() {
			for {
				if libvirt.EventRunDefaultImpl() != nil {
					return
				}
			}
		}()
	})
	return err
}

func connect(uri string) (*libvirt.Connect, error) {
	if err := startEventLoop(); err != nil {
		return nil, fmt.Errorf("libvirt event loop: %w", err)
	}
	conn, err := libvirt.NewConnect(uri)
	if err != nil {
		return nil, fmt.Errorf("%w: connect %s: %v", ErrLibvirt, uri, err)
	}
	// A dead libvirtd is noticed within 15 s rather than at the next call.
	if err := conn.SetKeepAlive(5, 3); err != nil && !isNoSupport(err) {
		conn.Close()
		return nil, fmt.Errorf("%w: keepalive on %s: %v", ErrLibvirt, uri, err)
	}
	return conn, nil
}

func isNoSupport(err error) bool {
	var lerr libvirt.Error
	return errors.As(err, &lerr) && lerr.Code == libvirt.ERR_NO_SUPPORT
}

func isVolumeExists(err error) bool {
	var lerr libvirt.Error
	return errors.As(err, &lerr) && lerr.Code == libvirt.ERR_STORAGE_VOL_EXIST
}

func isNotFound(err error) bool {
	var lerr libvirt.Error
	if !errors.As(err, &lerr) {
		return false
	}
	switch lerr.Code {
	case libvirt.ERR_NO_DOMAIN, libvirt.ERR_NO_STORAGE_VOL, libvirt.ERR_NO_STORAGE_POOL:
		return true
	}
	return false
}

// ensurePool returns the named storage pool, defining and starting a directory pool at dir when
// it does not exist. It never refreshes an existing pool: refreshes race with volume builds.
func ensurePool(conn *libvirt.Connect, name, dir string) (*libvirt.StoragePool, error) {
	pool, err := conn.LookupStoragePoolByName(name)
	if err != nil {
		if !isNotFound(err) {
			return nil, fmt.Errorf("%w: look up pool %s: %v", ErrLibvirt, name, err)
		}
		if err := os.MkdirAll(dir, 0o711); err != nil {
			return nil, fmt.Errorf("create pool directory: %w", err)
		}
		doc, err := (&libvirtxml.StoragePool{
			Type:   "dir",
			Name:   name,
			Target: &libvirtxml.StoragePoolTarget{Path: dir},
		}).Marshal()
		if err != nil {
			return nil, err
		}
		pool, err = conn.StoragePoolDefineXML(doc, 0)
		if err != nil {
			return nil, fmt.Errorf("%w: define pool %s at %s: %v", ErrLibvirt, name, dir, err)
		}
		_ = pool.SetAutostart(true)
	}
	active, err := pool.IsActive()
	if err != nil {
		pool.Free()
		return nil, fmt.Errorf("%w: pool %s: %v", ErrLibvirt, name, err)
	}
	if !active {
		if err := pool.Create(0); err != nil {
			pool.Free()
			return nil, fmt.Errorf("%w: start pool %s: %v", ErrLibvirt, name, err)
		}
	}
	return pool, nil
}

// createVolume creates a volume from its XML and returns its path.
func createVolume(pool *libvirt.StoragePool, name, doc string) (string, error) {
	vol, err := pool.StorageVolCreateXML(doc, 0)
	if err != nil {
		return "", fmt.Errorf("%w: create overlay %s: %w", ErrStorage, name, err)
	}
	defer vol.Free()
	path, err := vol.GetPath()
	if err != nil {
		_ = vol.Delete(0)
		return "", fmt.Errorf("%w: path of overlay %s: %v", ErrStorage, name, err)
	}
	return path, nil
}

// deleteVolume deletes a volume; one already gone is not an error.
func deleteVolume(pool *libvirt.StoragePool, name string) error {
	vol, err := pool.LookupStorageVolByName(name)
	if err != nil {
		if isNotFound(err) {
			return nil
		}
		return fmt.Errorf("%w: look up overlay %s: %v", ErrStorage, name, err)
	}
	defer vol.Free()
	if err := vol.Delete(0); err != nil && !isNotFound(err) {
		return fmt.Errorf("%w: delete overlay %s: %v", ErrStorage, name, err)
	}
	return nil
}

// destroyDomain stops a domain at once; one already gone is not an error. The domains are
// transient, so destroying also removes them.
func destroyDomain(conn *libvirt.Connect, name string) error {
	dom, err := conn.LookupDomainByName(name)
	if err != nil {
		if isNotFound(err) {
			return nil
		}
		return fmt.Errorf("%w: look up domain %s: %v", ErrLibvirt, name, err)
	}
	defer dom.Free()
	if err := dom.Destroy(); err != nil && !isNotFound(err) {
		var lerr libvirt.Error
		if errors.As(err, &lerr) && lerr.Code == libvirt.ERR_OPERATION_INVALID {
			return nil // not running any more
		}
		return fmt.Errorf("%w: destroy domain %s: %v", ErrLibvirt, name, err)
	}
	return nil
}

// CleanLeftovers removes what a crash left behind: domains that carry this worker's mark (at
// start-up it runs none), and overlays of smallscale's naming that no domain uses and that are
// older than Config.LeftoverAge (a live worker starts a job's domain within a second of creating
// its overlay). It never touches domains of other workers or volumes of other names.
func (e *Executor) CleanLeftovers() (domains, volumes int, err error) {
	conn, pool, err := e.live(false)
	if err != nil {
		return 0, 0, err
	}
	doms, err := conn.ListAllDomains(0)
	if err != nil {
		return 0, 0, fmt.Errorf("%w: list domains: %v", ErrLibvirt, err)
	}
	var errs []error
	for i := range doms {
		d := &doms[i]
		name, _ := d.GetName()
		if strings.HasPrefix(name, NamePrefix) {
			if doc, err := d.GetXMLDesc(0); err == nil {
				if mark, ok, _ := ParseJobMark(doc); ok && mark.Worker == e.cfg.Worker {
					if err := destroyDomain(conn, name); err != nil {
						errs = append(errs, err)
					} else {
						domains++
					}
				}
			}
		}
		d.Free()
	}
	vols, err := pool.ListAllStorageVolumes(0)
	if err != nil {
		return domains, 0, errors.Join(append(errs, fmt.Errorf("%w: list volumes: %v", ErrStorage, err))...)
	}
	for i := range vols {
		v := &vols[i]
		name, _ := v.GetName()
		path, _ := v.GetPath()
		v.Free()
		domName, ok := strings.CutSuffix(name, ".qcow2")
		if !ok || !strings.HasPrefix(name, NamePrefix) {
			continue
		}
		if dom, err := conn.LookupDomainByName(domName); err == nil {
			dom.Free()
			continue // a job runs on it
		}
		if st, err := os.Stat(path); err != nil || time.Since(st.ModTime()) < e.cfg.LeftoverAge {
			continue // too young to judge, or not a local file
		}
		if err := deleteVolume(pool, name); err != nil {
			errs = append(errs, err)
		} else {
			volumes++
		}
	}
	return domains, volumes, errors.Join(errs...)
}
