# No server and no username, neither here nor in defaults.
account "a" {
  password_env = "PW"
  deliver {
    maildir = "/var/mail/joe"
  }
}
