#!/usr/bin/env bash
# Makes a local stand-in for docker.io/library/debian:bookworm-slim, for machines that reach
# Debian's mirror but no container registry (this project's CI among them).
#
# The image is what Debian's own image builder makes: `debootstrap --variant=minbase bookworm`,
# then debuerreotype's "minimizing" apt/dpkg settings and its "slim" removals (docs, man pages,
# locales), with the deb822 sources of the published image. Two local additions, kept out of the
# Dockerfile: this machine's CA bundle (its network reaches the package index through a
# TLS-inspecting proxy) and PIP_CERT pointing at it, so that pip inside a build reaches PyPI.
#
# Does nothing when podman already has the image (the ~80 s are paid once per machine).
# STRONGROOM_BASE_REBUILD=1 replaces it. Needs root (debootstrap and podman's storage).
set -euo pipefail

IMAGE=docker.io/library/debian:bookworm-slim
SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
LOCAL_CAS=/usr/local/share/ca-certificates

say() { echo "base-image: $*" >&2; }

if [ "${STRONGROOM_BASE_REBUILD:-}" != 1 ] && podman image exists "$IMAGE"; then
  exit 0
fi

missing=()
for tool in debootstrap:debootstrap debuerreotype-slimify:debuerreotype podman:podman; do
  command -v "${tool%%:*}" >/dev/null || missing+=("${tool#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Two builds starting together (a developer and CI) make the image once.
exec 9>/var/tmp/strongroom-base-image.lock
flock 9
if [ "${STRONGROOM_BASE_REBUILD:-}" != 1 ] && podman image exists "$IMAGE"; then
  exit 0
fi

rootfs=$(mktemp -d /var/tmp/strongroom-base.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
started=$SECONDS
say "debootstrap --variant=minbase $SUITE from $MIRROR (about 80 s, once per machine)"
debootstrap --variant=minbase "$SUITE" "$rootfs" "$MIRROR" >"$rootfs.log" 2>&1 || {
  tail -n 30 "$rootfs.log" >&2
  say "debootstrap failed (full log: $rootfs.log)"
  exit 1
}
rm -f "$rootfs.log"

# What the published image has on top of a minbase system. (The helpers read the build's time
# from this file, as debuerreotype-init leaves it.)
date +%s >"$rootfs/debuerreotype-epoch"
debuerreotype-minimizing-config "$rootfs"
debuerreotype-slimify "$rootfs"
# The published image's sources (debuerreotype-debian-sources-list would ask snapshot.debian.org).
rm -f "$rootfs/etc/apt/sources.list"
cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<SOURCES
Types: deb
URIs: http://deb.debian.org/debian
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
rm -rf "$rootfs/debuerreotype-epoch" "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/cache/ldconfig/aux-cache \
  "$rootfs"/var/log/dpkg.log "$rootfs"/var/log/bootstrap.log "$rootfs"/var/log/alternatives.log
: >"$rootfs/etc/machine-id"

# This machine's trust roots: the bundle pip and apt use, and the local CAs that
# update-ca-certificates adds back if a build installs Debian's ca-certificates.
install -d "$rootfs/etc/ssl/certs" "$rootfs$LOCAL_CAS"
install -m 0644 "$CA_BUNDLE" "$rootfs$CA_BUNDLE"
if compgen -G "$LOCAL_CAS/*.crt" >/dev/null; then
  install -m 0644 "$LOCAL_CAS"/*.crt "$rootfs$LOCAL_CAS/"
fi

tar -C "$rootfs" --numeric-owner -c . | podman import \
  --change "ENV PIP_CERT=$CA_BUNDLE" \
  --change 'CMD ["bash"]' \
  --change "LABEL org.strongroom.base-stand-in=debootstrap-minbase-$SUITE" \
  --message "stand-in for $IMAGE: debootstrap --variant=minbase $SUITE, slimmed" \
  - "$IMAGE" >/dev/null
say "made $IMAGE in $((SECONDS - started)) s"
