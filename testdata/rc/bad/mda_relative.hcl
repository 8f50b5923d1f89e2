# An MDA found through $PATH: it must be an absolute path.
account "a" {
  server       = "pop.example.com"
  username     = "joe"
  password_env = "PW"
  deliver {
    mda = ["procmail", "-d", "joe"]
  }
}
