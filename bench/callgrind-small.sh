#!/usr/bin/env bash
# Instructions the gateway executes per small request, counted by callgrind
# (repeatable, unlike CPU time on a shared machine). Runs the gateway under
# callgrind in front of s3s-fs, sends N iterations of 1 KiB requests with
# boto3, and prints the total; run it for two N and take the difference per
# iteration, so start-up and shutdown cancel out.
#
#   bench/callgrind-small.sh BINARY N [pass-through|reads|encrypting|bare|sigv4]
#
# pass-through: one PutObject per iteration; reads: PutObject, GetObject and
# HeadObject per iteration, passing through; encrypting: the same three with
# the `local` provider; bare: BINARY is the
# bench's `bare-proxy` (Pingora with only an upstream peer), one PutObject
# per iteration signed for the backend, the framework's own floor.
# sigv4: BINARY is the bench's `sigv4-proxy` (the bare proxy plus the client's
# signature checked and the request re-signed), PUT, GET and HEAD per
# iteration like `reads`: the floor of a re-signing proxy.
# ONLY=put|get|head (reads, encrypting, sigv4): 50 objects written first,
# then only that operation per iteration, for one operation's count.
set -euo pipefail
BIN=$1; N=$2; MODE=${3:-pass-through}
case "${ONLY:-}" in "" | put | get | head) ;; *) echo "ONLY is put, get or head" >&2; exit 2 ;; esac
D=$(mktemp -d); mkdir -p "$D/s3/demo"
trap 'rm -rf "$D"' EXIT
free() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
SP=$(free); GP=$(free)
s3s-fs --host 127.0.0.1 --port "$SP" --access-key UPK --secret-key UPSECRET123 "$D/s3" >/dev/null 2>&1 &
S3PID=$!
ENC=""
[ "$MODE" = encrypting ] && ENC="encryption: {local: {master_key: YmVuY2gta2V5}}"
cat > "$D/cfg.yaml" <<Y
server: {listen: "127.0.0.1:$GP", threads: 1}
storage: {s3: {endpoint: "http://127.0.0.1:$SP", credentials: {access_key_id: UPK, secret_access_key: UPSECRET123}}}
auth: {clients: [{access_key_id: bench, secret_access_key: benchsecret, buckets: ["*"]}]}
logging: {level: error}
$ENC
Y
KEY=bench; SECRET=benchsecret; ARGS=(run --config "$D/cfg.yaml")
if [ "$MODE" = bare ]; then KEY=UPK; SECRET=UPSECRET123; ARGS=("127.0.0.1:$GP" "127.0.0.1:$SP" 1); fi
if [ "$MODE" = sigv4 ]; then ARGS=("127.0.0.1:$GP" "127.0.0.1:$SP" 1 "$KEY" "$SECRET" UPK UPSECRET123); fi
valgrind --tool=callgrind --callgrind-out-file="$D/cg.out" "$BIN" "${ARGS[@]}" >/dev/null 2>&1 &
GPID=$!
for _ in $(seq 1 600); do (echo > "/dev/tcp/127.0.0.1/$GP") 2>/dev/null && break; sleep 0.2; done
AWS_ACCESS_KEY_ID=$KEY AWS_SECRET_ACCESS_KEY=$SECRET AWS_DEFAULT_REGION=us-east-1 \
ONLY=${ONLY:-} python3 - "$GP" "$N" "$MODE" <<'P'
import sys, boto3
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{sys.argv[1]}",
                  config=Config(request_checksum_calculation="when_required",
                                response_checksum_validation="when_required"))
import os
only = os.environ["ONLY"]
if only:
    for i in range(50):
        s3.put_object(Bucket="demo", Key=f"k{i}", Body=b"x" * 1024)
for i in range(int(sys.argv[2])):
    key = f"k{i % 50}"
    if only in ("", "put"):
        s3.put_object(Bucket="demo", Key=key, Body=b"x" * 1024)
    if only == "get" or (not only and sys.argv[3] in ("reads", "encrypting", "sigv4")):
        s3.get_object(Bucket="demo", Key=key)["Body"].read()
    if only == "head" or (not only and sys.argv[3] in ("reads", "encrypting", "sigv4")):
        s3.head_object(Bucket="demo", Key=key)
P
kill -TERM "$GPID"; wait "$GPID" || true
kill "$S3PID" || true
echo "$MODE N=$N instructions: $(grep -E '^summary:' "$D/cg.out" | cut -d' ' -f2)"
# CG_OUT=FILE keeps the profile for callgrind_annotate.
if [ -n "${CG_OUT:-}" ]; then cp "$D/cg.out" "$CG_OUT"; fi
