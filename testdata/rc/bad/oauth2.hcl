# Bad oauth2 blocks: each error points at file:line:col.
defaults {
  deliver {
    maildir = "~/Maildir"
  }
}

account "noprovider" {
  server   = "outlook.office365.com"
  username = "user1"
  oauth2 {
    client_id = "x"
  }
}

account "badvalues" {
  server   = "outlook.office365.com"
  username = "user2"
  oauth2 {
    provider  = "azure"
    client_id = "x"
  }
}

account "plainhttp" {
  server   = "pop.example.com"
  username = "user3"
  oauth2 {
    provider      = "generic"
    client_id     = "x"
    client_secret = "s3cr3t-never-shown"
    scopes        = ["pop", "bad scope"]
    token_url     = "http://idp.example.com/token"
    auth_url      = "https://user:pw@idp.example.com/auth"
    flow          = "implicit"
  }
}

account "google-device" {
  server   = "pop.gmail.com"
  username = "user4"
  oauth2 {
    provider  = "google"
    client_id = "x"
    flow      = "device"
    tenant    = "common"
    token_url = "https://example.com/token"
  }
}

account "two-sources" {
  server               = "pop.example.com"
  username             = "user5"
  oauth2_token_command = ["bin/token"]
  oauth2 {
    provider           = "microsoft"
    client_id          = "x"
    client_secret      = "a"
    client_secret_file = "/etc/secret"
    flow               = "client_credentials"
  }
}

account "generic-missing" {
  server   = "pop.example.com"
  username = "user6"
  oauth2 {
    provider  = "generic"
    client_id = "x"
    flow      = "device"
  }
}

account "nothing" {
  server   = "pop.example.com"
  username = "user7"
}
