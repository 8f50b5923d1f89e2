#!/bin/bash
# usage: big-message.sh MB: the bench mailbox then holds one generated MB-megabyte message
MB=$1; D=/tmp/popbench/mail/bench/Maildir
rm -rf $D; mkdir -p $D/{cur,new,tmp}
python3 - "$MB" "$D/new/1700000000.big.vm" <<'PY'
import sys, random
mb=int(sys.argv[1]); out=open(sys.argv[2],'w')
random.seed(1)
out.write("Return-Path: <big@example.org>\nFrom: big@example.org\nTo: bench@example.org\nSubject: big\nMessage-ID: <big@example.org>\n\n")
n=0; target=mb*1000*1000
words=["alpha","beta","gamma",".dot","..two","From here","x"*200]
while n<target:
    l=" ".join(random.choice(words) for _ in range(random.randint(1,12)))
    if random.random()<0.01: l="."
    out.write(l+"\n"); n+=len(l)+1
PY
chown -R popbench:popbench $D
/tmp/popbench/bin/benchtool pop3 -addr 127.0.0.1:11110 -user bench -pass bench -warm
