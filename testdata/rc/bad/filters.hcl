# Filter mistakes: a milter without a port, a command without an absolute
# path and with a per-recipient placeholder, an unknown policy, two ways
# to pick the trusted Received: field, and a duplicate name.
account "a" {
  server       = "pop.example.com"
  username     = "joe"
  password_env = "PW"
  deliver { maildir = "/var/mail/joe" }
  postmaster { maildir = "/var/mail/postmaster" }

  trusted_received {
    by       = "mx.example.com"
    position = 2
  }
  filter "rspamd" {
    milter = "inet:127.0.0.1"
  }
  filter "spamc" {
    command        = ["spamc", "-u", "{user}"]
    on_unavailable = "ignore"
  }
  filter "rspamd" {
    milter    = "unix:/run/rspamd/milter.sock"
    on_reject = "drop"
  }
}
