# multidrop-openldap.hcl: a domain whose users are inetOrgPerson entries in
# OpenLDAP. The catch-all mailbox is split by the directory: each entry's
# mail routes to /var/vmail/UID/Maildir, and the address of a groupOfNames
# (its mail attribute) to every member. The server is reached on port 389
# with StartTLS, which popfetch requires; it has its own CA.

state_dir = "/var/lib/popfetch"

account "example.org" {
  server        = "pop.provider.example"
  username      = "catchall@example.org"
  password_file = "/etc/popfetch/example.org.password"

  deliver {
    maildir = "/var/vmail/{user}/Maildir"
  }

  postmaster {
    maildir = "/var/vmail/postmaster/Maildir"
  }

  multidrop {
    local_domains = ["example.org"]

    ldap {
      url                = "ldap://ldap.example.org" # StartTLS
      ca_file            = "/etc/popfetch/example-org-ca.pem"
      bind_dn            = "cn=popfetch,ou=services,dc=example,dc=org"
      password_file      = "/etc/popfetch/ldap.password"
      base_dn            = "dc=example,dc=org"
      filter             = "(&(objectClass=inetOrgPerson)(mail=*))"
      user_attribute     = "uid"
      address_attributes = ["mail"]
      groups             = true
      group_filter       = "(objectClass=groupOfNames)"
      member_attribute   = "member"
      refresh            = "10m"
      grace              = "2h"
      timeout            = "20s"
      max_entries        = 20000
    }
  }
}
