package main

import (
	"testing"

	"github.com/popfetch/popfetch/rcfile"
)

// TestAuditShardHostileEnv: environment values and host names that are
// not exactly i/N or NAME-ORDINAL are refused, never read as some shard
// (which would leave accounts unpolled or polled twice).
func TestAuditShardHostileEnv(t *testing.T) {
	file := rcfile.Shard{Index: 1, Count: 2}
	for _, tc := range []struct {
		shard, fromHost, host string
		set, setHost          bool
		want                  string // "" = an error
	}{
		{shard: "1/3", set: true, want: "1/3"},
		{shard: "", set: true},
		{shard: " 1/3", set: true},
		{shard: "1/3 ", set: true},
		{shard: "1/3\n", set: true},
		{shard: "+1/3", set: true},
		{shard: "-1/3", set: true},
		{shard: "01/3", set: true},
		{shard: "1/03", set: true},
		{shard: "1/3/4", set: true},
		{shard: "3/3", set: true},
		{shard: "0/0", set: true},
		{shard: "0/1001", set: true},
		{shard: "0x1/3", set: true},
		{shard: "１/３", set: true},
		{shard: "1e0/3", set: true},
		{shard: "99999999999999999999/3", set: true},
		{fromHost: "3", host: "popfetch-2", setHost: true, want: "2/3"},
		{fromHost: "3", host: "popfetch-3", setHost: true},
		{fromHost: "3", host: "popfetch-02", setHost: true},
		{fromHost: "3", host: "popfetch-+2", setHost: true},
		{fromHost: "3", host: "popfetch--2", setHost: true, want: "2/3"},
		{fromHost: "3", host: "popfetch", setHost: true},
		{fromHost: "3", host: "popfetch-", setHost: true},
		{fromHost: "3", host: "popfetch-2.svc", setHost: true},
		{fromHost: "3", host: "popfetch-2\n", setHost: true},
		{fromHost: "", host: "popfetch-0", setHost: true},
		{fromHost: "0", host: "popfetch-0", setHost: true},
		{fromHost: "3 ", host: "popfetch-0", setHost: true},
		{shard: "0/3", set: true, fromHost: "3", host: "popfetch-1", setHost: true},
		{want: "1/2"},
	} {
		env := shardEnv{
			lookup: func(k string) (string, bool) {
				switch k {
				case envShard:
					return tc.shard, tc.set
				case envShardFromHostname:
					return tc.fromHost, tc.setHost
				}
				return "", false
			},
			hostname: func() (string, error) { return tc.host, nil },
		}
		sh, _, err := resolveShard(nil, env, file)
		got := ""
		if err == nil {
			got = sh.String()
		}
		if got != tc.want {
			t.Errorf("POPFETCH_SHARD=%q (set %v) POPFETCH_SHARD_FROM_HOSTNAME=%q (set %v) host %q: shard %q, err %v; want %q", tc.shard, tc.set, tc.fromHost, tc.setHost, tc.host, got, err, tc.want)
		}
	}
}
