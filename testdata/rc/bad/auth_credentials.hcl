# The mechanism auth names must have its credential: XOAUTH2 and
# OAUTHBEARER an OAuth2 token source, the others a password.
account "token-less" {
  server       = "pop.example.com"
  username     = "joe"
  password_env = "PW"
  auth         = "xoauth2"
  deliver {
    maildir = "/var/mail/joe/"
  }
}
account "bearer-less" {
  server       = "pop.example.com"
  username     = "jim"
  password_env = "PW"
  auth         = "OAUTHBEARER"
  deliver {
    maildir = "/var/mail/jim/"
  }
}
account "password-less" {
  server               = "pop.example.com"
  username             = "ann"
  oauth2_token_command = ["oama", "access", "ann@example.com"]
  auth                 = "scram-sha-256"
  deliver {
    maildir = "/var/mail/ann/"
  }
}
account "plain-oauth2" {
  server   = "outlook.office365.com"
  username = "bob@example.com"
  auth     = "plain"
  oauth2 {
    provider  = "microsoft"
    client_id = "00000000-0000-0000-0000-000000000000"
  }
  deliver {
    maildir = "/var/mail/bob/"
  }
}
