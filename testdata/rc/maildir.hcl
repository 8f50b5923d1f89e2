# maildir.hcl: the simplest setup. One person fetches one POP3 mailbox
# into ~/Maildir. The provider speaks POP3S (implicit TLS, port 995, the
# default), and the password comes from a password manager, so this file
# holds no secret and needs no special permissions.

account "home" {
  server           = "pop.example.net"
  username         = "joe@example.net"
  password_command = ["pass", "show", "mail/example.net"]

  deliver {
    maildir = "~/Maildir"
  }
}
