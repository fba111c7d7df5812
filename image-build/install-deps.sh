#!/usr/bin/env bash
# Installs the Debian packages vm-bench (tools/vm-bench) uses on the host:
# QEMU, static busybox, kmod (depmod), e2fsprogs (mke2fs -d), cryptsetup,
# openssl, xz. Idempotent. The kernel itself is not installed: vm-bench
# unpacks it with `dpkg-deb -x` into its cache; it needs apt's lists, so
# this runs `apt-get update` when they are empty.
set -euo pipefail

packages=(qemu-system-x86 busybox-static kmod e2fsprogs cryptsetup-bin openssl xz-utils)

sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
export DEBIAN_FRONTEND=noninteractive

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ] || ! apt-cache show linux-image-amd64 >/dev/null 2>&1; then
  "${sudo_cmd[@]}" apt-get update -qq
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
