package ldap

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	goldap "github.com/go-ldap/ldap/v3"
)

// Vendor is the kind of directory server, as the root DSE shows it.
type Vendor string

// Vendors Discover tells apart. Samba AD DC is VendorActiveDirectory (ServerInfo.Samba says
// which); FreeIPA is Vendor389DS.
const (
	VendorOpenLDAP        Vendor = "openldap"
	Vendor389DS           Vendor = "389ds"
	VendorActiveDirectory Vendor = "activedirectory"
	VendorUnknown         Vendor = "unknown"
)

// OIDs of the controls and capabilities that choose a delta mechanism.
const (
	OIDSyncRequest    = "1.3.6.1.4.1.4203.1.9.1.1" // RFC 4533 syncrepl
	OIDDirSync        = "1.2.840.113556.1.4.841"   // AD DirSync
	OIDShowDeleted    = "1.2.840.113556.1.4.417"   // AD show deleted objects
	oidADCapability   = "1.2.840.113556.1.4.800"   // LDAP_CAP_ACTIVE_DIRECTORY_OID
	oidOpenLDAPRootDS = "openldaprootdse"
)

// ServerInfo is what the root DSE says about the server.
type ServerInfo struct {
	Vendor               Vendor
	Samba                bool   // a Samba AD DC (Vendor is activedirectory)
	VendorName           string // vendorName, when the server publishes it
	VendorVersion        string
	SupportedControls    []string
	NamingContexts       []string
	DefaultNamingContext string // AD
	ForestFunctionality  string // AD: the forest functional level ("" elsewhere)
	HighestCommittedUSN  int64  // AD: the DC's highest committed update sequence number
	DSServiceName        string // AD: the DN of the DC's NTDS Settings object
}

// Supports reports whether the server lists oid in supportedControl.
func (i ServerInfo) Supports(oid string) bool { return slices.Contains(i.SupportedControls, oid) }

// IsAD reports whether the server is Active Directory or Samba AD.
func (i ServerInfo) IsAD() bool { return i.Vendor == VendorActiveDirectory }

// rootDSEAttrs lists the attributes Discover reads; "+" asks OpenLDAP for its operational
// attributes, AD needs most of them by name.
var rootDSEAttrs = []string{"*", "+", "objectClass", "namingContexts", "defaultNamingContext", "supportedControl",
	"supportedCapabilities", "forestFunctionality", "highestCommittedUSN", "dsServiceName", "vendorName", "vendorVersion"}

// Discover reads the root DSE: vendor, supported controls, naming contexts and, on AD, the
// forest level, highestCommittedUSN and the DC's dsServiceName. An LDIF source is VendorUnknown.
func (c *Client) Discover(ctx context.Context) (ServerInfo, error) {
	if c.cfg.isFile() {
		return ServerInfo{Vendor: VendorUnknown}, nil
	}
	s, err := c.open(ctx)
	if err != nil {
		return ServerInfo{}, err
	}
	defer s.close()
	return s.discover(ctx)
}

func (s *session) discover(ctx context.Context) (ServerInfo, error) {
	var root *goldap.Entry
	req := goldap.NewSearchRequest("", goldap.ScopeBaseObject, goldap.NeverDerefAliases, 0, 0, false,
		"(objectClass=*)", rootDSEAttrs, nil)
	err := s.each(ctx, s.conn, func(c context.Context) goldap.Response { return s.conn.SearchAsync(c, req, 1) },
		func(r goldap.Response) error {
			if e := r.Entry(); e != nil {
				root = e
			}
			return nil
		})
	if err != nil {
		return ServerInfo{}, failed("read the root DSE", err)
	}
	if root == nil {
		return ServerInfo{}, fmt.Errorf("ldap: read the root DSE: the server returned no entry")
	}
	return parseRootDSE(root)
}

func parseRootDSE(e *goldap.Entry) (ServerInfo, error) {
	get := e.GetEqualFoldAttributeValue
	info := ServerInfo{
		VendorName:           get("vendorName"),
		VendorVersion:        get("vendorVersion"),
		SupportedControls:    e.GetEqualFoldAttributeValues("supportedControl"),
		NamingContexts:       e.GetEqualFoldAttributeValues("namingContexts"),
		DefaultNamingContext: get("defaultNamingContext"),
		ForestFunctionality:  get("forestFunctionality"),
		DSServiceName:        get("dsServiceName"),
	}
	if v := get("highestCommittedUSN"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return ServerInfo{}, fmt.Errorf("ldap: root DSE: highestCommittedUSN %q: %w", v, err)
		}
		info.HighestCommittedUSN = n
	}
	caps := e.GetEqualFoldAttributeValues("supportedCapabilities")
	lowerClasses := strings.ToLower(strings.Join(e.GetEqualFoldAttributeValues("objectClass"), " "))
	vendor := strings.ToLower(info.VendorName + " " + info.VendorVersion)
	switch {
	case slices.Contains(caps, oidADCapability) || info.ForestFunctionality != "":
		info.Vendor = VendorActiveDirectory
		info.Samba = strings.Contains(vendor, "samba")
	case strings.Contains(vendor, "389") || strings.Contains(vendor, "fedora") || strings.Contains(vendor, "red hat"):
		info.Vendor = Vendor389DS
	case strings.Contains(lowerClasses, oidOpenLDAPRootDS) || strings.Contains(vendor, "openldap"):
		info.Vendor = VendorOpenLDAP
	default:
		info.Vendor = VendorUnknown
	}
	return info, nil
}

// namingContextOf returns the naming context that holds dn: the longest one that is dn or an
// ancestor of it.
func (i ServerInfo) namingContextOf(dn string) string {
	d, err := goldap.ParseDN(dn)
	if err != nil {
		return ""
	}
	best, bestLen := "", -1
	for _, nc := range i.NamingContexts {
		n, err := goldap.ParseDN(nc)
		if err != nil {
			continue
		}
		if (n.EqualFold(d) || n.AncestorOfFold(d)) && len(n.RDNs) > bestLen {
			best, bestLen = nc, len(n.RDNs)
		}
	}
	return best
}
