package controller

import (
	"encoding/json"
	"fmt"

	"go.uber.org/zap"

	"github.com/podcell/podcell/caddymodule/store"
)

// migrate brings the store's records to the formats this code writes
// (store.ServiceFormat and the others). A record of a newer format stops
// the store from opening (store.CheckFormats), so an older podcell never
// rewrites what it does not understand. Revisions, builds and cron jobs
// are all still format 1 (with or without "v"); services:
//
// Format 1 (no "v"): the spec is the podcell handler's JSON as the admin
// API stored it before the controller existed; its fields are those of
// ServiceSpec, durations as nanoseconds. It is decoded strictly, checked,
// and written again as format 2. A record that cannot be read is left as
// it is and logged (Start then skips it, as it did before).
func migrate(st *store.Store, log *zap.Logger) error {
	if err := st.CheckFormats(); err != nil {
		return err
	}
	recs, err := st.Services()
	if err != nil {
		return fmt.Errorf("reading services from the store: %w", err)
	}
	for _, rec := range recs {
		if rec.V == store.ServiceFormat {
			continue
		}
		var spec json.RawMessage
		if len(rec.Spec) > 0 {
			s, err := DecodeSpec(rec.Spec)
			if err == nil {
				err = s.Validate(rec.Name)
			}
			if err != nil {
				log.Error("cannot migrate a stored service; it is left as it was and not served", zap.String("service", rec.Name),
					zap.Int("format", max(rec.V, 1)), zap.Error(err))
				continue
			}
			if spec, err = json.Marshal(s); err != nil {
				return err
			}
		}
		if _, err := st.UpdateService(rec.Name, func(s *store.Service) error {
			if spec != nil {
				s.Spec = spec
			}
			return nil
		}); err != nil {
			return fmt.Errorf("store: migrating service %s: %w", rec.Name, err)
		}
		log.Info("migrated a stored service", zap.String("service", rec.Name), zap.Int("from", max(rec.V, 1)), zap.Int("to", store.ServiceFormat))
	}
	return nil
}
