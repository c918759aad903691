#!/usr/bin/env bash
# Builds the guide (docs/ -> docs/book/) with mdBook, installing mdBook with
# cargo if it is missing, and fails if mdBook reports any error: mdBook itself
# exits 0 when an {{#include}} cannot be resolved, and only logs it.
set -euo pipefail
cd "$(dirname "$0")/.."

MDBOOK_VERSION=0.4.52
if ! command -v mdbook >/dev/null 2>&1; then
    echo "mdbook not found: cargo install mdbook --locked --version $MDBOOK_VERSION"
    cargo install mdbook --locked --version "$MDBOOK_VERSION" --quiet
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
mdbook build docs 2>&1 | tee "$log"
if grep -q "\[ERROR\]" "$log"; then
    echo "the guide has errors (see above)" >&2
    exit 1
fi
echo "the guide is in docs/book/index.html"
