#!/usr/bin/env bash
# Builds the repository's Dockerfile, unchanged, where no container registry can be reached: first
# makes local stand-ins for the base images it names (same names, same layout): the Deno "bin"
# image (`/deno` alone) from the `deno` binary of the npm package, and distroless "cc" (glibc and
# libgcc, an /etc/passwd with `nonroot` = 65532, CA certificates) from the libraries `ldd` lists.
#
# usage: deploy/docker/build-local.sh [TAG]     (default gregormq:local; root and buildah needed)
#   DENO_BIN=/path/to/deno  the deno binary to put in the stand-in (default: the one on PATH)
#   REBUILD_BASES=1         remake the stand-ins even if images of those names exist
set -euo pipefail
cd "$(dirname "$0")/../.."
tag=${1:-gregormq:local}

deno_version=$(sed -n 's/^ARG DENO_VERSION=//p' Dockerfile)
deno_bin=$(readlink -f "${DENO_BIN:-$(command -v deno)}")
have=$("$deno_bin" --version | sed -n 's/^deno \([0-9.]*\).*/\1/p')
if [ "$have" != "$deno_version" ]; then
  echo "build-local: $deno_bin is deno $have but the Dockerfile names $deno_version;" \
    "set DENO_BIN to a deno $deno_version binary (npm package deno@$deno_version)" >&2
  exit 2
fi

deno_image=docker.io/denoland/deno:bin-$deno_version
cc_image=gcr.io/distroless/cc-debian12
exists() { buildah inspect --type image "$1" >/dev/null 2>&1; }

work=$(mktemp -d)
ctrs=()
cleanup() {
  for c in "${ctrs[@]}"; do buildah rm "$c" >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT

if [ "${REBUILD_BASES:-}" = 1 ] || ! exists "$deno_image"; then
  c=$(buildah from scratch)
  ctrs+=("$c")
  buildah copy --quiet "$c" "$deno_bin" /deno >/dev/null
  buildah config --entrypoint '["/deno"]' "$c"
  buildah commit --quiet "$c" "$deno_image" >/dev/null
  echo "build-local: made $deno_image from $deno_bin"
fi

if [ "${REBUILD_BASES:-}" = 1 ] || ! exists "$cc_image:latest" || ! exists "$cc_image:nonroot"; then
  root=$work/rootfs
  mkdir -p "$root/etc/ssl/certs" "$root/tmp" "$root/home/nonroot" "$root/root"
  chmod 1777 "$root/tmp"
  # Every library the deno binary loads, at the path the dynamic loader looks for it.
  for lib in $(ldd "$deno_bin" | grep -o '/[^ ]*'); do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
  cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
  printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' \
    'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin' \
    'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >"$root/etc/passwd"
  printf '%s\n' 'root:x:0:' 'nobody:x:65534:' 'nonroot:x:65532:' >"$root/etc/group"
  echo 'hosts: files dns' >"$root/etc/nsswitch.conf"
  chown 65532:65532 "$root/home/nonroot"
  for variant in latest nonroot; do
    c=$(buildah from scratch)
    ctrs+=("$c")
    buildah copy --quiet "$c" "$root" / >/dev/null
    buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
      --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt "$c"
    if [ "$variant" = nonroot ]; then
      buildah config --user 65532:65532 --workingdir /home/nonroot "$c"
    else
      buildah config --user 0:0 --workingdir / "$c"
    fi
    buildah commit --quiet "$c" "$cc_image:$variant" >/dev/null
  done
  echo "build-local: made $cc_image:latest and :nonroot from the libraries of $deno_bin"
fi

# Docker format keeps the HEALTHCHECK (the OCI format has no field for it); layers make a rebuild
# with unchanged sources reuse the dependency cache.
# The stand-in holds this machine's CA bundle, so a proxy this machine trusts is trusted in the build.
buildah bud --quiet --format docker --layers --pull-never --build-arg DENO_TLS_CA_STORE=system \
  -t "$tag" -f Dockerfile . >/dev/null
echo "build-local: built $tag"
