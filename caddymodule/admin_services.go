package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/podcell/podcell/caddymodule/store"
)

// The admin API's mutations of services: declaring a service through the
// API (PUT/DELETE /podcell/services/<name>). Every mutation is validated in
// full before anything is written; the store is written before the
// scaler is told, so a failed write changes nothing.

// maxBody bounds what the admin API reads of a request body.
const maxBody = 1 << 20

func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return nil, apiError(http.StatusRequestEntityTooLarge, fmt.Sprintf("body: larger than %d bytes", maxBody))
	}
	if err != nil {
		return nil, apiError(http.StatusBadRequest, "body: "+err.Error())
	}
	return b, nil
}

// decodeSpec reads a service's settings; an unknown field is an error so
// that a typo does not silently fall back to a default.
func decodeSpec(b []byte) (ServiceSpec, error) {
	var spec ServiceSpec
	if err := decodeStrict(b, &spec); err != nil {
		return spec, fmt.Errorf("body: %v (send the service's settings as the podcell handler's JSON, e.g. {\"image\": \"localhost/hello:latest\", \"memory_mb\": 256})", err)
	}
	return spec, nil
}

// runningApp is the podcell app of the running config.
func runningApp() (*App, error) {
	a := current.Load()
	if a == nil {
		return nil, apiError(http.StatusServiceUnavailable, "podcell is not running: load a config with a podcell app first")
	}
	return a, nil
}

// putService declares (201) or changes (200) a service through the API.
func putService(w http.ResponseWriter, r *http.Request, name string) error {
	body, err := readBody(w, r)
	if err != nil {
		return err
	}
	spec, err := decodeSpec(body)
	if err != nil {
		return apiError(http.StatusBadRequest, err.Error())
	}
	if err := spec.validate(name); err != nil {
		return apiError(http.StatusBadRequest, err.Error())
	}
	if err := checkEnvValues(spec.Env); err != nil {
		return err
	}
	a, err := runningApp()
	if err != nil {
		return err
	}
	if spec.Git != nil {
		if err := spec.Git.spec(8080).Limits.Within(a.buildLimits().WithDefaults()); err != nil {
			return apiError(http.StatusBadRequest, err.Error())
		}
	}
	defer a.lockChanges()()
	old := a.services[name]
	if old != nil && old.api == nil {
		return apiError(http.StatusConflict, fmt.Sprintf("service %s is declared in the config (Caddyfile): change it there; the API can set its env vars", name))
	}
	// The spec's env vars and cron jobs join the store's, where the env and
	// cron APIs manage them.
	env, jobs := spec.Env, spec.Cron
	spec.Env, spec.Cron = nil, nil
	specJSON, err := json.Marshal(spec)
	if err != nil {
		return err
	}
	if _, err := a.st.UpdateService(name, func(s *store.Service) error {
		s.Spec = specJSON
		if len(env) > 0 && s.Env == nil {
			s.Env = map[string]string{}
		}
		for k, v := range env {
			s.Env[k] = v
		}
		return checkEnvTotal(s.Env)
	}); err != nil {
		return storeError(err)
	}
	for _, c := range jobs {
		c.Name = c.job(name).Name
		if err := a.st.PutCronJob(name, c.Name, c); err != nil {
			return storeError(err)
		}
	}
	if err := a.replaceAPIServiceLocked(name, spec, old, "api"); err != nil {
		return apiError(http.StatusInternalServerError, fmt.Sprintf("service %s was stored but cannot run: %v", name, err))
	}
	if err := a.syncCronLocked(); err != nil {
		return apiError(http.StatusInternalServerError, fmt.Sprintf("service %s runs but its cron jobs are not scheduled: %v", name, err))
	}
	code := http.StatusOK
	if old == nil {
		code = http.StatusCreated
	}
	return writeJSONStatus(w, code, statusFor(a, name))
}

// replaceAPIServiceLocked swaps old (nil: none) for a ref with spec. The
// new ref takes its hold on the pooled service before the old one lets go,
// so the running instances stay and roll over only if the revision changed.
func (a *App) replaceAPIServiceLocked(name string, spec ServiceSpec, old *serviceRef, reason string) error {
	delete(a.services, name)
	err := a.addAPIServiceLocked(name, spec, reason)
	if err != nil && old != nil {
		a.services[name] = old
	}
	if err == nil && old != nil {
		services.Delete(old.key)
		if old.src != nil {
			deployers.Delete(old.key)
		}
	}
	a.publishRoutesLocked()
	return err
}

// deleteService removes a service the API declared, with its env vars,
// revisions, cron jobs, build records and (in the background) the images
// and build layers of its builds.
func deleteService(w http.ResponseWriter, name string) error {
	a, err := runningApp()
	if err != nil {
		return err
	}
	defer a.lockChanges()()
	ref := a.services[name]
	if ref == nil {
		return apiError(http.StatusNotFound, fmt.Sprintf("service %q does not exist", name))
	}
	if ref.api == nil {
		return apiError(http.StatusConflict, fmt.Sprintf("service %s is declared in the config (Caddyfile): remove it there", name))
	}
	// The layers its builds made, from the build records about to go.
	var layers []madeLayer
	if ref.dep != nil {
		ref.dep.mu.Lock()
		for _, b := range ref.dep.builds {
			layers = append(layers, b.madeLayers()...)
		}
		ref.dep.mu.Unlock()
	}
	if err := a.st.DeleteService(name); err != nil {
		return storeError(err)
	}
	delete(a.services, name)
	a.publishRoutesLocked()
	if err := a.syncCronLocked(); err != nil {
		a.log.Error("cannot unschedule the cron jobs of a deleted service", zap.String("service", name), zap.Error(err))
	}
	// The last hold on the pooled service removes its instances.
	services.Delete(ref.key)
	if ref.src != nil {
		// Its last hold also cancels the deployer's build; then its images
		// go, off this request.
		if gone, _ := deployers.Delete(ref.key); gone {
			go ref.dep.removeAllImages(layers)
		}
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// storeError passes on an API error raised inside a store update (a
// validation) and reports any other failure as the store's.
func storeError(err error) error {
	var ae caddy.APIError
	if errors.As(err, &ae) {
		return err
	}
	return apiError(http.StatusInternalServerError, "store: "+err.Error())
}
