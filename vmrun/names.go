package vmrun

import "strings"

// NamePrefix starts the name of every domain and volume smallscale creates, so an operator
// (and leftover cleanup) can tell them apart from everything else on the host.
const NamePrefix = "smallscale-"

// DomainName is the name of the transient domain that runs one job:
// "smallscale-" + runner + "-" + jobID.
//
// Runner names (checked by LoadRunner) and job ids made of ASCII letters, digits, '.', '_'
// and '-' appear verbatim. Any other byte is written as %XX (and '%' itself as %25), so that
// a strange job id can neither produce an invalid libvirt name (libvirt refuses '/'; the
// volume name becomes a file name in the pool) nor collide with another id's name.
func DomainName(runner, jobID string) string {
	return NamePrefix + nameSafe(runner) + "-" + nameSafe(jobID)
}

// VolumeName is the name of the overlay volume of the domain named domainName.
func VolumeName(domainName string) string {
	return domainName + ".qcow2"
}

// nameSafe escapes every byte outside [A-Za-z0-9._-] as %XX. The mapping is injective
// because '%' is escaped too.
func nameSafe(s string) string {
	if strings.IndexFunc(s, func(r rune) bool { return !isNameByte(r) }) < 0 {
		return s
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isNameByte(rune(c)) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&0xf])
	}
	return b.String()
}

func isNameByte(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
		r == '.' || r == '_' || r == '-'
}
