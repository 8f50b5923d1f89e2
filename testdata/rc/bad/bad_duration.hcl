# Durations in words, without a unit, and out of range.
account "a" {
  server       = "pop.example.com"
  username     = "joe"
  password_env = "PW"
  timeout      = "5 minutes"
  interval     = 300
  deliver {
    mda         = ["/usr/bin/procmail"]
    mda_timeout = "48h"
  }
}

account "b" {
  server       = "pop.example.com"
  username     = "bob"
  password_env = "PW"
  interval     = "5s"
  deliver {
    maildir = "/var/mail/bob"
  }
}
