#!/usr/bin/env bash
# Runs cfn-lint, checkov and the cdk-nag gate over every template of the given cloud assemblies.
#   tools/template-checks/run.sh [--require-nag-report] <cdk.out dir> [more dirs or templates]
# Exit 0: no finding outside allowlist.yaml; 1: new findings (listed); 2: nothing to check or a tool failed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
"$here/setup.sh"
exec "$here/.venv/bin/python" "$here/check_templates.py" "$@"
