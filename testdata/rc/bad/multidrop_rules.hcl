# Multidrop settings that cannot work: an invalid IDN, an unknown envelope
# header, Received without received_by, no recipients at all.
account "a" {
  server       = "pop.example.com"
  username     = "all"
  password_env = "PW"
  deliver {
    maildir = "/var/vmail/{user}"
  }
  multidrop {
    local_domains    = ["example.com", "xn--a.example", "bad domain"]
    envelope_header  = "Return-Path"
    fallback_headers = ["To", "From"]
    detail_delimiter = "++"
  }
}

account "b" {
  server       = "pop.example.org"
  username     = "all"
  password_env = "PW"
  deliver {
    maildir = "/var/vmail/shared"
  }
  multidrop {
    local_domains   = ["example.org"]
    envelope_header = "received"
    envelope_count  = 0
    user "joe" {}
  }
}
