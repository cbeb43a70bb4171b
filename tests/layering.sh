#!/usr/bin/env bash
# The layers include only downwards: net/ (the loop) knows nothing of the
# protocol, the sessions or the stores; proto/ knows nothing of sockets or
# sessions; ws/ (the WebSocket framing) knows the loop's interfaces, not
# the protocol it carries or the gateway above it; the gateway does not know
# which transport carries a session; im/ (the IM core) knows neither the
# wire protocol, nor the gateway or the HTTP API above it, nor io_uring, nor which store engine
# runs, nor Redis or the other nodes (cluster/ implements im/cluster.h);
# RocksDB appears in its engine only, hiredis in redis/, the Redis engine and
# cluster/, libcurl in the two HTTP clients (webhook/, datasource/), which the
# IM core sees only as interfaces.
# unit_loop links net/ alone; this catches a header-only include that no
# link would.
set -euo pipefail
root=${1:?usage: layering.sh SOURCE_DIR}
cd "$root"
status=0
check() {  # check LAYER FORBIDDEN_REGEX DIRS...
    local layer=$1 forbidden=$2
    shift 2
    local hits
    hits=$(grep -rnE "#include \"limaoim/($forbidden)/" "$@" || true)
    if [ -n "$hits" ]; then
        echo "layering: $layer includes what it must not know:"
        echo "$hits"
        status=1
    fi
}
check net 'proto|gateway|im|store|http|config|ws' include/limaoim/net src/net
check proto 'net|gateway|im|store|http|config' include/limaoim/proto src/proto
check stats 'net|proto|gateway|im|store|http|config' include/limaoim/stats src/stats
check im 'proto|gateway|http|config|webhook|datasource|ws|redis|cluster' include/limaoim/im src/im
check store 'net|proto|gateway|im|http|config' include/limaoim/store src/store
check http 'proto|gateway|store|config' include/limaoim/http src/http
check gateway 'http|config|ws|webhook|datasource' include/limaoim/gateway src/gateway
check ws 'proto|gateway|im|store|http|config|webhook|datasource' include/limaoim/ws src/ws
check webhook 'net|proto|gateway|http|config|datasource' include/limaoim/webhook src/webhook
check datasource 'net|proto|gateway|http|config|store|webhook' include/limaoim/datasource src/datasource
check log 'net|proto|stats|gateway|im|store|http|config|webhook|datasource|redis|cluster' include/limaoim/log src/log
check redis 'net|proto|stats|gateway|im|store|http|config|webhook|datasource|ws|cluster' include/limaoim/redis src/redis
check cluster 'net|proto|gateway|store|http|config|webhook|datasource|ws' include/limaoim/cluster src/cluster
forbid() {  # forbid WHAT REGEX DIRS...: an #include matching REGEX in DIRS
    local what=$1 pattern=$2
    shift 2
    local hits
    hits=$(grep -rnE "#include [<\"]($pattern)" "$@" || true)
    if [ -n "$hits" ]; then
        echo "layering: $what:"
        echo "$hits"
        status=1
    fi
}
forbid "io_uring outside net/" 'liburing' include src/im src/gateway src/http src/store src/proto src/ws
forbid "RocksDB outside its engine" 'rocksdb/' include src/im src/gateway src/http src/net src/proto src/main.cpp
forbid "hiredis outside redis/, the Redis engine and cluster/" 'hiredis/' include/limaoim/im include/limaoim/store src/im src/gateway src/http src/net src/proto src/stats src/config src/main.cpp src/store/rocksdb_store.cpp src/store/token_store.cpp
forbid "libcurl outside webhook/ and datasource/" 'curl/' include src/im src/gateway src/http src/net src/proto src/store src/stats src/config src/main.cpp
if [ "$status" = 0 ]; then
    echo "1 passed, 0 failed"
else
    echo "0 passed, 1 failed"
fi
exit "$status"
