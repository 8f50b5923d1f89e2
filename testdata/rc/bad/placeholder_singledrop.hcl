# {user} in a single-drop account: there is no per-user recipient, so
# the path would be taken literally.
account "a" {
  server       = "pop.example.com"
  username     = "joe"
  password_env = "PW"
  deliver {
    maildir = "/var/vmail/{domain}/{user}"
  }
}

account "b" {
  server       = "pop.example.com"
  username     = "all"
  password_env = "PW"
  deliver {
    maildir = "/var/vmail/{user}"
  }
  postmaster {
    maildir = "/var/vmail/{user}/postmaster"
  }
  multidrop {
    local_domains = ["example.com"]
    user "joe" {}
  }
}
