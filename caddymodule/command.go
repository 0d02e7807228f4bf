package caddymodule

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/podcell/podcell/caddymodule/controller"
	"github.com/podcell/podcell/caddymodule/cron"
	"github.com/podcell/podcell/caddymodule/observe"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "podcell",
		Short: "Manage podcell services through a running Caddy's admin API",
		Long: `Talks to the admin API of a running Caddy (--address, or the admin
address of --config, or localhost:2019) under /podcell/.`,
		CobraFunc: podcellCommands,
	})
}

func podcellCommands(cmd *cobra.Command) {
	var address, config, adapter string
	cmd.PersistentFlags().StringVar(&address, "address", "", "admin API address (default: from --config, else localhost:2019)")
	cmd.PersistentFlags().StringVarP(&config, "config", "c", "", "config file to read the admin address from")
	cmd.PersistentFlags().StringVarP(&adapter, "adapter", "a", "", "adapter of the config file")
	request := func(method, uri string, body io.Reader) (*http.Response, error) {
		addr, err := caddycmd.DetermineAdminAPIAddress(address, nil, config, adapter)
		if err != nil {
			return nil, err
		}
		resp, err := caddycmd.AdminAPIRequest(addr, method, uri, nil, body)
		if err != nil {
			return nil, adminError(err)
		}
		// AdminAPIRequest makes every 4xx and 5xx an error (adminError
		// unpacks its message); what is left to refuse is a redirect.
		if resp.StatusCode >= 300 {
			resp.Body.Close()
			return nil, fmt.Errorf("unexpected answer from the admin API: %s", resp.Status)
		}
		return resp, nil
	}
	getJSON := func(uri string, v any) error {
		resp, err := request(http.MethodGet, uri, nil)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		return json.NewDecoder(resp.Body).Decode(v)
	}
	copyLog := func(service string, id int, follow bool) error {
		uri := fmt.Sprintf("/podcell/services/%s/builds/%d/log", service, id)
		if follow {
			uri += "?follow=1"
		}
		resp, err := request(http.MethodGet, uri, nil)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		_, err = io.Copy(os.Stdout, resp.Body)
		return err
	}

	cmd.AddCommand(&cobra.Command{
		Use:   "services",
		Short: "List services with their instances by state",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			var list []controller.ServiceStatus
			if err := getJSON("/podcell/services", &list); err != nil {
				return err
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SERVICE\tSTATE\tREVISION\tINSTANCES\tINFLIGHT\tQUEUED\tIMAGE")
			var failed []controller.ServiceStatus
			for _, s := range list {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\n", s.Name, orDash(s.State), orDash(s.Revision), states(s.States), s.Inflight, s.Queued, orDash(s.Image))
				if s.Error != "" {
					failed = append(failed, s)
				}
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			// Why a service has no revision, under the table: a build's
			// error is too long for a column.
			for _, s := range failed {
				fmt.Printf("\n%s: %s (caddy podcell builds %s)\n", s.Name, firstLine(s.Error), s.Name)
			}
			return nil
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "status <service>",
		Short: "Show one service's live state as JSON",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			resp, err := request(http.MethodGet, "/podcell/services/"+args[0], nil)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			_, err = io.Copy(os.Stdout, resp.Body)
			return err
		},
	})
	var follow bool
	deploy := &cobra.Command{
		Use:   "deploy <service>",
		Short: "Build the service's git source and deploy it",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			resp, err := request(http.MethodPost, "/podcell/services/"+args[0]+"/deploy", nil)
			if err != nil {
				return err
			}
			var out struct {
				Build int `json:"build"`
			}
			json.NewDecoder(resp.Body).Decode(&out)
			resp.Body.Close()
			fmt.Fprintf(os.Stderr, "build %d of %s\n", out.Build, args[0])
			if !follow {
				return nil
			}
			// A build queued behind a running one has no log yet.
			for i := 0; ; i++ {
				err := copyLog(args[0], out.Build, true)
				if err == nil || i > 600 || !strings.Contains(err.Error(), "is not kept") {
					return err
				}
				time.Sleep(time.Second)
			}
		},
	}
	deploy.Flags().BoolVarP(&follow, "follow", "f", false, "stream the build log until the build ends")
	cmd.AddCommand(deploy)
	cmd.AddCommand(&cobra.Command{
		Use:   "builds <service>",
		Short: "List the service's recent builds",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			var list []controller.BuildInfo
			if err := getJSON("/podcell/services/"+args[0]+"/builds", &list); err != nil {
				return err
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "BUILD\tSTATUS\tTRIGGER\tCOMMIT\tSTARTED\tSECONDS\tREASON")
			for _, b := range list {
				commit := b.Commit
				if len(commit) > 12 {
					commit = commit[:12]
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%.1f\t%s\n", b.ID, b.Status, b.Trigger, commit,
					b.Started.Format(time.RFC3339), b.Seconds, firstLine(b.Reason))
			}
			return tw.Flush()
		},
	})
	var followLog bool
	buildLog := &cobra.Command{
		Use:   "build-log <service> <build>",
		Short: "Print a build's log (-f: follow it while it runs)",
		Args:  cobra.ExactArgs(2),
		RunE: func(_ *cobra.Command, args []string) error {
			var id int
			if _, err := fmt.Sscan(args[1], &id); err != nil {
				return fmt.Errorf("build %q is not a number", args[1])
			}
			return copyLog(args[0], id, followLog)
		},
	}
	buildLog.Flags().BoolVarP(&followLog, "follow", "f", false, "keep printing lines until the build ends")
	cmd.AddCommand(buildLog)
	cmd.AddCommand(envCommand(request, getJSON))
	cmd.AddCommand(cronCommand(request, getJSON))
	var followLogs, colorLogs bool
	var tailLogs int
	logs := &cobra.Command{
		Use:   "logs <service>",
		Short: "Print the service's recent output (-f: keep following it)",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			uri := fmt.Sprintf("/podcell/services/%s/logs?tail=%d", args[0], tailLogs)
			if followLogs {
				uri += "&follow=1"
			}
			if colorLogs {
				uri += "&color=1"
			}
			resp, err := request(http.MethodGet, uri, nil)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			dec := json.NewDecoder(resp.Body)
			for {
				var l observe.Line
				if err := dec.Decode(&l); err == io.EOF {
					return nil
				} else if err != nil {
					return err
				}
				if l.Dropped > 0 {
					fmt.Printf("[%d lines dropped: this reader was too slow]\n", l.Dropped)
				}
				fmt.Printf("%s %s %s %s\n", l.Time.Format(time.RFC3339Nano), l.Instance, l.Stream, l.Text)
			}
		},
	}
	logs.Flags().BoolVarP(&followLogs, "follow", "f", false, "keep printing new lines until interrupted")
	logs.Flags().IntVarP(&tailLogs, "tail", "n", 100, "how many recent lines to print first")
	logs.Flags().BoolVar(&colorLogs, "color", false, "keep the app's terminal colour codes (stripped by default)")
	cmd.AddCommand(logs)
	cmd.AddCommand(&cobra.Command{
		Use:   "revisions <service>",
		Short: "List the service's revisions, newest first",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			var list []controller.RevisionInfo
			if err := getJSON("/podcell/services/"+args[0]+"/revisions", &list); err != nil {
				return err
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "REVISION\tCURRENT\tREASON\tCREATED\tID\tIMAGE\tENV")
			for _, r := range list {
				cur := ""
				if r.Current {
					cur = "*"
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Seq, cur, r.Reason, r.Created, r.ID, shortImage(r.Image), strings.Join(r.Env, ","))
			}
			return tw.Flush()
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "rollback <service> [revision]",
		Short: "Run an earlier revision again (default: the one before the current)",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(_ *cobra.Command, args []string) error {
			body := "{}"
			if len(args) == 2 {
				n, err := strconv.Atoi(args[1])
				if err != nil || n < 1 {
					return fmt.Errorf("revision %q: want a revision number from 'caddy podcell revisions %s'", args[1], args[0])
				}
				body = fmt.Sprintf(`{"revision": %d}`, n)
			}
			resp, err := request(http.MethodPost, "/podcell/services/"+args[0]+"/rollback", strings.NewReader(body))
			if err != nil {
				return err
			}
			resp.Body.Close()
			fmt.Fprintf(os.Stderr, "%s: rolling over to the earlier revision\n", args[0])
			return nil
		},
	})
}

// envCommand is 'caddy podcell env list|set|unset'.
func envCommand(request func(method, uri string, body io.Reader) (*http.Response, error), getJSON func(string, any) error) *cobra.Command {
	env := &cobra.Command{Use: "env", Short: "List, set and unset a service's env vars (a change rolls instances over)"}
	var reveal bool
	list := &cobra.Command{
		Use:   "list <service>",
		Short: "List the service's env vars (values only with --reveal)",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			uri := "/podcell/services/" + args[0] + "/env"
			if reveal {
				uri += "?reveal=true"
			}
			var out controller.EnvList
			if err := getJSON(uri, &out); err != nil {
				return err
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tSOURCE\tVALUE")
			for _, v := range out.Env {
				val := "(hidden: --reveal)"
				if out.Revealed {
					val = v.Value
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\n", v.Name, v.Source, val)
			}
			return tw.Flush()
		},
	}
	list.Flags().BoolVar(&reveal, "reveal", false, "print the values too")
	change := func(service string, changes map[string]*string) error {
		b, err := json.Marshal(changes)
		if err != nil {
			return err
		}
		resp, err := request(http.MethodPut, "/podcell/services/"+service+"/env", bytes.NewReader(b))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var out controller.EnvList
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "%s: env changed (revision %d); instances roll over to it\n", service, out.Revision)
		return nil
	}
	set := &cobra.Command{
		Use:   "set <service> NAME=value...",
		Short: "Set env vars",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(_ *cobra.Command, args []string) error {
			changes := map[string]*string{}
			for _, kv := range args[1:] {
				k, v, ok := strings.Cut(kv, "=")
				if !ok || k == "" {
					return fmt.Errorf("%q: write NAME=value", kv)
				}
				changes[k] = &v
			}
			return change(args[0], changes)
		},
	}
	unset := &cobra.Command{
		Use:   "unset <service> NAME...",
		Short: "Unset env vars",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(_ *cobra.Command, args []string) error {
			changes := map[string]*string{}
			for _, k := range args[1:] {
				changes[k] = nil
			}
			return change(args[0], changes)
		},
	}
	env.AddCommand(list, set, unset)
	return env
}

// cronCommand is 'caddy podcell cron list|runs|run'.
func cronCommand(request func(method, uri string, body io.Reader) (*http.Response, error), getJSON func(string, any) error) *cobra.Command {
	c := &cobra.Command{Use: "cron", Short: "List a service's cron jobs and their runs, run a job now"}
	when := func(t *time.Time) string {
		if t == nil || t.IsZero() {
			return "-"
		}
		return t.Local().Format(time.RFC3339)
	}
	list := &cobra.Command{
		Use:   "list <service>",
		Short: "List the service's cron jobs with their next fire time and last run",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			var jobs []controller.CronJobStatus
			if err := getJSON("/podcell/services/"+args[0]+"/cron", &jobs); err != nil {
				return err
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "JOB\tSOURCE\tSCHEDULE\tTZ\tREQUEST\tNEXT\tLAST RUN\tLAST STATUS")
			for _, j := range jobs {
				last, status := "-", "-"
				if j.LastRun != nil {
					last, status = when(&j.LastRun.Scheduled), string(j.LastRun.Status)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s %s\t%s\t%s\t%s\n", j.Name, j.Source, j.Schedule, j.TimeZone, j.Method, j.Path, when(j.Next), last, status)
			}
			return tw.Flush()
		},
	}
	runs := &cobra.Command{
		Use:   "runs <service> <job>",
		Short: "List the job's recent runs, newest first",
		Args:  cobra.ExactArgs(2),
		RunE: func(_ *cobra.Command, args []string) error {
			var list []cron.Run
			if err := getJSON("/podcell/services/"+args[0]+"/cron/"+args[1]+"/runs", &list); err != nil {
				return err
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SCHEDULED\tSTATUS\tCODE\tATTEMPTS\tSECONDS\tMANUAL\tERROR")
			for _, r := range list {
				manual := ""
				if r.Manual {
					manual = "yes"
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%.3f\t%s\t%s\n", when(&r.Scheduled), r.Status, r.StatusCode, r.Attempts, r.Duration.Seconds(), manual, firstLine(r.Error))
			}
			return tw.Flush()
		},
	}
	run := &cobra.Command{
		Use:   "run <service> <job>",
		Short: "Run the job now (see its result with 'cron runs')",
		Args:  cobra.ExactArgs(2),
		RunE: func(_ *cobra.Command, args []string) error {
			resp, err := request(http.MethodPost, "/podcell/services/"+args[0]+"/cron/"+args[1]+"/run", nil)
			if err != nil {
				return err
			}
			resp.Body.Close()
			fmt.Fprintf(os.Stderr, "%s: job %s started; 'caddy podcell cron runs %s %s' shows how it ends\n", args[0], args[1], args[0], args[1])
			return nil
		},
	}
	c.AddCommand(list, runs, run)
	return c
}

// adminError unwraps the message of an error answer, which Caddy's client
// reports as "caddy responded with error: HTTP <code>: <body>": the
// admin API's JSON body says what went wrong and how to fix it.
func adminError(err error) error {
	_, rest, ok := strings.Cut(err.Error(), "responded with error: HTTP ")
	if !ok {
		return err
	}
	_, body, _ := strings.Cut(rest, ": ")
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal([]byte(body), &e) != nil || e.Error == "" {
		return err
	}
	return errors.New(e.Error)
}

func shortImage(s string) string {
	if len(s) == 64 && !strings.ContainsAny(s, "/:") {
		return s[:12] // an image ID
	}
	return s
}

func states(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%d %s", m[k], k)
	}
	return strings.Join(parts, ", ")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
