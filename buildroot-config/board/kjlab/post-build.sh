#!/bin/sh
# Buildroot post-build: the lab's /init (from the overlay) is PID 1; the freestanding
# guest programs (guests/progs) are built on the host by the lab, not here.
set -e
TARGET_DIR="$1"
chmod 0755 "$TARGET_DIR/init" "$TARGET_DIR"/bin/kj-*
