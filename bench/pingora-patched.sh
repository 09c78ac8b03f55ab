#!/usr/bin/env bash
# Builds sealgate and the bench's bare proxy against pingora-core 0.9.1 with
# the body-path change proposed in docs/PINGORA-BODY-PATH.md, for measuring
# it beside the normal build:
#
#   bench/pingora-patched.sh
#   target/release/sealgate-bench --sealgate target/pingora-patched/release/sealgate \
#       --before target/release/sealgate
#
# The patch (bench/pingora/body-path.patch, ours) is applied to a copy of
# the registry's pingora-core 0.9.1 in target/ (git-ignored) and wired in
# with a Cargo `[patch]` given on the command line only, into a separate
# target directory: the workspace's Cargo.toml, Cargo.lock and normal
# builds never see it once it is done. Cargo.lock is restored on exit (a
# path patch rewrites pingora-core's entry): while it builds, a parallel
# `cargo --locked` build of the workspace would fail; after a SIGKILL, run
# `git checkout Cargo.lock`.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SRC=$(cargo metadata --format-version 1 --locked \
  | python3 -c 'import json,sys; print(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"] == "pingora-core"))')
SRC=$(dirname "$SRC")
case "$SRC" in */pingora-core-0.9.1) ;; *) echo "expected pingora-core 0.9.1, found $SRC" >&2; exit 1 ;; esac
DEST=$ROOT/target/pingora-core-patched
rm -rf "$DEST"
mkdir -p "$ROOT/target"
cp -r "$SRC" "$DEST"
patch -s -p1 -d "$DEST" < "$ROOT/bench/pingora/body-path.patch"
cp Cargo.lock target/Cargo.lock.unpatched
trap 'cp "$ROOT/target/Cargo.lock.unpatched" "$ROOT/Cargo.lock"' EXIT
CARGO_TARGET_DIR=$ROOT/target/pingora-patched cargo build --release -p sealgate -p sealgate-bench \
  --config "patch.crates-io.pingora-core.path=\"$DEST\""
echo "patched binaries: target/pingora-patched/release/{sealgate,bare-proxy}"
