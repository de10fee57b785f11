#!/usr/bin/env bash
# The update test: synthesizes pairs of apps that differ as real updates do and checks each pair against
# CloudFormation's resource schemas (check_updates.py says what it checks). Needs the patterns package compiled.
#   tools/update-checks/run.sh
# Exit 0: no fault; 1: faults (listed); 2: nothing to check.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
# cfn-lint, which ships the schemas, lives in the template checks' pinned venv.
"$root/tools/template-checks/setup.sh"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
(cd "$root" && npx ts-node --prefer-ts-exts tools/update-checks/synth-pairs.ts "$out")
"$root/tools/template-checks/.venv/bin/python" "$here/check_updates.py" "$out"
