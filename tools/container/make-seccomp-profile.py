#!/usr/bin/env python3
"""Writes Docker's default seccomp profile with io_uring allowed.

Docker (since 25), containerd and Kubernetes' RuntimeDefault leave
io_uring_setup, io_uring_enter and io_uring_register out of their allow
list: io_uring submissions are not seen by per-syscall filters. This adds
exactly those three to the profile it reads and changes nothing else, so a
container run with the result is as confined as with the default, io_uring
aside.

  tools/container/make-seccomp-profile.py DEFAULT.json NOTE > seccomp-io_uring.json

DEFAULT.json is seccomp/default.json of github.com/moby/profiles (the
profile Docker embeds); NOTE goes into the result's "comment" field (say
where DEFAULT.json came from). tools/container/seccomp-io_uring.json was made
this way from the commit its comment names.
"""
import json
import sys

IO_URING = ["io_uring_enter", "io_uring_register", "io_uring_setup"]


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    with open(sys.argv[1], encoding="utf-8") as f:
        profile = json.load(f)
    if profile.get("defaultAction") != "SCMP_ACT_ERRNO":
        print("not an allow-list profile (defaultAction is not SCMP_ACT_ERRNO)", file=sys.stderr)
        return 1
    allowed = {name for rule in profile["syscalls"] if rule.get("action") == "SCMP_ACT_ALLOW"
               and not rule.get("args") and not rule.get("includes") and not rule.get("excludes")
               for name in rule["names"]}
    if allowed.issuperset(IO_URING):
        print("the profile already allows io_uring", file=sys.stderr)
        return 1
    out = {"comment": sys.argv[2]}
    out.update(profile)
    out["syscalls"] = profile["syscalls"] + [{"names": IO_URING, "action": "SCMP_ACT_ALLOW"}]
    json.dump(out, sys.stdout, indent="\t")
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
