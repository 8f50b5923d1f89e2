#!/bin/bash
# usage: popfetch-run.sh [BIN] [keep|delete]: one popfetch fetch of the whole bench mailbox (see README.md)
BIN=${1:-/tmp/popbench/bin/popfetch}; KEEP=true; [[ ${2:-keep} == delete ]] && KEEP=false
TLSCONF='tls = "none"'; [[ -n ${TLS:-} ]] && TLSCONF='tls = "implicit"
  ca_file = "/tmp/popbench/tls/ca.crt"' && : ${PORT:=11995}
W=${WDIR:-/tmp/popbench/pbw}; rm -rf $W; mkdir -p $W/Maildir/{cur,new,tmp} $W/home
cat > $W/popfetch.hcl <<H
account "bench" {
  server = "127.0.0.1"
  port = ${PORT:-11110}
  $TLSCONF
  username = "bench"
  password = "bench"
  keep = $KEEP
  fetch_all = true
  deliver { maildir = "$W/Maildir" }
}
state_dir = "$W/home"
H
chown -R popbench $W; chmod 600 $W/popfetch.hcl
cd $W && su popbench -s /bin/bash -c "HOME=$W/home $ENVX ${WRAP:-} /usr/bin/time -f '%e s wall %U user %S sys %M KB' $BIN fetch --config $W/popfetch.hcl $EXTRA" 2>&1 | tail -${TAILN:-3}
ls $W/Maildir/new | wc -l
