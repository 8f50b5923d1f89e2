# A SHA-1 fingerprint (40 digits) where SHA-256 of the SPKI is needed.
account "a" {
  server          = "pop.example.com:995"
  username        = "joe"
  password_env    = "PW"
  tls_fingerprint = "sha1:AD:3F:4E:70:63:9B:32:5F:64:D3:E5:B6:38:6A:76:21:F3:B6:CA:9E"
  deliver {
    maildir = "/var/mail/joe"
  }
}
