# Mistakes inside nested blocks: values of the wrong type, a value whose
# evaluation fails, and blocks that may appear once given twice. Each is
# reported once at its own line; the first of two blocks still counts.
defaults {
  server       = "pop.example.com"
  password_env = "PW"
}

defaults {
  keep = true
}

account "shop" {
  username = "orders"
  ca_file  = env("POPFETCH_NOT_SET")
  deliver {
    smtp {
      server = "localhost:25"
      lmtp   = "yes"
    }
    smtp {
      server = "localhost:24"
    }
  }
  postmaster {
    maildir = "/var/mail/postmaster"
  }
  postmaster {
    maildir = 5
  }
  multidrop {
    local_domains  = "example.com"
    case_sensitive = "no"
    user "joe" {
      addresses = 5
      deliver {
        maildir = "/var/mail/joe"
      }
      deliver {
        maildir = "/var/mail/joe2"
      }
    }
  }
}
