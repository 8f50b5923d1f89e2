# daemon.hcl: popfetch as a system daemon polling several mailboxes at
# different rates: a busy one every 30 seconds (popfetch warns below one
# minute, as providers may throttle), others every few minutes, an archive
# once a day. At most 4 sessions run at once, one per server.

# systemd's StateDirectory= sets $STATE_DIRECTORY; without it, the default.
state_dir    = env("STATE_DIRECTORY", "/var/lib/popfetch")
max_parallel = 4
per_server   = 1

defaults {
  deliver {
    smtp {
      server = "localhost:25"
      sender = "popfetch@mail.example.org"
    }
  }
}

account "support" {
  server        = "pop.helpdesk.example"
  username      = "support"
  password_file = "/etc/popfetch/secrets/support"
  interval      = "30s"
}

account "sales" {
  server        = "pop.helpdesk.example"
  username      = "sales"
  password_file = "/etc/popfetch/secrets/sales"
  interval      = "2m"
}

account "newsletters" {
  server        = "pop.isp.example"
  username      = "news"
  password_file = "/etc/popfetch/secrets/news"
  interval      = "15m"
  timeout       = "30s"
}

account "archive" {
  server        = "pop.archive.example"
  username      = "archive"
  password_file = "/etc/popfetch/secrets/archive"
  keep          = true
  interval      = "24h"
}
