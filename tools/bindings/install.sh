#!/usr/bin/env bash
# Install the freshly packaged bindings into the example environments.
#
#   tools/bindings/install.sh [python|java ...]    (default: both)
#
# python: a new virtualenv examples/python/.venv (git-ignored) with examples/python/requirements.txt, which takes
#         aws-cdk-lib, constructs and cdk-nag from PyPI and the two aws-cdk-neuronx wheels from the dist/python
#         directories; the wheels are then force-reinstalled, because pip keeps an installed 0.1.0 even when the
#         wheel of the same version was rebuilt.
# java:   `mvn install:install-file` of both jars (with their pom, so Maven sees their dependencies) into the
#         local repository (~/.m2), which overwrites an older build of the same version, then `mvn compile` of
#         examples/java, which downloads aws-cdk-lib, constructs, cdk-nag and the jsii runtime the first time.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
MVN=(mvn -B -q)
INSTALL_PLUGIN=org.apache.maven.plugins:maven-install-plugin:3.1.2:install-file
VERSION="$(node -p "require('./package.json').version")"

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(python java)

wheel() { # <dist dir> <python dist name with underscores>
  local w
  w="$(ls "$1/python/$2-$VERSION"-py3-none-any.whl 2>/dev/null | head -n1)"
  [ -n "$w" ] || { echo "install.sh: no $2 $VERSION wheel in $1/python: run tools/bindings/package.sh python" >&2; exit 1; }
  echo "$w"
}

install_python() {
  local venv=examples/python/.venv
  local patterns_whl models_whl
  patterns_whl="$(wheel packages/aws-cdk-neuronx-patterns/dist aws_cdk_neuronx_patterns)"
  models_whl="$(wheel dist aws_cdk_neuronx_models)"
  rm -rf "$venv"
  "$PYTHON" -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r examples/python/requirements.txt
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps --force-reinstall "$patterns_whl" "$models_whl"
  "$venv/bin/python" -c 'import aws_cdk_neuronx_models, aws_cdk_neuronx_patterns; from aws_cdk_neuronx_models import calm3chat22b; calm3chat22b.InstanceTypeStrategy.LOW_COST'
  echo "install.sh: python: $venv has $(basename "$patterns_whl") and $(basename "$models_whl")"
}

install_jar() { # <dist dir> <artifactId>
  local dir="$1/java/io/github/aws-cdk-neuronx/$2/$VERSION"
  local base="$dir/$2-$VERSION"
  [ -f "$base.jar" ] && [ -f "$base.pom" ] || {
    echo "install.sh: no $2 $VERSION jar in $1/java: run tools/bindings/package.sh java" >&2; exit 1; }
  "${MVN[@]}" "$INSTALL_PLUGIN" -Dfile="$base.jar" -DpomFile="$base.pom" \
    -Dsources="$base-sources.jar" -Djavadoc="$base-javadoc.jar"
}

install_java() {
  install_jar packages/aws-cdk-neuronx-patterns/dist aws-cdk-neuronx-patterns
  install_jar dist aws-cdk-neuronx-models
  # Compiles the example against the installed jars; resolves (the first time: downloads) everything else.
  "${MVN[@]}" -f examples/java/pom.xml compile
  echo "install.sh: java: installed aws-cdk-neuronx-patterns and aws-cdk-neuronx-models $VERSION into the local Maven repository; examples/java compiles"
}

for t in "${targets[@]}"; do
  case "$t" in
    python) install_python ;;
    java) install_java ;;
    *) echo "install.sh: unknown target '$t' (python, java)" >&2; exit 2 ;;
  esac
done
