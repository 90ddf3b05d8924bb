#!/usr/bin/env bash
# Copy the trained example branches from examples/branches-out/<name>/ (where the SDK exports them) into the
# team plugin packages as package data: examples/plugin-<name>/src/mtbranch_<name>/branch/.
#
#   examples/sync_branches.sh [SOURCE_DIR [NAME...]]   # default SOURCE_DIR: examples/branches-out
#
# NAME defaults to every example branch: sentiment similarity entities (exported to examples/branches-out) and
# paraphrase intent slots banking clinc (trained to runs/branches-out/<name>, see docs/platform.md), e.g.
#   examples/sync_branches.sh runs/branches-out paraphrase intent slots banking clinc
#
# Each branch is checked first (manifest name, `mtbranch validate --no-plugins --branch`), then swapped in
# whole. Exits 1 if a branch is missing or invalid; the packages keep their previous contents then.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
src="${1:-$here/branches-out}"
shift $(( $# > 0 ? 1 : 0 ))
names=("$@")
[[ ${#names[@]} -gt 0 ]] || names=(sentiment similarity entities paraphrase intent slots banking clinc)
status=0

for name in "${names[@]}"; do
  from="$src/$name"
  to="$here/plugin-$name/src/mtbranch_$name/branch"
  if [[ ! -f "$from/manifest.json" ]]; then
    echo "missing: $from/manifest.json (train and export the '$name' branch first)" >&2
    status=1
    continue
  fi
  got="$(python -c 'import json,sys; print(json.load(open(sys.argv[1]))["name"])' "$from/manifest.json")"
  if [[ "$got" != "$name" ]]; then
    echo "refused: $from/manifest.json names branch '$got', expected '$name'" >&2
    status=1
    continue
  fi
  if ! mtbranch validate --no-plugins --branch "$from" >/dev/null; then
    echo "refused: $from does not validate (run: mtbranch validate --no-plugins --branch $from)" >&2
    status=1
    continue
  fi
  tmp="$(mktemp -d "$to.tmp-XXXXXX")"
  find "$from" -maxdepth 1 -type f ! -name '.*' -exec cp {} "$tmp/" \;
  touch "$tmp/.gitkeep"
  old="$to.old-$$"
  [[ -d "$to" ]] && mv "$to" "$old"
  mv "$tmp" "$to"
  rm -rf "$old"
  echo "synced $name: $from -> $to"
done

if [[ $status -eq 0 ]]; then
  echo "done; bump each package's version if its branch changed, then reinstall the examples"
fi
exit $status
