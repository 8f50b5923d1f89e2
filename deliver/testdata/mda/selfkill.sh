#!/bin/sh
# Test MDA: reads stdin, then dies by SIGKILL.
cat > /dev/null
kill -KILL $$
