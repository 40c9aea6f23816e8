package sync

import (
	"context"
	"fmt"
	"strings"

	"go.uber.org/zap"

	"github.com/scimsync/scimsync/ldap"
	"github.com/scimsync/scimsync/state"
)

// planOne plans one user by userName without reading either side in full: the entry comes
// from its link's DN or an equality search on the attributes the userName is made of, the
// target user from its link or a filtered lookup, and the duplicate question is answered by
// state's userName index. A userName template that cannot be searched falls back to reading the
// directory (logged).
func (e *Engine) planOne(ctx context.Context, opts PlanOptions) (*Plan, error) {
	var plan *Plan
	err := e.store.View(func(v *state.View) error {
		p, err := e.newPlanner(ctx, v, opts)
		if err != nil {
			return err
		}
		plan = p.plan
		p.plan.Mode, p.reconcile = "user", true
		if err := p.discover(true); err != nil {
			return err
		}
		p.plan.Target = -1
		p.target = newRemoteLookup(e.target, p.pay)
		p.claims.held = p.heldName
		if err := p.recoverIntents(); err != nil {
			return err
		}
		entries, err := p.findUser(opts.OnlyUser)
		if err != nil {
			return fmt.Errorf("sync: %w: %w", ErrSourceFailed, err)
		}
		p.plan.Read = ReadInfo{Mechanism: "user", Entries: len(entries)}
		found := false
		var mapped []spooledDesired
		for _, en := range entries {
			if p.exclude != nil && p.exclude.Match(en) {
				continue // mapping.exclude: not synced, as in a full run
			}
			d, merr := e.mapping.Map(en)
			if merr != nil {
				if strings.EqualFold(en.First("uid"), opts.OnlyUser) || strings.EqualFold(en.First("samaccountname"), opts.OnlyUser) {
					found = true
					if err := p.read(ldap.Change{Kind: ldap.ChangeUpsert, Entry: en}); err != nil {
						return unwrapRead(err)
					}
				}
				continue
			}
			if !strings.EqualFold(d.UserName(), opts.OnlyUser) {
				continue
			}
			found = true
			l, linked, err := p.link(d.ExternalID)
			if err != nil {
				return err
			}
			p.plan.Source++
			p.seen[keyOf(d.ExternalID)] = d.DN
			p.claims.claim(d, linked, l.UserName)
			en := en
			mapped = append(mapped, spooledDesired{D: d, Entry: &entryRef{Attrs: en.Attrs}})
		}
		if !found {
			return fmt.Errorf("sync: %q: %w", opts.OnlyUser, ErrUserNotFound)
		}
		p.claims.resolve()
		for _, sd := range mapped {
			if err := p.planUser(sd.D, &ldap.Entry{DN: sd.D.DN, ID: sd.D.ExternalID, Attrs: sd.Entry.Attrs}); err != nil {
				return err
			}
		}
		return p.flushRecovered()
	})
	if err != nil {
		_ = plan.Close()
		return nil, err
	}
	return plan, nil
}

func unwrapRead(err error) error {
	if r, ok := err.(readError); ok {
		return r.err
	}
	return err
}

// findUser returns the directory entries that may map to name: its link's entry, else those
// an equality search on the userName's attributes finds, else (a template that cannot be
// searched) every entry.
func (p *planner) findUser(name string) ([]ldap.Entry, error) {
	q := p.e.source.UserQuery(p.directoryDefaults())
	var out []ldap.Entry
	seen := map[string]bool{}
	collect := func(en ldap.Entry) error {
		if key := strings.ToLower(en.DN); !seen[key] {
			seen[key] = true
			out = append(out, en)
		}
		return nil
	}
	if l, ok, err := p.v.LinkByName(state.LinkUser, name); err != nil {
		return nil, err
	} else if ok {
		if err := p.e.source.ByIDs(p.ctx, q, []string{l.ExternalID}, collect); err != nil {
			return nil, err
		}
	}
	if attrs, ok := p.e.mapping.userNameAttributes(); ok {
		var terms []string
		for _, a := range attrs {
			terms = append(terms, fmt.Sprintf("(%s=%s)", a, ldap.EscapeFilter(name)))
		}
		filter := "(|" + strings.Join(terms, "") + ")"
		if err := p.e.source.Search(p.ctx, q, filter, collect); err != nil {
			return nil, err
		}
		return out, nil
	}
	p.e.log.Info("the userName template cannot be searched by value; reading the directory to find the user",
		zap.String("user", name))
	if err := p.e.source.Search(p.ctx, q, "", collect); err != nil {
		return nil, err
	}
	return out, nil
}

// userNameAttributes are the attributes an equality search for a userName may use.
func (m *Mapping) userNameAttributes() ([]string, bool) {
	for _, f := range m.fields {
		if f.key == "userName" {
			return f.tmpl.EqualityAttributes()
		}
	}
	return nil, false
}
