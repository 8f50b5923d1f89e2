# popfetch.hcl for the StatefulSet in popfetch.yaml: every replica reads
# this same file (a copy of the ConfigMap, see popfetch.yaml) and polls
# only its shard of the accounts, taken from its pod name (popfetch-0,
# popfetch-1, ... with POPFETCH_SHARD_FROM_HOSTNAME = the replica count).
# Each replica's state (journals, OAuth2 tokens, control socket) is on its
# own volume, mounted at the same path.
#
# Each account here is a domain's catch-all mailbox at a provider, handed
# to the in-cluster Dovecot over LMTP (multidrop picks the recipients).

state_dir    = "/var/lib/popfetch"
max_parallel = 8
per_server   = 4

defaults {
  server   = "pop.provider.example"
  interval = "5m"

  deliver {
    smtp {
      server = "lmtp.mail.svc.cluster.local:24"
      lmtp   = true
      tls    = "starttls"
    }
  }
}

account "example.com" {
  username      = "catchall@example.com"
  password_file = "/etc/popfetch/example.com.password"

  multidrop {
    local_domains = ["example.com"]
    user "alice" {
      addresses = ["alice", "sales"]
    }
    user "bob" {
      addresses = ["bob", "support"]
    }
  }
}

account "example.org" {
  username      = "catchall@example.org"
  password_file = "/etc/popfetch/example.org.password"

  multidrop {
    local_domains = ["example.org"]
    user "carol" {
      addresses = ["carol", "info"]
    }
  }
}
