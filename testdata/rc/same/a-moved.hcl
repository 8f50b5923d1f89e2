# popfetch.hcl
# (a comment added on top shifts every line below)

account "three" {
  server = "pop.three.example"
  username = "jim"
  deliver {
    smtp {
      lmtp = true
      server = "localhost:24"
    }
  }
}

account "two" {
  server = "pop.two.example"
  password_command = ["pass", "show", "two"]
  deliver { maildir = "/var/vmail/{user}" }
  multidrop {
    local_domains = ["example.com"]
    user "alice" {
      addresses = ["alice", "a.smith"]
    }
    user "bob" {
      deliver { mda = ["/usr/bin/procmail", "-d", "{user}"] }
    }
  }
  postmaster { maildir = "/var/mail/pm" }
}

defaults {
  username = "joe"
  password_file = "/etc/popfetch/pw"
  deliver { maildir = "/var/mail/joe" }
}

state_dir = "/var/lib/popfetch"

account "one" {
  interval = "2m"
  server = "pop.one.example"
}
