package main

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/popfetch/popfetch/rcfile"
)

// TestResolveShard: --shard wins over the environment, which wins over
// the rc file; each invalid value is an error naming where it is, never
// "all accounts".
func TestResolveShard(t *testing.T) {
	t.Parallel()
	file := rcfile.Shard{Index: 0, Count: 2}
	flagOf := func(v string) *shardFlag { return &shardFlag{val: v, set: true} }
	tests := []struct {
		name string
		flag *shardFlag
		env  map[string]string
		host string
		file rcfile.Shard

		want    string // the shard, "" for the zero Shard
		src     string
		wantErr string
	}{
		{name: "nothing", want: ""},
		{name: "file", file: file, want: "0/2"},
		{name: "flag over file", flag: flagOf("2/3"), file: file, want: "2/3", src: "--shard"},
		{name: "flag over env", flag: flagOf("2/3"), env: map[string]string{envShard: "1/3"}, file: file, want: "2/3", src: "--shard"},
		{name: "flag over bad env", flag: flagOf("2/3"), env: map[string]string{envShard: "x"}, want: "2/3", src: "--shard"},
		{name: "flag not set", flag: &shardFlag{}, env: map[string]string{envShard: "1/3"}, file: file, want: "1/3", src: envShard},
		{name: "env over file", env: map[string]string{envShard: "1/3"}, file: file, want: "1/3", src: envShard},
		{name: "flag 0/1", flag: flagOf("0/1"), file: file, want: "0/1", src: "--shard"},
		{name: "hostname", env: map[string]string{envShardFromHostname: "3"}, host: "popfetch-2", file: file, want: "2/3", src: envShardFromHostname},
		{name: "hostname with dashes", env: map[string]string{envShardFromHostname: "8"}, host: "mail-fetch-0", want: "0/8", src: envShardFromHostname},

		{name: "bad flag", flag: flagOf("3/3"), wantErr: "--shard: shard \"3/3\""},
		{name: "empty flag", flag: flagOf(""), file: file, wantErr: "--shard"},
		{name: "bad env", env: map[string]string{envShard: "1"}, file: file, wantErr: envShard + ": shard \"1\""},
		{name: "empty env", env: map[string]string{envShard: ""}, file: file, wantErr: envShard},
		{name: "both env", env: map[string]string{envShard: "1/3", envShardFromHostname: "3"}, host: "p-1", wantErr: "set one"},
		{name: "ordinal too big", env: map[string]string{envShardFromHostname: "3"}, host: "popfetch-3", wantErr: "number of replicas?"},
		{name: "no ordinal", env: map[string]string{envShardFromHostname: "3"}, host: "popfetch", wantErr: "does not end in -NUMBER"},
		{name: "empty ordinal", env: map[string]string{envShardFromHostname: "3"}, host: "popfetch-", wantErr: "does not end in -NUMBER"},
		{name: "ordinal with zero", env: map[string]string{envShardFromHostname: "3"}, host: "popfetch-01", wantErr: "does not end in -NUMBER"},
		{name: "ordinal sign", env: map[string]string{envShardFromHostname: "3"}, host: "popfetch-+1", wantErr: "does not end in -NUMBER"},
		{name: "bad count", env: map[string]string{envShardFromHostname: "three"}, host: "popfetch-1", wantErr: "number of replicas"},
		{name: "zero count", env: map[string]string{envShardFromHostname: "0"}, host: "popfetch-0", wantErr: "number of replicas"},
		{name: "empty count", env: map[string]string{envShardFromHostname: ""}, host: "popfetch-0", wantErr: "number of replicas"},
		{name: "no hostname", env: map[string]string{envShardFromHostname: "3"}, wantErr: "host name: none"},
	}
	for _, tt := range tests {
		env := shardEnv{
			lookup: func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok },
			hostname: func() (string, error) {
				if tt.host == "" {
					return "", errors.New("none")
				}
				return tt.host, nil
			},
		}
		sh, src, err := resolveShard(tt.flag, env, tt.file)
		switch {
		case tt.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s: resolveShard = %v, %q, %v; want an error containing %q", tt.name, sh, src, err, tt.wantErr)
			}
		case err != nil || sh.String() != tt.want || src != tt.src:
			t.Errorf("%s: resolveShard = %q from %q, %v; want %q from %q", tt.name, sh, src, err, tt.want, tt.src)
		}
	}
}

// TestShardAccounts: without names, a one-shot fetch polls the shard's
// accounts; a named account of another shard is refused with its shard.
func TestShardAccounts(t *testing.T) {
	t.Parallel()
	cfg := &rcfile.Config{Shard: rcfile.Shard{Index: 1, Count: 3}}
	var mine, theirs *rcfile.Account
	for _, u := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
		a := &rcfile.Account{Name: u, Username: u, Server: "pop.example.com"}
		cfg.Accounts = append(cfg.Accounts, a)
		if cfg.Shard.Owns(a) {
			mine = a
		} else {
			theirs = a
		}
	}
	if mine == nil || theirs == nil {
		t.Fatal("the test needs accounts in and out of shard 1/3")
	}
	got, err := shardAccounts(cfg, cfg.Accounts, false)
	if err != nil || len(got) == 0 || len(got) == len(cfg.Accounts) {
		t.Fatalf("shardAccounts(all) = %d accounts, %v; want the shard's", len(got), err)
	}
	for _, a := range got {
		if !cfg.Shard.Owns(a) {
			t.Errorf("shardAccounts(all) includes %s of another shard", a.Name)
		}
	}
	if got, err := shardAccounts(cfg, []*rcfile.Account{mine}, true); err != nil || len(got) != 1 {
		t.Errorf("shardAccounts(%s) = %v, %v; want it", mine.Name, got, err)
	}
	_, err = shardAccounts(cfg, []*rcfile.Account{mine, theirs}, true)
	if want := `account "` + theirs.Name + `" is polled by shard`; err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "not by this one (1/3)") {
		t.Errorf("shardAccounts(%s, %s) = %v; want an error containing %q", mine.Name, theirs.Name, err, want)
	}
	cfg.Shard = rcfile.Shard{}
	if got, err := shardAccounts(cfg, []*rcfile.Account{theirs}, true); err != nil || len(got) != 1 {
		t.Errorf("without a shard: shardAccounts(%s) = %v, %v; want it", theirs.Name, got, err)
	}
}

// FuzzShardFromHostname: whatever the host name and count, the result is
// an error or shard i/N with N the count and i the host name's last
// -NUMBER.
func FuzzShardFromHostname(f *testing.F) {
	for _, s := range [][2]string{{"popfetch-2", "3"}, {"popfetch-3", "3"}, {"a-01", "8"}, {"-0", "1"}, {"x", ""}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, host, count string) {
		sh, err := shardFromHostname(count, func() (string, error) { return host, nil })
		if err != nil {
			return
		}
		if sh.Count < 1 || sh.Index >= sh.Count || fmt.Sprint(sh.Count) != count || !strings.HasSuffix(host, fmt.Sprintf("-%d", sh.Index)) {
			t.Fatalf("shardFromHostname(%q, %q) = %v", count, host, sh)
		}
	})
}
