# OAuth2 sign-in: Microsoft 365 with the device flow (popfetch login),
# Gmail with the browser flow, a whole domain app-only, and a helper that
# prints the token.
defaults {
  deliver {
    maildir = "~/Maildir"
  }
}

account "work" {
  server   = "outlook.office365.com"
  username = "joe@contoso.com"
  oauth2 {
    provider  = "microsoft"
    client_id = "00001111-aaaa-2222-bbbb-3333cccc4444"
    tenant    = "contoso.onmicrosoft.com"
  }
}

account "gmail" {
  server   = "pop.gmail.com"
  username = "joe@gmail.com"
  oauth2 {
    provider           = "google"
    client_id          = "1234-abc.apps.googleusercontent.com"
    client_secret_file = "~/.config/popfetch/google-secret"
  }
}

account "domain" {
  server   = "outlook.office365.com"
  username = "sales@contoso.com"
  oauth2 {
    provider           = "microsoft"
    client_id          = "00001111-aaaa-2222-bbbb-3333cccc4444"
    client_secret_file = "/etc/popfetch/contoso-app-secret"
    tenant             = "aaaabbbb-0000-cccc-1111-dddd2222eeee"
    flow               = "client_credentials"
  }
}

account "helper" {
  server               = "pop.example.com"
  username             = "joe"
  oauth2_token_command = ["oama", "access", "joe@example.com"]
}
