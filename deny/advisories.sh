#!/usr/bin/env bash
# `cargo deny check advisories` for `make deny`: against the live RustSec database when it can be
# fetched; else offline, against a snapshot while it is younger than deny.toml's
# maximum-db-staleness; else skipped. The snapshot is the one ADVISORY_DB_SNAPSHOT names (a
# `git archive` tarball of rustsec/advisory-db, with its ADVISORY_DB_COMMIT and ADVISORY_DB_DATE),
# else deny/advisory-db.tar.gz made by `make deny-snapshot`. Which one happened, and why, is
# always printed. Exits non-zero only when cargo-deny finds a problem (or cannot run).
set -euo pipefail
cd "$(dirname "$0")/.."
deny=${CARGO_DENY:-.tools/bin/cargo-deny}
snapshot=deny/advisory-db.tar.gz
# commit=, date=, paths= of a snapshot made by `make deny-snapshot` on a machine that reaches GitHub.
commit= date=
if [ -n "${ADVISORY_DB_SNAPSHOT:-}" ]; then
  snapshot=$ADVISORY_DB_SNAPSHOT
  commit=${ADVISORY_DB_COMMIT:-}
  date=${ADVISORY_DB_DATE:-}
  if [ ! -f "$snapshot" ] || [ -z "$commit" ] || [ -z "$date" ] || ! date -d "$date" >/dev/null 2>&1; then
    echo "advisories: ADVISORY_DB_SNAPSHOT=$snapshot needs an existing file and ADVISORY_DB_COMMIT" \
      "and ADVISORY_DB_DATE (the upstream commit and its date, e.g. 2026-08-21)" >&2
    exit 2
  fi
  # Git and touch want a time of day too.
  date=$(date -u -d "$date" --iso-8601=seconds)
elif [ -f deny/advisory-db.snapshot ]; then
  . deny/advisory-db.snapshot
fi

# Where cargo-deny keeps the database (db-path plus a hash of its URL): it says so in its log.
db_dir=$("$deny" --locked --offline -L debug check advisories 2>&1 \
  | sed -n "s/.*Opening advisory database at '\(.*\)'.*/\1/p" | head -n 1 || true)
if [ -z "$db_dir" ]; then
  echo "advisories: cargo-deny did not say where its database lives" >&2
  exit 2
fi

# A snapshot laid out by an earlier run is no clone to fetch into: cargo-deny clones afresh.
marker="$db_dir/.git/irsa-doctor-snapshot"
[ ! -f "$marker" ] || rm -rf "$db_dir"
fetch_log=$(mktemp)
trap 'rm -f "$fetch_log"' EXIT
if "$deny" --locked fetch db >"$fetch_log" 2>&1; then
  echo "advisories: checking against the RustSec advisory database, fetched now"
  exec "$deny" --locked check advisories
fi
why=$(grep -m 1 -E 'fatal:|error' "$fetch_log" | sed -E 's/^.*\[ERROR\] //' || true)
why=${why:-$(tail -n 1 "$fetch_log")}

max_days=$(sed -n 's/^maximum-db-staleness = "P\([0-9]*\)D".*/\1/p' deny.toml)
age_days=$(( ($(date +%s) - $(date -d "$date" +%s)) / 86400 ))
skip() {
  echo "advisories: SKIPPED: the RustSec database could not be fetched ($why), and $1." >&2
  echo "advisories: SKIPPED: known vulnerabilities were NOT checked. Where GitHub is reachable," \
    "\`make deny\` checks the live database; \`make deny-snapshot\` makes a local snapshot for offline checks." >&2
  exit 0
}
[ -f "$snapshot" ] || skip "there is no local snapshot ($snapshot; make deny-snapshot makes one where GitHub is reachable, or set ADVISORY_DB_SNAPSHOT)"
[ -n "$max_days" ] || skip "deny.toml sets no maximum-db-staleness in days"
if [ "$age_days" -gt "$max_days" ]; then
  skip "the local snapshot of $date is $age_days days old, over the $max_days days of deny.toml's maximum-db-staleness"
fi

# The snapshot, laid out as the git checkout cargo-deny expects, dated as upstream dated it (so
# that cargo-deny's own staleness check sees its real age).
rm -rf "$db_dir"
mkdir -p "$db_dir"
tar -xzf "$snapshot" -C "$db_dir" --strip-components=1
git -C "$db_dir" init -q
git -C "$db_dir" add -A
GIT_AUTHOR_DATE=$date GIT_COMMITTER_DATE=$date git -C "$db_dir" \
  -c user.name=irsa-doctor -c user.email=irsa-doctor@invalid -c commit.gpgsign=false \
  -c core.hooksPath=/dev/null commit -q -m "rustsec/advisory-db $commit (local snapshot)"
echo "$commit" >"$marker"
touch -d "$date" "$db_dir/.git/HEAD"
echo "advisories: the RustSec database could not be fetched ($why);" \
  "checking OFFLINE against the snapshot $snapshot of $date (rustsec/advisory-db ${commit:0:12}," \
  "$age_days days old): advisories published since then are not checked"
exec "$deny" --locked --offline check advisories
