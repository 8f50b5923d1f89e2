#!/bin/sh
# Test MDA: reads the first $FIRST 4 KiB blocks of its input into
# $OUT/stdin, creates $OUT/started, waits for $OUT/go, reads the rest and
# creates $OUT/done. Its pid is in $OUT/pid.
echo $$ > "$OUT/pid"
dd bs=4096 count="$FIRST" iflag=fullblock status=none > "$OUT/stdin"
touch "$OUT/started"
while [ ! -e "$OUT/go" ]; do sleep 0.01; done
cat >> "$OUT/stdin"
touch "$OUT/done"
