// Package duration is the JSON form of a duration that podcell's records
// share: the service spec's (controller.Duration) and a cron job's
// timeout (cron.Job), so the handler's JSON, the admin API's and the
// stored records read alike.
package duration

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// Duration is a time.Duration in JSON as Caddy's: a number of nanoseconds
// or a string such as "30s", "5m" or "1d". It marshals as a number, as
// caddy.Duration does.
type Duration time.Duration

func (d *Duration) UnmarshalJSON(b []byte) error {
	if len(b) >= 2 && b[0] == '"' && b[len(b)-1] == '"' {
		v, err := Parse(string(b[1 : len(b)-1]))
		*d = Duration(v)
		return err
	}
	var v time.Duration
	err := json.Unmarshal(b, &v)
	*d = Duration(v)
	return err
}

// String is time.Duration's: "1m30s".
func (d Duration) String() string { return time.Duration(d).String() }

// Parse is time.ParseDuration with "d" for 24h, as Caddy's.
func Parse(s string) (time.Duration, error) {
	if len(s) > 1024 {
		return 0, fmt.Errorf("duration %q: too long", s[:32]+"...")
	}
	inNumber, start := false, 0
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if ch == 'd' {
			days, err := strconv.ParseFloat(s[start:i], 64)
			if err != nil {
				return 0, err
			}
			s = s[:start] + strconv.FormatFloat(days*24, 'f', -1, 64) + "h" + s[i+1:]
			i--
			continue
		}
		if !inNumber {
			start = i
		}
		inNumber = ch >= '0' && ch <= '9' || ch == '.' || ch == '-' || ch == '+'
	}
	return time.ParseDuration(s)
}
