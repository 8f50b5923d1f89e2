# procmail.hcl: single-drop delivery through procmail, which sorts mail
# with the user's ~/.procmailrc. procmail runs without a shell; {user} is
# one argv element. Messages procmail refuses permanently go to the
# postmaster Maildir instead of staying on the server forever.

account "work" {
  server       = "pop.work.example"
  username     = "joe"
  password_env = "WORK_MAIL_PASSWORD"

  deliver {
    mda         = ["/usr/bin/procmail", "-d", "{user}"]
    mda_timeout = "2m"
  }

  postmaster {
    maildir = "/var/mail/postmaster/Maildir"
  }
}
