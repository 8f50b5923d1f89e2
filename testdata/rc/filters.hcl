# filters.hcl: spam and virus filters on fetched mail. Every message goes
# through a private rspamd (its milter proxy) and clamav-milter before it
# is filed: both are told the client, HELO and envelope sender the
# provider's MX saw (the Received: field its MX wrote), so SPF, DNS
# blocklists and HELO checks judge the real sender, not popfetch. rspamd
# marks spam with X-Spam: Yes, which a rule files into Junk; a virus is
# rejected by clamav-milter and goes to the postmaster with the reason.

defaults {
  # The provider's MX writes "by mx.example.net" in its Received: field.
  trusted_received {
    by = "mx.example.net"
  }
  filter "rspamd" {
    milter = "inet:127.0.0.1:11332"
  }
  filter "clamav" {
    milter         = "unix:/run/clamav/clamav-milter.ctl"
    timeout        = "2m"
    on_unavailable = "tempfail"
  }
}

account "home" {
  server           = "pop.example.net"
  username         = "joe@example.net"
  password_command = ["pass", "show", "mail/example.net"]

  deliver {
    maildir = "~/Maildir"
  }
  postmaster {
    maildir = "~/Maildir"
    folder  = "Quarantine"
  }
  rule "spam" {
    header = "X-Spam"
    equals = "Yes"
    folder = "Junk"
  }
}

# A second mailbox with its own chain (so none of the defaults'):
# SpamAssassin through spamc, which marks spam with X-Spam-Flag. Only
# status 1 rejects; any other failure of spamc is a tempfail, and
# on_unavailable = "accept" then delivers unfiltered rather than wait.
account "work" {
  server           = "pop.example.com"
  username         = "joe@example.com"
  password_command = ["pass", "show", "mail/example.com"]

  deliver {
    maildir = "~/Maildir-work"
  }
  postmaster {
    maildir = "~/Maildir-work"
    folder  = "Quarantine"
  }
  trusted_received {
    position = 1
  }
  filter "spamassassin" {
    command           = ["/usr/bin/spamc", "-x"]
    timeout           = "30s"
    temp_exit_codes   = [75]
    reject_exit_codes = [1]
    on_unavailable    = "accept"
  }
  rule "spam" {
    header = "X-Spam-Flag"
    equals = "YES"
    folder = "Junk"
  }
}
