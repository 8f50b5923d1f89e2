state_dir = "/var/lib/popfetch"
defaults {
  username      = "joe"
  password_file = "/etc/popfetch/pw"
  deliver { maildir = "/var/mail/joe" }
}
account "one" {
  server   = "pop.one.example"
  interval = "2m"
}
account "two" {
  server           = "pop.two.example"
  password_command = ["pass", "show", "two"]
  postmaster { maildir = "/var/mail/pm" }
  multidrop {
    local_domains = ["example.com"]
    user "alice" { addresses = ["alice", "a.smith"] }
    user "bob" {
      deliver { mda = ["/usr/bin/procmail", "-d", "{user}"] }
    }
  }
  deliver { maildir = "/var/vmail/{user}" }
}
account "three" {
  server   = "pop.three.example"
  username = "jim"
  deliver {
    smtp {
      server = "localhost:24"
      lmtp   = true
    }
  }
}
