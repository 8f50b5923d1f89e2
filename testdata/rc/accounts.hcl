# accounts.hcl: three mailboxes of one person with shared defaults.
# The defaults block sets what all accounts have in common (delivery,
# timeout, a size limit); each account overrides what differs: one server
# that only offers STARTTLS, one that keeps mail on the server, one with a
# private CA (named through the environment) and a pinned key.

defaults {
  username      = "joe"
  password_file = "~/.config/popfetch/password"
  limit         = "25MB"
  timeout       = "2m"

  deliver {
    maildir = "~/Maildir"
  }
}

account "isp" {
  server = "mail.isp.example"
  tls    = "starttls" # STLS on port 110; never falls back to plaintext
}

account "archive" {
  server      = "pop.archive.example"
  keep        = true # leave everything on the server, fetch only new mail
  fetch_limit = 200  # at most 200 messages per poll
  limit       = 0    # no size limit for this one
}

account "lab" {
  server          = "pop.lab.internal"
  port            = 1995
  username        = "joe.lab"
  password_env    = "LAB_MAIL_PASSWORD" # replaces the default password_file
  ca_file         = env("LAB_CA_FILE", "/etc/ssl/lab-ca.pem")
}

account "selfsigned" {
  server          = "pop.home.internal"
  username        = "joe"
  # A self-signed server: the pin replaces the chain check (not with
  # ca_file); the certificate must still name the server.
  tls_fingerprint = "sha256:9F:86:D0:81:88:4C:7D:65:9A:2F:EA:A0:C5:5A:D0:15:A3:BF:4F:1B:2B:0B:82:2C:D1:5D:6C:15:B0:F0:0A:08"
  tls_check_name  = true
}
