package controller

import (
	"encoding/json"
	"fmt"

	"go.uber.org/zap"

	"github.com/podcell/podcell/caddymodule/store"
)

// migrate brings the store's service records to store.ServiceFormat.
// Format 1 (no "v"): the spec is the podcell handler's JSON as the admin
// API stored it before the controller existed; its fields are those of
// ServiceSpec, durations as nanoseconds. It is decoded strictly, checked,
// and written again as format 2. A record that cannot be read is left as
// it is and logged (Start then skips it, as it did before); a record of a
// newer format stops the store from opening, so an older podcell never
// rewrites what it does not understand.
func migrate(st *store.Store, log *zap.Logger) error {
	recs, err := st.Services()
	if err != nil {
		return fmt.Errorf("reading services from the store: %w", err)
	}
	for _, rec := range recs {
		switch {
		case rec.V == store.ServiceFormat:
			continue
		case rec.V > store.ServiceFormat:
			return fmt.Errorf("store: service %s has record format %d, newer than this podcell's %d: run the podcell that wrote it, or a newer one",
				rec.Name, rec.V, store.ServiceFormat)
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
