#!/usr/bin/env bash
# What this machine can check of the container files without a Docker
# daemon (CI has none; a real build and run were checked by hand: the
# README's "Containers" says how):
#   - the Dockerfile's build stage installs every build package of
#     tools/setup.sh (the README's build), so the image builds the same way;
#   - its runtime stage installs the package of every shared library the
#     built binaries link directly (readelf NEEDED -> dpkg -S), besides the
#     ones every Debian image has;
#   - every LIMAOIM_* variable the Dockerfile, tools/container/compose.yaml
#     and the README's "Containers" use is an option in docs/CONFIG.md;
#   - compose.yaml is YAML whose secrets name files its comment says to make;
#   - tools/container/seccomp-io_uring.json is an allow-list profile that
#     allows exactly io_uring_setup, io_uring_enter and io_uring_register
#     on top of the rules of Docker's default it names.
#
#   dockerfile.sh SOURCE_DIR BUILD_DIR              check
#   dockerfile.sh --must-fail SOURCE_DIR BUILD_DIR  on a copy of the files,
#       plant one fault at a time; each must be reported
set -euo pipefail

# Libraries of every Debian image (priority required): not listed.
base_packages=(libc6 libstdc++6 libgcc-s1 zlib1g)

stage_packages() {  # stage_packages DOCKERFILE STAGE_INDEX: apt-get install's packages of that FROM (0-based)
    python3 - "$1" "$2" <<'PY'
import re, sys
text = open(sys.argv[1]).read().replace("\\\n", " ")
stages = re.split(r"^FROM\s", text, flags=re.M)[1:]
stage = stages[int(sys.argv[2])]
for m in re.finditer(r"apt-get install ([^&]*)", stage):
    for word in m.group(1).split():
        if not word.startswith("-"):
            print(word)
PY
}

stage_index() {  # stage_index DOCKERFILE: the last stage (the image) and the "AS build" one
    grep -cE '^FROM\s' "$1"
}

# "EXE LIBRARY PACKAGE" for each library the built binaries link directly
# (PACKAGE "?" when none owns it). dpkg -S reads every file list: one call.
linked_packages() {  # linked_packages BUILD_DIR
    local exe lib path pairs=() paths=()
    for exe in limaoim limaoim-stat; do
        for lib in $(readelf -d "$1/$exe" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
            path=$(ldconfig -p | awk -v l="$lib" '$1 == l && /x86-64|x86_64/ {print $NF; exit}')
            path=$(readlink -f "${path:-/nonexistent/$lib}")
            # With merged /usr, dpkg may know the file as /lib/... instead.
            pairs+=("$exe $lib $path ${path#/usr}")
            paths+=("$path" "${path#/usr}")
        done
    done
    local owners short
    owners=$(dpkg -S "${paths[@]}" 2>/dev/null || true)
    local pair pkg
    for pair in "${pairs[@]}"; do
        read -r exe lib path short <<<"$pair"
        pkg=$(awk -v p="$path" -v q="$short" '{f = $0; sub(/^[^:]*(:[^:]*)?: /, "", f)}
            f == p || f == q {split($1, a, ":"); print a[1]; exit}' <<<"$owners")
        echo "$exe $lib ${pkg:-?}"
    done
}

check() {  # check DIR: prints each problem, returns 1 if any (uses $linked)
    local dir=$1 bad=0
    local dockerfile=$dir/Dockerfile compose=$dir/tools/container/compose.yaml
    local profile=$dir/tools/container/seccomp-io_uring.json
    local last=$(($(stage_index "$dockerfile") - 1))
    local build_stage
    build_stage=$(grep -nE '^FROM\s' "$dockerfile" | grep -n ' AS build$' | cut -d: -f1)
    if [ -z "$build_stage" ]; then
        echo "dockerfile: no 'FROM ... AS build' stage"
        return 1
    fi
    local build_pkgs runtime_pkgs
    build_pkgs=$(stage_packages "$dockerfile" $((build_stage - 1)))
    runtime_pkgs=$(stage_packages "$dockerfile" "$last")

    # The README's build packages (tools/setup.sh), less what only tests use.
    local setup_pkgs
    setup_pkgs=$(sed -n '/^packages=(/,/^)/p' "$dir/tools/setup.sh" | tr ' ' '\n' |
        grep -E '^(build-essential|meson|ninja-build|pkg-config|lib[a-z0-9+.-]*-dev|zlib1g-dev|nlohmann-json3-dev|doctest-dev)$' |
        grep -vE '^libclang-rt' || true)
    for p in $setup_pkgs; do
        grep -qx "$p" <<<"$build_pkgs" || { echo "dockerfile: build stage lacks $p (tools/setup.sh builds with it)"; bad=1; }
    done

    # The image's binaries and their libraries.
    for exe in limaoim limaoim-stat; do
        grep -q "/src/build-release/$exe" "$dockerfile" || { echo "dockerfile: $exe is not copied into the image"; bad=1; }
    done
    local exe lib pkg
    while read -r exe lib pkg; do
        if [ "$pkg" = "?" ]; then
            echo "dockerfile: no package owns $lib (linked by $exe)"
            bad=1
        elif ! grep -qx "$pkg" <<<"$runtime_pkgs" && ! printf '%s\n' "${base_packages[@]}" | grep -qx "$pkg"; then
            echo "dockerfile: the image lacks $pkg ($lib, linked by $exe)"
            bad=1
        fi
    done <<<"$linked"

    # Environment variables are options.
    local var
    for var in $( (cat "$dockerfile" "$compose"; sed -n '/^### Containers/,/^### /p' "$dir/README.md") |
        grep -oE 'LIMAOIM_[A-Z0-9_]+' | sort -u); do
        grep -q "\`$var\`" "$dir/docs/CONFIG.md" || { echo "dockerfile: $var is not an option in docs/CONFIG.md"; bad=1; }
    done

    python3 - "$compose" "$profile" <<'PY' || bad=1
import json, sys, yaml
compose_path, profile_path = sys.argv[1:]
bad = False
compose = yaml.safe_load(open(compose_path))
text = open(compose_path).read()
for name, secret in (compose.get("secrets") or {}).items():
    made = secret["file"].split("/")[-1]
    if made not in text.split("secrets:")[0]:
        print(f"dockerfile: compose secret {name} ({secret['file']}): the file's comment does not say how to make it")
        bad = True
for name, service in compose["services"].items():
    for used in service.get("secrets", []):
        if used not in (compose.get("secrets") or {}):
            print(f"dockerfile: compose service {name} uses undefined secret {used}")
            bad = True
profile = json.load(open(profile_path))
io_uring = {"io_uring_setup", "io_uring_enter", "io_uring_register"}
if profile.get("defaultAction") != "SCMP_ACT_ERRNO":
    print("dockerfile: the seccomp profile is not an allow list")
    bad = True
allowed = {n for r in profile.get("syscalls", []) if r.get("action") == "SCMP_ACT_ALLOW" and not r.get("args")
           and not r.get("includes") and not r.get("excludes") for n in r["names"]}
if not io_uring <= allowed:
    print("dockerfile: the seccomp profile does not allow io_uring")
    bad = True
last = profile["syscalls"][-1] if profile.get("syscalls") else {}
if set(last.get("names", [])) != io_uring or any(io_uring & set(r["names"]) for r in profile["syscalls"][:-1]):
    print("dockerfile: the seccomp profile adds more (or other) than the three io_uring syscalls in its last rule")
    bad = True
if "moby/profiles" not in profile.get("comment", ""):
    print("dockerfile: the seccomp profile does not say which Docker default it extends")
    bad = True
sys.exit(1 if bad else 0)
PY
    return $bad
}

if [ "${1:-}" = "--must-fail" ]; then
    src=$2 build=$3
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    copy() {
        rm -rf "$tmp/tree" && mkdir -p "$tmp/tree/tools/container" "$tmp/tree/docs"
        cp "$src/Dockerfile" "$src/README.md" "$tmp/tree/"
        cp "$src/tools/setup.sh" "$tmp/tree/tools/"
        cp "$src/tools/container/compose.yaml" "$src/tools/container/seccomp-io_uring.json" "$tmp/tree/tools/container/"
        cp "$src/docs/CONFIG.md" "$tmp/tree/docs/"
    }
    copy
    linked=$(linked_packages "$build")
    check "$tmp/tree" >/dev/null || { echo "dockerfile --must-fail: the clean copy fails"; exit 1; }
    plants=(
        "sed -i 's/ liburing2 / /' Dockerfile"
        "sed -i 's/ librocksdb-dev / /' Dockerfile"
        "sed -i 's|/src/build-release/limaoim-stat ||' Dockerfile"
        "sed -i 's/LIMAOIM_NODE_ID/LIMAOIM_NODE_NUMBER/' tools/container/compose.yaml"
        "sed -i 's/secrets: \[http, cluster, redis\]/secrets: [http, cluster, redis, extra]/' tools/container/compose.yaml"
        "sed -i 's/\"io_uring_register\",//' tools/container/seccomp-io_uring.json"
        "sed -i 's/\"SCMP_ACT_ERRNO\"/\"SCMP_ACT_ALLOW\"/' tools/container/seccomp-io_uring.json"
    )
    for plant in "${plants[@]}"; do
        copy
        (cd "$tmp/tree" && eval "$plant")
        if cmp -s "$src/Dockerfile" "$tmp/tree/Dockerfile" && cmp -s "$src/tools/container/compose.yaml" "$tmp/tree/tools/container/compose.yaml" &&
            cmp -s "$src/tools/container/seccomp-io_uring.json" "$tmp/tree/tools/container/seccomp-io_uring.json"; then
            echo "dockerfile --must-fail: planting changed nothing: $plant"
            exit 1
        fi
        if check "$tmp/tree" >/dev/null; then
            echo "dockerfile --must-fail: not reported: $plant"
            exit 1
        fi
    done
    echo "dockerfile --must-fail: ${#plants[@]} planted faults reported"
    exit 0
fi

linked=$(linked_packages "$2")
check "$1" && echo "dockerfile: OK"
