package filter

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/popfetch/popfetch/deliver"
)

// verdictFilter answers every message with its verdict.
type verdictFilter Verdict

func (f verdictFilter) Name() string { return "stub" }

func (f verdictFilter) Check(context.Context, *Envelope, *deliver.Message) (Verdict, error) {
	return Verdict(f), nil
}

// TestRunVerdictLog: the "filter verdict" line names the filter and its
// answer once; the account and UID come from the caller's logger, not
// again from Run (a key twice in a line is ambiguous to log readers).
func TestRunVerdictLog(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})).
		With("account", "acct", "uid", "uid1")
	env, m := sampleEnv(t, sampleMessage)
	res, err := Run(context.Background(), []Step{{Filter: verdictFilter{Action: Reject, Reply: "550 no"}}}, env, m, log)
	if err != nil {
		t.Fatal(err)
	}
	res.Close()
	line := strings.TrimSpace(buf.String())
	for _, key := range []string{"account", "uid", "filter", "action"} {
		if n := strings.Count(line, `"`+key+`":`); n != 1 {
			t.Errorf("key %q %d times in %s", key, n, line)
		}
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(line), &rec); err != nil {
		t.Fatalf("%v: %s", err, line)
	}
	if rec["msg"] != "filter verdict" || rec["filter"] != "stub" || rec["action"] != Reject.String() || rec["uid"] != "uid1" {
		t.Errorf("log line %s", line)
	}
}
