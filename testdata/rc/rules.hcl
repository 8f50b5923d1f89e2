# rules.hcl: filing rules and Maildir++ folders. The provider's spam and
# virus filters mark each message in its header; popfetch files spam into
# the Junk folder, a mailing list into its own folder, and gives infected
# mail to the postmaster as a quarantine. Everything else lands in the
# inbox. Folders are written as a mail reader shows them ("Lists.dev" is
# the Maildir++ directory .Lists.dev) and are created when first used.

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

  # Rules are evaluated in order; the first that matches decides.
  rule "virus" {
    header     = "X-Virus-Status"
    contains   = "infected"
    postmaster = "virus found by the provider's scanner"
  }
  rule "spam" {
    header = "X-Spam-Flag"
    equals = "YES"
    folder = "Junk"
  }
  rule "dev-list" {
    header  = "List-Id"
    matches = "(?i)<dev\\.lists\\.example\\.org>$"
    folder  = "Lists.dev"
  }
}
