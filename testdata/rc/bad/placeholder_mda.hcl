# {address} and {domain} in an mda outside a multidrop deliver or user
# block: there is no routed address, so they would be empty for every
# message and every delivery would fail. {user} and {sender} are fine.
account "single" {
  server       = "pop.example.com"
  username     = "joe"
  password_env = "PW"
  deliver {
    mda = ["/usr/bin/procmail", "-f", "{sender}", "-d", "{user}", "-a", "{address}"]
  }
  postmaster {
    mda = ["/usr/lib/dovecot/deliver", "-d", "{user}@{domain}"]
  }
}

account "multi" {
  server       = "pop.example.com"
  username     = "all"
  password_env = "PW"
  deliver {
    mda = ["/usr/bin/procmail", "-d", "{user}", "-a", "{address}", "-a", "{domain}"]
  }
  postmaster {
    mda = ["/usr/bin/procmail", "-d", "{user}", "-a", "{address}"]
  }
  multidrop {
    local_domains = ["example.com"]
    user "joe" {
      deliver {
        mda = ["/usr/lib/dovecot/deliver", "-d", "{address}"]
      }
    }
  }
}
