#!/bin/bash
# usage: mpop-run.sh [keep|delete]: one mpop run over the whole bench mailbox (see README.md)
W=/tmp/popbench/mpw; rm -rf $W; mkdir -p $W/Maildir/{cur,new,tmp} $W/home
KEEP=on; [[ ${1:-keep} == delete ]] && KEEP=off
TLSCONF="tls off"; [[ -n ${TLS:-} ]] && TLSCONF="tls on
tls_starttls off
tls_trust_file /tmp/popbench/tls/ca.crt" && : ${PORT:=11995}
cat > $W/mpoprc <<H
account bench
host 127.0.0.1
port ${PORT:-11110}
timeout 120
$TLSCONF
auth user
user bench
password bench
delivery maildir $W/Maildir
keep $KEEP
only_new off
uidls_file $W/home/mpop_uidls
H
chown -R popbench $W; chmod 600 $W/mpoprc
su popbench -s /bin/bash -c "HOME=$W/home /usr/bin/time -f '%e s wall %U user %S sys %M KB' mpop -C $W/mpoprc -q bench" 2>&1 | tail -2
ls $W/Maildir/new | wc -l
