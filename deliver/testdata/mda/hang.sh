#!/bin/sh
# Test MDA: forks a sleeping helper (as procmail forks), records its pid in
# $OUT/child, and never finishes. Only a process-group kill ends both.
sleep 60 &
echo $! > "$OUT/child.tmp" && mv "$OUT/child.tmp" "$OUT/child"
wait
