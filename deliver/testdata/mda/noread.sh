#!/bin/sh
# Test MDA: exits 0 without reading its input.
exit 0
