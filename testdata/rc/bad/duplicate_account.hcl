# Two accounts with the same name.
defaults {
  username     = "joe"
  password_env = "PW"
  deliver {
    maildir = "/var/mail/joe"
  }
}

account "work" {
  server = "pop.example.com"
}

account "work" {
  server = "pop.example.org"
}
