#!/bin/sh
# Test MDA: reads its input with pread(2) only, as dovecot-lda does with a
# regular file, leaving the shared offset at 0; exits 0.
exec python3 -c 'import os, sys; sys.exit(0 if len(os.pread(0, 1 << 24, 0)) > 0 else 1)'
