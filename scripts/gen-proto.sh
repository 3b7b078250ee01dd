#!/usr/bin/env bash
# Regenerates the typed TypeScript code for the protos (committed under node/gen/).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v protoc >/dev/null || { echo "protoc not found: apt-get install -y protobuf-compiler" >&2; exit 1; }
out=node/gen
rm -rf "$out" && mkdir -p "$out"
protoc \
  --plugin=protoc-gen-ts_proto=./node_modules/.bin/protoc-gen-ts_proto \
  --ts_proto_out="$out" \
  --ts_proto_opt=outputServices=grpc-js,esModuleInterop=true,importSuffix=.js,forceLong=number,oneof=unions,env=node,useExactTypes=false \
  -I proto proto/shardbank/v1/*.proto proto/grpc/health/v1/health.proto
# 64-bit integer fields: fast paths for small values (node/util/proto-int64.ts).
node scripts/fast-int64.mjs $(find "$out" -name '*.ts')
echo "generated into $out"
