package sync

import (
	"go.uber.org/zap"

	"github.com/scimsync/scimsync/config"
	"github.com/scimsync/scimsync/ldap"
	"github.com/scimsync/scimsync/scimclient"
	"github.com/scimsync/scimsync/state"
)

// Sections are the config sections one sync is built from.
type Sections struct {
	LDAP    ldap.Config
	Target  scimclient.TargetConfig
	Mapping MappingConfig
	Sync    Config
	// Groups is the groups: section; nil when it is absent (groups are not synced).
	Groups *GroupsConfig
	// Redactor knows every secret of the configuration: the client redacts target answers with
	// it and the engine the run errors it stores. nil: each part redacts only its own secret.
	Redactor *config.Redactor
}

// Open builds an engine from config sections over st: the directory client (warning once when
// its transport is not verified), the SCIM client (returned too, for its counters and
// observers), the profile's mapping and the reconciler. wrap, when set, decorates the source
// (the daemon counts entries read).
func Open(s Sections, st *state.Store, log *zap.Logger, wrap func(Source) Source) (*Engine, *scimclient.Client, error) {
	src, err := ldap.New(s.LDAP)
	if err != nil {
		return nil, nil, err
	}
	if w := src.InsecureWarning(); w != "" {
		log.Warn(w)
	}
	var opts []scimclient.Option
	if s.Redactor != nil {
		opts = append(opts, scimclient.WithRedactor(s.Redactor))
	}
	tgt, err := scimclient.NewClient(s.Target, log, opts...)
	if err != nil {
		return nil, nil, err
	}
	if w := tgt.InsecureWarning(); w != "" {
		log.Warn(w)
	}
	mapping, ps := NewMapping(s.Target.Profile, s.Mapping)
	if err := ps.Err(); err != nil {
		return nil, nil, err
	}
	var source Source = src
	if wrap != nil {
		source = wrap(src)
	}
	eo := Options{Concurrency: s.Target.Concurrency, Target: s.Target.URL, Groups: s.Groups}
	if s.Redactor != nil {
		eo.Redact = s.Redactor.Redact
	}
	eng, err := New(s.Sync, mapping, source, tgt, st, log, eo)
	if err != nil {
		return nil, nil, err
	}
	return eng, tgt, nil
}
