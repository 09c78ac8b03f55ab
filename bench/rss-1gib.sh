#!/usr/bin/env bash
# Peak RSS of the gateway (release build, local provider) across a 1 GiB
# encrypted upload and download through s3s-fs. Prints VmHWM before/after.
#   usage: bench/rss-1gib.sh [SIZE_MIB]   (needs s3s-fs, aws cli, a release build)
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${1:-1024}
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
BP=$(free_port); GP=$(free_port); AP=$(free_port)
mkdir -p "$WORK/s3/bench"
s3s-fs --host 127.0.0.1 --port "$BP" --access-key bk --secret-key bs "$WORK/s3" >/dev/null 2>&1 &
cat > "$WORK/cfg.yaml" <<YAML
server: {listen: "127.0.0.1:$GP", admin_listen: "127.0.0.1:$AP", threads: 2}
storage: {s3: {endpoint: "http://127.0.0.1:$BP", credentials: {access_key_id: bk, secret_access_key: bs}}}
auth: {clients: [{access_key_id: ck, secret_access_key: cs, buckets: ["*"]}]}
encryption: {local: {master_key: YmVuY2g=}}
logging: {level: warn}
YAML
target/release/sealgate run -c "$WORK/cfg.yaml" 2>/dev/null &
GW=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$AP/readyz" >/dev/null && break; sleep 0.1; done
printf '[default]\ns3 =\n    multipart_threshold = 8GB\n' > "$WORK/awscfg"
export AWS_ACCESS_KEY_ID=ck AWS_SECRET_ACCESS_KEY=cs AWS_DEFAULT_REGION=us-east-1 AWS_CONFIG_FILE="$WORK/awscfg"
head -c $((SIZE_MIB * 1024 * 1024)) /dev/urandom > "$WORK/in.bin"
hwm() { awk '/VmHWM/ {print $2" "$3}' "/proc/$GW/status"; }
echo "gateway VmHWM after start:    $(hwm)"
aws --endpoint-url "http://127.0.0.1:$GP" s3 cp --only-show-errors "$WORK/in.bin" s3://bench/big
echo "gateway VmHWM after upload:   $(hwm)"
aws --endpoint-url "http://127.0.0.1:$GP" s3 cp --only-show-errors s3://bench/big "$WORK/out.bin"
echo "gateway VmHWM after download: $(hwm)"
cmp "$WORK/in.bin" "$WORK/out.bin" && echo "round trip: identical (${SIZE_MIB} MiB)"
echo "stored bytes: $(stat -c %s "$WORK/s3/bench/big") (plaintext $((SIZE_MIB * 1024 * 1024)))"
