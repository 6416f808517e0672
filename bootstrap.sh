#!/usr/bin/env bash
# Sets up everything kjlab needs on a Debian 12 machine: host packages through apt,
# then a Python virtual environment (.venv) with the package and its test deps.
# Idempotent: a second run checks and returns quickly.
set -euo pipefail
cd "$(dirname "$0")"

PACKAGES=(
  qemu-system-x86 e2fsprogs cpio xz-utils gzip patch gdb ccache
  make gcc libc6-dev bc flex bison libelf-dev libssl-dev
  kexec-tools
  gcc-i686-linux-gnu libc6-dev-i386-cross rsync  # [guest] recipe = "buildroot": its toolchain, and Buildroot's needs
  autoconf automake libtool  # the Buildroot recipe's offline sources: git exports without configure
  dpkg-dev  # dpkg-source -x: kexec-tools from Debian's source package ([kexec_tools], lab.artifacts.kexec_tools)
  python3 python3-venv python3-pip git ca-certificates chromium
)
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "bootstrap: installing ${missing[*]}"
  # kexec-tools is here for its host tool vmcore-dmesg (kernel logs read from guest
  # memory); it must not take over this machine's own reboots.
  echo "kexec-tools kexec-tools/load_kexec boolean false" | $SUDO debconf-set-selections
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
elif [ ! -d /var/lib/apt/lists ] || [ -z "$(ls /var/lib/apt/lists/*_Packages 2>/dev/null | head -n 1)" ]; then
  $SUDO apt-get update -q  # apt-cache needs the lists to find linux-source
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if ! .venv/bin/python -c "import lab, qemu.qmp, pexpect, jinja2, elftools, numpy, rich, pytest, tomli_w, kcidb_io, pygdbmi, mypy, distributed, fsspec" 2>/dev/null; then
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e ".[test]"
fi
echo "bootstrap: ready (.venv/bin/kjlab)"
