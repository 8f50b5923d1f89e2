# One mailbox in two account blocks: the same server (in another case)
# and user, on the POP3S and the STARTTLS port. Both would poll it with
# separate seen-UID records and deliver every message twice.
defaults {
  username     = "joe"
  password_env = "PW"
  deliver {
    maildir = "/var/mail/joe"
  }
}

account "secure" {
  server = "pop.example.com"
}

account "legacy" {
  server = "POP.Example.com"
  tls    = "starttls"
}

account "other-user" {
  server   = "pop.example.com"
  username = "jane"
}
