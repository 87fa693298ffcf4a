#!/usr/bin/env bash
# Install the given Debian packages if any is missing; quiet and idempotent (no apt-get update when all
# are present). Runs as root; under CI there is no stdin, so everything is non-interactive.
set -euo pipefail
missing=()
for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "apt: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# --no-install-recommends keeps docker/podman from pulling a desktop's worth of extras.
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
