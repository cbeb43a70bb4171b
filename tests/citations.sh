#!/usr/bin/env bash
# Every citation of the protocol and server docs resolves: for each
# "PROTOCOL.md §N" or "SERVER.md §N" in the tree (also §N.M, §§N, ranges
# "§2-§4" / "§16.1–16.3", lists "§11, §16.4" / "§9 and §10.2", a citation
# broken across a comment's lines, and the quirk ids "PROTOCOL.md Q3",
# "SERVER.md S5"), docs/PROTOCOL.md or docs/SERVER.md has a heading with that
# number ("## 5." / "### 5.4 ...") or a quirk table row ("| Q3 |"). A range
# is checked at both ends. A bare "§N" (no file named) is not checked: it
# cannot say which document it means.
#
#   citations.sh SOURCE_DIR              check the tree
#   citations.sh --must-fail SOURCE_DIR  prove the check fails: on a temporary
#       copy of the cited files, the clean copy must pass and each planted bad
#       citation (one per run) must be reported
set -euo pipefail

# Where citations are looked for (not in node_modules, the JS client's
# packages, nor in this script's planted examples).
scan_paths=(src include tests tools bench clients docs README.md meson.build)
scan_excludes=(--exclude-dir=node_modules --exclude=citations.sh)

check() {  # check DIR: prints each unresolved citation, returns 1 if any
    local dir=$1
    local files
    files=$(cd "$dir" && grep -rlE 'PROTOCOL\.md|SERVER\.md' "${scan_excludes[@]}" \
        "${scan_paths[@]}" 2>/dev/null || true)
    [ -n "$files" ] || return 0
    # shellcheck disable=SC2086  # one path per line, none with spaces
    (cd "$dir" && perl -e '
        use strict; use warnings;
        my %known;  # "PROTOCOL 5.4", "SERVER Q3"-style keys that exist
        for my $doc ("PROTOCOL", "SERVER") {
            open(my $in, "<", "docs/$doc.md") or die "citations: cannot read docs/$doc.md: $!\n";
            while (my $line = <$in>) {
                $known{"$doc $1"} = 1 if $line =~ /^#{2,4}\s+(\d+(?:\.\d+)*)(?:\.|\s|$)/;
                $known{"$doc $1"} = 1 if $line =~ /^\|\s*([QS]\d+)\s*\|/;
            }
        }
        my $number = qr/\d+(?:\.\d+)*/;
        # A closing backquote, spaces, a line break and a comment leader.
        my $gap = qr/`?\s*(?:(?:\/\/|#|\*)\s*)?/;
        # Bytes, not characters (no decoding): multi-byte signs go in groups, not classes.
        my $sign = qr/(?:§){1,2}/;
        my $dash = qr/(?:-|–)/;
        my $bad = 0;
        for my $file (@ARGV) {
            open(my $in, "<", $file) or die "citations: cannot read $file: $!\n";
            my $text = do { local $/; <$in> };
            while ($text =~ /\b(PROTOCOL|SERVER)\.md(?=$gap(?:$sign|[QS]\d))/g) {
                my ($doc, $start) = ($1, pos($text));
                my $line = 1 + (substr($text, 0, $start) =~ tr/\n//);
                pos($text) = $start;
                my @cited;
                $text =~ /\G$gap/gc;
                while (1) {
                    if ($text =~ /\G$sign\s*($number)/gc) { push @cited, $1 }
                    elsif ($text =~ /\G([QS]\d+)/gc) { push @cited, $1 }
                    else { last }
                    # a range end, then maybe a list separator before the next item
                    if ($text =~ /\G\s*$dash\s*(?:$sign\s*)?($number)/gc) { push @cited, $1 }
                    elsif ($text =~ /\G\s*$dash\s*([QS]\d+)/gc) { push @cited, $1 }
                    last unless $text =~ /\G(?:,|\s+and|\s+or)$gap(?=$sign|[QS]\d)/gc;
                }
                for my $c (@cited) {
                    next if $known{"$doc $c"};
                    my $what = $c =~ /^[QS]/ ? "quirk" : "section";
                    print "$file:$line: $doc.md cites $c, but docs/$doc.md has no $what $c\n";
                    $bad = 1;
                }
            }
        }
        exit $bad;
    ' $files)
}

if [ "${1:-}" != --must-fail ]; then
    root=${1:?usage: citations.sh [--must-fail] SOURCE_DIR}
    if ! check "$root"; then
        echo "citations: fix the comment or the heading in docs/PROTOCOL.md / docs/SERVER.md"
        exit 1
    fi
    exit 0
fi

root=${2:?usage: citations.sh --must-fail SOURCE_DIR}
copy=$(mktemp -d)
trap 'rm -rf "$copy"' EXIT
# The cited files and the two docs, at their paths.
(cd "$root" && { grep -rlE 'PROTOCOL\.md|SERVER\.md' "${scan_excludes[@]}" "${scan_paths[@]}" 2>/dev/null || true;
                 echo docs/PROTOCOL.md; echo docs/SERVER.md; } | sort -u | while read -r f; do
    mkdir -p "$copy/$(dirname "$f")"; cp "$f" "$copy/$f"; done)
if ! check "$copy" >/dev/null; then
    echo "citations --must-fail: the clean copy already fails; run citations.sh first"
    exit 1
fi
planted=src/planted_citation.cpp
status=0
# Each plant: the text of the planted file and the citation the check must name.
plant() {  # plant EXPECTED TEXT
    local expected=$1 text=$2 output
    printf '%s\n' "$text" >"$copy/$planted"
    if output=$(check "$copy"); then
        echo "citations --must-fail: not caught: $text"
        status=1
    elif ! grep -qF "$planted:" <<<"$output" || ! grep -qF "cites $expected," <<<"$output"; then
        echo "citations --must-fail: caught, but not named as $expected in $planted: $output"
        status=1
    fi
    rm -f "$copy/$planted"
}
plant 5.9 '// Nothing here (PROTOCOL.md §5.9).'
plant 99 '// The frame (SERVER.md §99, a section that does not exist).'
plant 16.9 '// The endpoints (SERVER.md §16.1-16.9).'
plant 19 '// Webhooks and more (SERVER.md §12–§19).'
plant 42 '// Two of them (SERVER.md §11, §42).'
plant 7.9 '// Both (PROTOCOL.md §5 and §7.9).'
plant 13.1 "$(printf '// A citation broken across lines (SERVER.md\n// §13.1).')"
plant 30 '// Doubled (SERVER.md §§30-31).'
plant Q99 '// A quirk (PROTOCOL.md Q99).'
plant S3 '// A server quirk cited in the wrong document (PROTOCOL.md S3).'
plant 2.9 '// In a document (`docs/SERVER.md` §2.9).'
[ "$status" -eq 0 ] && echo "citations --must-fail: the clean copy passes, every planted bad citation is reported"
exit "$status"
