#!/bin/sh
# Test MDA: reads the first 4 KiB of its input and exits 0.
dd bs=4096 count=1 iflag=fullblock status=none > /dev/null
