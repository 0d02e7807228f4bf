// Package controller is podcell's control plane, with no Caddy in it: a
// Controller per data dir owns the desired state of the services (what
// the config declares, joined with what the admin API stored) and
// everything that acts on it: the scaler, the store, the deployers that
// build git services, the cron scheduler, the image collection and the
// observability hub.
//
// Its methods are the operations: Start (a config's services), Put and
// Delete (a service the admin API declares), SetEnv, Rollback, Deploy,
// ServeWebhook, the cron jobs' and the reads the admin API shows. Each
// change goes through one reconcile of the service, which turns the
// declared ServiceSpec, the stored env, the cron secret and the image (a
// git service's current build) into the scaler's config.
//
// A Gateway is a service's way in for requests: the Caddy handler's (Try)
// and the scheduler's (Do). ServiceSpec is the one shape of a service: the
// handler's JSON, the admin API's body and the store's record; Validate
// is its one check.
//
// The Caddy app (package caddymodule) keeps one Controller per data dir in
// a usage pool, so the state survives config reloads; the admin API's
// routes call its methods and turn its *Error into answers.
package controller
