# ldap.hcl: the mistakes of a first ldap block, each reported at its line.
account "example.com" {
  server        = "pop.provider.example"
  username      = "catchall@example.com"
  password_file = "/etc/popfetch/example.com.password"
  deliver {
    maildir = "/var/vmail/{user}"
  }
  multidrop {
    local_domains = ["example.com"]
    ldap {
      url                = "ldaps://dc1.example.com/DC=example,DC=com?sAMAccountName"
      bind_dn            = "CN=popfetch,OU=Service,DC=example,DC=com"
      base_dn            = "example.com"
      filter             = "(&(objectClass=user)(mail=*)"
      user_attribute     = "sAMAccount Name"
      address_attributes = ["mail", "proxyAddresses", "Mail"]
      member_attribute   = "member"
      refresh            = "30s"
      grace              = "30d"
      timeout            = "1h"
      max_entries        = 0
    }
  }
}
