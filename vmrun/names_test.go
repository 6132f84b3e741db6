package vmrun

import (
	"strings"
	"testing"
	"testing/quick"
)

func TestDomainAndVolumeName(t *testing.T) {
	tests := []struct {
		runner, jobID string
		domain        string
	}{
		{"tiny", "01J8Z3", "smallscale-tiny-01J8Z3"},
		{"desktop_x", "a.b-c_d", "smallscale-desktop_x-a.b-c_d"},
		{"tiny", "a/b", "smallscale-tiny-a%2Fb"},
		{"tiny", "a%2Fb", "smallscale-tiny-a%252Fb"},
		{"tiny", "a b\n", "smallscale-tiny-a%20b%0A"},
		{"tiny", "é", "smallscale-tiny-%C3%A9"},
		{"tiny", "", "smallscale-tiny-"},
	}
	for _, tt := range tests {
		got := DomainName(tt.runner, tt.jobID)
		if got != tt.domain {
			t.Errorf("DomainName(%q, %q) = %q, want %q", tt.runner, tt.jobID, got, tt.domain)
		}
		if vol := VolumeName(got); vol != tt.domain+".qcow2" {
			t.Errorf("VolumeName(%q) = %q, want %q", got, vol, tt.domain+".qcow2")
		}
		if !strings.HasPrefix(got, NamePrefix) {
			t.Errorf("DomainName(%q, %q) = %q lacks prefix %q", tt.runner, tt.jobID, got, NamePrefix)
		}
	}
}

// validLibvirtName is what a domain or volume name must be: non-empty, no '/' (libvirt refuses
// it in domain names; a volume name becomes a file name in the pool), no NUL or control bytes.
func validLibvirtName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c == '/' || c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}

func TestNamesDistinctAndValid(t *testing.T) {
	ids := []string{"1", "01", "1 ", "1/", "1%2F", "1%2f", "a.b", "a_b", "a-b", "ab", "Ab",
		"../x", "x/..", "é", "%C3%A9", "\x00", "%00", "\u00a0"}
	seenDomain := map[string]string{}
	seenVolume := map[string]string{}
	for _, id := range ids {
		d := DomainName("tiny", id)
		v := VolumeName(d)
		if prev, ok := seenDomain[d]; ok {
			t.Errorf("job ids %q and %q both give domain %q", prev, id, d)
		}
		if prev, ok := seenVolume[v]; ok {
			t.Errorf("job ids %q and %q both give volume %q", prev, id, v)
		}
		seenDomain[d], seenVolume[v] = id, id
		if !validLibvirtName(d) || !validLibvirtName(v) {
			t.Errorf("job id %q gives invalid names %q, %q", id, d, v)
		}
	}

	distinct := func(a, b string) bool {
		if a == b {
			return true
		}
		da, db := DomainName("tiny", a), DomainName("tiny", b)
		return da != db && VolumeName(da) != VolumeName(db) &&
			validLibvirtName(da) && validLibvirtName(VolumeName(db))
	}
	if err := quick.Check(distinct, &quick.Config{MaxCount: 5000}); err != nil {
		t.Error(err)
	}
}
