#!/usr/bin/env bash
# otp-root.sh RELEASE: prints the path of a Debian root that runs
# Erlang/OTP RELEASE (and its Elixir), making it first when it is missing.
#
# Newer OTP releases come from Debian's own later suites, unpacked with
# debootstrap (nothing is built): 27 is trixie, 29 is sid (unstable,
# moves daily). The root lives in a cache folder outside the work tree
# ($ERLNODE_OTP_CACHE, default /var/cache/erlnode/otp), so it is made once
# per machine and shared by every checkout. A root is complete only when
# its marker file exists: debootstrap writes into `<suite>.partial`, which
# is renamed when it succeeded, so an interrupted run is detected and the
# root is made again. Runs under flock: parallel checkouts wait for each
# other instead of racing.
#
# Needs root (debootstrap, chroot). Installs debootstrap with apt when it
# is missing.
set -euo pipefail

release=${1:?usage: otp-root.sh RELEASE (27 or 29)}
case "$release" in
  27) suite=trixie ;;
  29) suite=sid ;;
  *) echo "otp-root: no Debian suite known for OTP $release (known: 27 = trixie, 29 = sid)" >&2; exit 2 ;;
esac

cache=${ERLNODE_OTP_CACHE:-/var/cache/erlnode/otp}
root="$cache/$suite"
marker="$root/.erlnode-root-complete"

if [ -f "$marker" ]; then
  echo "$root"
  exit 0
fi

if [ "$(id -u)" != 0 ]; then
  echo "otp-root: making the OTP $release root needs root (debootstrap, chroot); run as root:" >&2
  echo "  sudo $0 $release" >&2
  exit 1
fi

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
if [ -f "$marker" ]; then  # made by another checkout while we waited
  echo "$root"
  exit 0
fi

if ! command -v debootstrap >/dev/null 2>&1; then
  echo "otp-root: installing debootstrap" >&2
  apt-get update >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y debootstrap >&2
fi

partial="$root.partial"
for dir in "$root" "$partial"; do
  # A half-made root: nothing may be mounted in it before it is removed.
  if [ -d "$dir" ]; then
    echo "otp-root: removing the incomplete root $dir" >&2
    grep -o " $dir/[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l || true
    rm -rf --one-file-system "$dir"
  fi
done

echo "otp-root: making the OTP $release root ($suite) in $root with debootstrap (about 30 s)" >&2
debootstrap --variant=minbase --include=erlang-nox,elixir "$suite" "$partial" >&2 ||
  { echo "otp-root: debootstrap $suite failed (see above); the partial root is removed on the next run" >&2; exit 1; }

got=$(chroot "$partial" env HOME=/tmp erl -noshell -eval 'io:put_chars(erlang:system_info(otp_release)), halt().')
if [ "$suite" != sid ] && [ "$got" != "$release" ]; then
  echo "otp-root: $suite installed OTP $got, expected $release" >&2
  exit 1
fi
echo "otp-root: $suite root has OTP $got" >&2
mv "$partial" "$root"
printf 'suite=%s otp=%s made=%s\n' "$suite" "$got" "$(date -u +%FT%TZ)" >"$marker"
echo "$root"
