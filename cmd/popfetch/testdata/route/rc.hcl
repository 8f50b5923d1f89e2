state_dir = "STATE"
account "corp" {
  server   = "pop.example.com"
  username = "catchall@example.com"
  password = "x"
  deliver {
    maildir = "/var/mail/{domain}/{user}"
  }
  postmaster {
    maildir = "/var/mail/postmaster"
  }
  multidrop {
    local_domains   = ["example.com"]
    envelope_header = "Delivered-To"
    user "joe" {
      addresses = ["joe", "jo"]
    }
    user "ann" {
      addresses = ["ann", "sales"]
      deliver {
        mda = ["/usr/bin/procmail", "-d", "{user}"]
      }
    }
  }
}

# A second multidrop account: --route needs --account then.
account "other" {
  server   = "pop.example.net"
  username = "all@example.net"
  password = "x"
  deliver {
    maildir = "/var/mail/net/{user}"
  }
  multidrop {
    local_domains   = ["example.net"]
    envelope_header = ""
    user "zed" {
      addresses = ["zed"]
    }
  }
}
