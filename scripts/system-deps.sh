#!/usr/bin/env bash
# System packages the project uses beyond Python: bubblewrap (the grader's sandbox), Debian's
# Chromium with its driver (the browser tests), npm (mermaid, which draws the block diagrams) and
# PostgreSQL (the server for the test of a PostgreSQL gradebook; it also brings libpq, which the
# psycopg driver loads). Installed with apt-get when we are root on Debian or Ubuntu; otherwise we
# say what is missing and what that means, and carry on: the grader then runs in its labelled weaker
# mode and the tests that need the rest are skipped.
set -u
missing=()
command -v bwrap >/dev/null 2>&1 || missing+=(bubblewrap)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
command -v npm >/dev/null 2>&1 || missing+=(npm)
# Debian keeps initdb and postgres in /usr/lib/postgresql/VERSION/bin, off PATH (as the tests look).
if ! command -v initdb >/dev/null 2>&1 && ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
  missing+=(postgresql)
fi
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing system packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  exit $?
fi
echo "Note: missing system packages: ${missing[*]} (install them with your package manager)." >&2
echo "  without bubblewrap the grader uses its weaker, unisolated fallback;" >&2
echo "  without chromium the browser tests are skipped;" >&2
echo "  without npm the block diagrams cannot be redrawn and their tests are skipped;" >&2
echo "  without postgresql the PostgreSQL gradebook test is skipped (and --db postgresql://... needs libpq)." >&2
exit 0
