#!/usr/bin/env bash
# Package both jsii packages for Python and Java (built for real: wheels and jars) and generate the .NET code
# (--code-only: there is no .NET SDK on the build machine, so nothing is compiled).
#
#   tools/bindings/package.sh [python|java|dotnet ...]    (default: all three)
#
# One jsii-pacmak invocation gets both packages, patterns first: the models package depends on the patterns
# package, and pacmak builds the Java code of a dependency only when it packages it in the same run (it adds each
# package's dist/java to the Maven repositories of the next). Output goes to each package's jsii outdir:
#   dist/{python,java,dotnet}                                     aws-cdk-neuronx-models
#   packages/aws-cdk-neuronx-patterns/dist/{python,java,dotnet}   aws-cdk-neuronx-patterns
# Both dist/ directories are git-ignored.
#
# --no-parallel: pacmak would otherwise build the targets at the same time; on a small machine that only
# makes Maven and pip compete. The positional package directories must come before --targets (an array option
# that would swallow them).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION="${JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION:-20}"
PACMAK="$ROOT/node_modules/.bin/jsii-pacmak"
PACKAGES=(packages/aws-cdk-neuronx-patterns .)

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(python java dotnet)

built=()
codegen=()
for t in "${targets[@]}"; do
  case "$t" in
    python|java) built+=("$t") ;;
    dotnet) codegen+=("$t") ;;
    *) echo "package.sh: unknown target '$t' (python, java, dotnet)" >&2; exit 2 ;;
  esac
done

if [ ${#built[@]} -gt 0 ]; then
  for t in "${built[@]}"; do
    # A stale wheel or jar of the same version would otherwise be picked up by the install step.
    rm -rf "dist/$t" "packages/aws-cdk-neuronx-patterns/dist/$t"
  done
  echo "package.sh: jsii-pacmak ${PACKAGES[*]} --targets ${built[*]}"
  "$PACMAK" "${PACKAGES[@]}" -v --no-parallel --targets "${built[@]}"
fi
if [ ${#codegen[@]} -gt 0 ]; then
  rm -rf dist/dotnet packages/aws-cdk-neuronx-patterns/dist/dotnet
  echo "package.sh: jsii-pacmak ${PACKAGES[*]} --code-only --targets dotnet"
  "$PACMAK" "${PACKAGES[@]}" -v --no-parallel --code-only --targets dotnet
fi
