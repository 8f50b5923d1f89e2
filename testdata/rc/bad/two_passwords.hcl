# Two password sources in one account. (A source in the account replaces
# the defaults' source as a group, so "b" is fine; "c" removes it with null
# and so has none.)
defaults {
  password_file = "/etc/popfetch/pw"
}

account "a" {
  server       = "pop.example.com"
  username     = "joe"
  password_env = "PW"
  password_command = ["pass", "show", "joe"]
  deliver {
    maildir = "/var/mail/joe"
  }
}

account "b" {
  server   = "pop.example.com"
  username = "bob"
  deliver {
    maildir = "/var/mail/bob"
  }
}

account "c" {
  server           = "pop.example.com"
  username         = "carol"
  password_file    = null
  deliver {
    maildir = "/var/mail/carol"
  }
}
