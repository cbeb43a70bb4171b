#!/usr/bin/env bash
# The layers include only downwards: net/ (the loop) knows nothing of the
# protocol, the sessions or the stores; proto/ knows nothing of sockets or
# sessions. unit_loop links net/ alone; this catches a header-only include
# that no link would.
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
check net 'proto|gateway|im|store|http|config' include/limaoim/net src/net
check proto 'net|gateway|im|store|http|config' include/limaoim/proto src/proto
check stats 'net|proto|gateway|im|store|http|config' include/limaoim/stats src/stats
if [ "$status" = 0 ]; then
    echo "1 passed, 0 failed"
else
    echo "0 passed, 1 failed"
fi
exit "$status"
