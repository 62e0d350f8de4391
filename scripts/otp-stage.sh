#!/usr/bin/env bash
# otp-stage.sh ROOT ERLNODE_BIN: copies what the interop suites need into
# the OTP root ROOT (made by otp-root.sh) and compiles the Elixir library
# there with that root's own Elixir (BEAM files compiled by OTP 25 are not
# guaranteed to load on later releases). Prints the stage folder, as a
# path on the host.
#
# A node started in the root sees only files inside it, so the stage holds
# the Mix project (`erlang/`), the vectors its tests read (`tests/vectors`)
# and a copy of the `erlnode` binary for the ExUnit suite. One stage per
# checkout (named after a hash of its path), so checkouts never clobber
# each other; Mix's build folder is kept between runs, so a rerun only
# recompiles what changed.
#
# otp-stage.sh --path ROOT prints the stage folder without touching it.
set -euo pipefail

usage="usage: otp-stage.sh ROOT ERLNODE_BIN | otp-stage.sh --path ROOT"
path_only=false
if [ "${1:-}" = --path ]; then path_only=true; shift; fi
root=${1:?$usage}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
id=$(printf '%s' "$repo" | md5sum | cut -c1-12)
inside="/erlnode-stage/$id"
stage="$root$inside"
if $path_only; then echo "$stage"; exit 0; fi
bin=${2:?$usage}
[ -f "$root/.erlnode-root-complete" ] || { echo "otp-stage: $root is not a complete OTP root (scripts/otp-root.sh)" >&2; exit 1; }
[ -x "$bin" ] || { echo "otp-stage: $bin is not built (cargo build --bins)" >&2; exit 1; }

mkdir -p "$stage/erlang" "$stage/tests" "$stage/bin"
# Sources are replaced whole (a file deleted here must vanish there too);
# erlang/_build stays for incremental compiles.
rm -rf "$stage/erlang/lib" "$stage/erlang/test" "$stage/erlang/demo" "$stage/tests/vectors"
cp -a "$repo/erlang/lib" "$repo/erlang/test" "$repo/erlang/demo" "$repo/erlang/mix.exs" "$stage/erlang/"
cp -a "$repo/tests/vectors" "$stage/tests/"
cp "$bin" "$stage/bin/erlnode"

echo "otp-stage: compiling erlang/ with $(chroot "$root" env HOME=/tmp elixir --version | tail -1)" >&2
chroot "$root" env -i PATH=/usr/bin:/bin HOME=/tmp LANG=C.UTF-8 MIX_ENV=test HEX_OFFLINE=1 \
  MIX_HOME="$inside/erlang/_build/mix_home" HEX_HOME="$inside/erlang/_build/hex_home" \
  sh -c "cd '$inside/erlang' && mix compile" >&2
echo "$stage"
