#!/usr/bin/env bash
# Builds the guide (docs/ -> docs/book/) with mdBook, and fails if mdBook
# reports any error: mdBook exits 0 when an {{#include}} cannot be resolved,
# and only logs it (as "[ERROR]" in 0.4, as " ERROR " in 0.5), so its log is
# read too. The mdBook used is the pinned version: one already on the PATH if
# it is that version, else one installed with cargo under target/tools/.
set -euo pipefail
cd "$(dirname "$0")/.."

MDBOOK_VERSION=0.4.52
mdbook=mdbook
if [ "$(mdbook --version 2>/dev/null)" != "mdbook v$MDBOOK_VERSION" ]; then
    root="target/tools/mdbook-$MDBOOK_VERSION"
    if [ ! -x "$root/bin/mdbook" ]; then
        echo "installing mdbook $MDBOOK_VERSION into $root (cargo install)"
        cargo install mdbook --locked --version "$MDBOOK_VERSION" --root "$root" --quiet
    fi
    mdbook="$root/bin/mdbook"
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
"$mdbook" build docs 2>&1 | tee "$log"
# Either log format, with or without colour codes.
if sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -Eq '\[ERROR\]|(^|[[:space:]])ERROR([[:space:]]|$)'; then
    echo "the guide has errors (see above)" >&2
    exit 1
fi
# Code included from inside functions keeps their indentation; remove it.
if command -v perl >/dev/null; then
    find docs/book -name '*.html' -exec perl scripts/dedent-code.pl {} +
else
    echo "perl is missing: the guide's included code keeps its source indentation" >&2
fi
echo "the guide is in docs/book/index.html"
