#!/usr/bin/env bash
# The layers include only downwards: net/ (the loop) knows nothing of the
# protocol, the sessions or the stores; proto/ knows nothing of sockets or
# sessions; ws/ (the WebSocket framing) knows the loop's interfaces, not
# the protocol it carries or the gateway above it; the gateway does not know
# which transport carries a session, nor the store; im/ (the IM core) knows
# neither the wire protocol, nor the gateway or the HTTP API above it, nor
# the loop beyond its envelopes (net/envelope.h, net/conn_id.h), nor which
# store engine runs, nor Redis or the other nodes (cluster/ implements
# im/cluster.h); RocksDB appears in its engine only, hiredis in redis/, the
# Redis engine and cluster/, libcurl in the two HTTP clients (webhook/,
# datasource/), which the IM core sees only as interfaces. apijson/ (the
# JSON the business server sees) stands on the IM core, which knows no JSON
# (nlohmann's library appears in neither it nor the layers below), and
# serves both http/ and webhook/, which know nothing of each other. base64/
# and util/ (generic containers, the queue a thread drains) are the bottom
# of the stack: every layer may include them, they include nothing of
# limaoim.
# unit_loop links net/ alone; this catches a header-only include that no
# link would.
#
#   layering.sh SOURCE_DIR          check the tree
#   layering.sh --prove SOURCE_DIR  prove every rule can fail: each forbidden
#                                   include is planted in an empty tree and
#                                   must be caught, each allowed one must not
set -euo pipefail

# Layer rules: LAYER|FORBIDDEN LAYERS (limaoim/NAME/ or limaoim/NAME.h).
layer_rules=(
  'net|proto gateway im store http config ws'
  'proto|net gateway im store http config'
  'stats|net proto gateway im store http config'
  'im|proto gateway http config webhook datasource ws redis cluster apijson'
  'store|net proto gateway im http config'
  'http|proto gateway store config'
  'gateway|http config ws webhook datasource store'
  'ws|proto gateway im store http config webhook datasource'
  'webhook|net proto gateway http config datasource'
  'datasource|net proto gateway http config store webhook'
  'log|net proto stats gateway im store http config webhook datasource redis cluster'
  'redis|net proto stats gateway im store http config webhook datasource ws cluster'
  'cluster|net proto gateway store http config webhook datasource ws'
  'base64|net proto stats gateway im store http config ws webhook datasource log redis cluster apijson util'
  'apijson|net proto gateway http store config ws webhook datasource redis cluster'
  'util|net proto stats gateway im store http config ws webhook datasource log redis cluster apijson base64'
)
# A layer that may include only some headers of another: LAYER|OTHER|ALLOWED HEADERS.
allow_rules=(
  'im|net|envelope.h conn_id.h'
)
# Libraries: WHAT|HEADER|PLACES where it must not appear.
library_rules=(
  'io_uring outside net/|liburing|include src/im src/gateway src/http src/store src/proto src/ws'
  'RocksDB outside its engine|rocksdb/|include src/im src/gateway src/http src/net src/proto src/main.cpp src/server'
  'hiredis outside redis/, the Redis engine and cluster/|hiredis/|include/limaoim/im include/limaoim/store src/im src/gateway src/http src/net src/proto src/stats src/config src/main.cpp src/server src/store/rocksdb_store.cpp'
  'libcurl outside webhook/ and datasource/|curl/|include src/im src/gateway src/http src/net src/proto src/store src/stats src/config src/main.cpp src/server'
  'nlohmann JSON in the IM core or below|nlohmann/|include/limaoim/im include/limaoim/net include/limaoim/proto include/limaoim/gateway include/limaoim/store src/im src/net src/proto src/gateway src/store'
)

status=0
report() {  # report WHAT HITS
  if [ -n "$2" ]; then
    echo "layering: $1:"
    echo "$2"
    status=1
  fi
}
existing() { for p in "$@"; do [ -e "$p" ] && echo "$p"; done; }
check_tree() {  # in the current directory
  local rule layer forbidden other allowed what lib places
  for rule in "${layer_rules[@]}"; do
    layer=${rule%%|*}
    forbidden=${rule#*|}
    forbidden=${forbidden// /|}
    mapfile -t places < <(existing "include/limaoim/$layer" "src/$layer")
    [ "${#places[@]}" -gt 0 ] || continue
    report "$layer includes what it must not know" \
      "$(grep -rnE "#include \"limaoim/($forbidden)(/|\\.h\")" "${places[@]}" || true)"
  done
  for rule in "${allow_rules[@]}"; do
    IFS='|' read -r layer other allowed <<<"$rule"
    allowed=${allowed// /|}
    allowed=${allowed//./\\.}
    mapfile -t places < <(existing "include/limaoim/$layer" "src/$layer")
    [ "${#places[@]}" -gt 0 ] || continue
    report "$layer includes limaoim/$other/ beyond ${rule##*|}" \
      "$(grep -rnE "#include \"limaoim/$other/" "${places[@]}" | grep -vE "#include \"limaoim/$other/($allowed)\"" || true)"
  done
  for rule in "${library_rules[@]}"; do
    IFS='|' read -r what lib places <<<"$rule"
    read -ra places <<<"$places"
    mapfile -t places < <(existing "${places[@]}")
    [ "${#places[@]}" -gt 0 ] || continue
    report "$what" "$(grep -rnE "#include [<\"]($lib)" "${places[@]}" || true)"
  done
}

# --prove plants each include in a file of its own in one empty tree; the
# check's report must name every file whose include is forbidden and no other.
plant() {  # plant FILE LINE caught|clean; FILE "x/planted.*" gets a file of its own
  local file=$1
  [[ $file == */planted.* ]] && file="${file%/*}/p$proofs-${file##*/}"
  mkdir -p "$tree/${file%/*}"
  echo "$2" >>"$tree/$file"
  expectations+=("$file|$3|$2")
  proofs=$((proofs + 1))
}

if [ "${1:-}" = --prove ]; then
  tree=$(mktemp -d)
  trap 'rm -rf "$tree"' EXIT
  proofs=0
  expectations=()
  for rule in "${layer_rules[@]}"; do
    layer=${rule%%|*}
    for name in ${rule#*|}; do
      if [ "$name" = config ]; then header='limaoim/config.h'; else header="limaoim/$name/x.h"; fi
      plant "src/$layer/planted.cpp" "#include \"$header\"" caught
      plant "include/limaoim/$layer/planted.h" "#include \"$header\"" caught
    done
    plant "src/$layer/planted.cpp" "#include \"limaoim/$layer/x.h\"" clean
  done
  for rule in "${allow_rules[@]}"; do
    IFS='|' read -r layer other allowed <<<"$rule"
    plant "src/$layer/planted.cpp" "#include \"limaoim/$other/worker.h\"" caught
    plant "include/limaoim/$layer/planted.h" "#include \"limaoim/$other/x.h\"" caught
    for header in $allowed; do
      plant "src/$layer/planted.cpp" "#include \"limaoim/$other/$header\"" clean
      # a name that only starts like an allowed one is not allowed
      plant "src/$layer/planted.cpp" "#include \"limaoim/$other/${header%.h}x.h\"" caught
    done
  done
  for rule in "${library_rules[@]}"; do
    IFS='|' read -r what lib places <<<"$rule"
    for place in $places; do
      case "$place" in
        *.cpp) file=$place ;;  # a rule for one file: plant that file
        *) file=$place/planted.cpp ;;
      esac
      plant "$file" "#include <${lib}x.h>" caught
    done
  done
  report_text=$(cd "$tree" && check_tree)
  declare -A caught=()  # "file|include line" for every hit reported as file:number:line
  while IFS= read -r hit; do
    rest=${hit#*:}
    caught["${hit%%:*}|${rest#*:}"]=1
  done <<<"$report_text"
  failures=0
  for expectation in "${expectations[@]}"; do
    IFS='|' read -r file expect line <<<"$expectation"
    seen=clean
    [ -n "${caught["$file|$line"]:-}" ] && seen=caught
    if [ "$seen" != "$expect" ]; then
      echo "layering --prove: $line in $file should be $expect"
      failures=$((failures + 1))
    fi
  done
  echo "$((proofs - failures)) passed, $failures failed"
  [ "$failures" = 0 ]
  exit
fi

root=${1:?usage: layering.sh [--prove] SOURCE_DIR}
cd "$root"
# A rule whose place was renamed or removed would check nothing: refuse it.
for rule in "${layer_rules[@]}" "${allow_rules[@]}"; do
  layer=${rule%%|*}
  [ -e "include/limaoim/$layer" ] || [ -e "src/$layer" ] || report "a rule names a layer that is not in the tree" "$layer"
done
for rule in "${library_rules[@]}"; do
  IFS='|' read -r what lib places <<<"$rule"
  for place in $places; do
    [ -e "$place" ] || report "the rule \"$what\" names a place that is not in the tree" "$place"
  done
done
check_tree
if [ "$status" = 0 ]; then
  echo "1 passed, 0 failed"
else
  echo "0 passed, 1 failed"
fi
exit "$status"
