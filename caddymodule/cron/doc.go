// Package cron fires scheduled HTTP requests at podcell services: the
// `cron` lines of a podcell block (docs/cron.md). It knows nothing of
// Caddy: the controller owns one Scheduler, which lives across config
// reloads, calls Set with every declared job after each change and Close
// with itself. Job is the one type of a cron job, from the Caddyfile to the
// store; its name follows the service name's rule (scaler.CheckName).
//
// # Schedules
//
// A Job's Schedule is read by robfig/cron/v3's standard parser: 5 fields
// (minute hour day-of-month month day-of-week), @hourly, @daily, @weekly,
// @monthly, @yearly or @every <duration>, in the job's TimeZone (default
// UTC; TZ= prefixes are refused in favour of it).
//
// Daylight saving time. A schedule that names particular hours
// ("30 2 * * *", @daily) is read on the local wall clock: a time that
// falls in a spring-forward gap runs once, when the gap ends (02:30 on a
// night when 02:00 becomes 03:00 runs at 03:00; several times in the gap,
// and 03:00 itself, fold into that one run), and a time in a fall-back
// repeat runs once, at its first occurrence. A schedule that runs every
// hour ("*/10 * * * *", @hourly) keeps real time instead: nothing runs in
// the gap, which does not exist, and the repeated hour runs twice, so the
// cadence stays even. This is Vixie cron's rule; robfig's Next alone would
// skip the daily run in the gap and run it twice in the repeat.
//
// # Missed runs
//
// There is no catch-up storm. When a fire time is due, the scheduler looks
// for later fire times that have passed as well (the loop woke late after
// a suspend, or the process was down). Only the latest of them runs, late;
// the ones before it become a single Run with Status "missed" that counts
// them. Across restarts the scheduler learns when a job last fired from the
// Store: Set loads the history of a job it has not seen and continues after
// the latest scheduled (non-manual) run in it. (So the app passes the last
// run through its Store rather than as an argument to Set.) A run is saved
// when it ends: a run cut off by a crash is not in the store and, if its
// fire time is still the latest, runs again after the restart (at least
// once); a run stopped by Close is saved as cancelled and does not.
// Without history a job starts from now.
//
// # Reloads
//
// Set replaces the whole job set. A job whose definition (every field)
// is unchanged keeps its next fire time and its runs in progress, so a
// reload neither fires it twice nor loses a tick. A changed job is
// rescheduled from now. A removed job fires no more, and a run of it in
// progress finishes (bounded by its time limit) and is recorded; Close
// cancels every run in progress.
//
// # Overlap
//
// When a fire time comes while the job's previous run is still running:
// OverlapSkip (the default) records the tick as "skipped"; OverlapAllow
// runs both; OverlapReplace cancels the running one (recorded as
// "cancelled") and starts the new one. Trigger runs a job now as a manual
// run; under skip it refuses while a run is in progress.
//
// # Requests
//
// Each run sends Method <Path> (Host: the service) to the Doer that
// Options.Service gives for the job's service: in podcell its gateway
// (controller.Gateway.Do), which takes an instance as user traffic does.
// Headers: Podcell-Cron (job name),
// Podcell-Cron-Scheduled (the fire time, RFC 3339 in the job's zone; the
// trigger time for a manual run), Podcell-Cron-Attempt (1, 2, ...),
// Podcell-Cron-Secret (Options.Secret(service), so the service can refuse
// outside callers) and User-Agent: podcell-cron (a job header may replace
// it). A 2xx answer succeeds; redirects are not followed. With go-retryablehttp,
// 5xx (but 501), 429 and connection errors are retried up to Retries
// times with exponential backoff (Options.RetryWaitMin to RetryWaitMax; a
// Retry-After on 429 or 503 wins). Each attempt is bounded by Timeout and
// the whole run by Timeout × (Retries+1), cut to the job's next fire time
// but never below one Timeout.
//
// # History
//
// The last Options.HistorySize runs per job (default 50) stay in memory
// for History; every run record also goes to Options.Store and
// Options.OnRun (for metrics) as it is made.
package cron
