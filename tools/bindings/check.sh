#!/usr/bin/env bash
# The bindings check: a Python or Java CDK app must build exactly what the same TypeScript app builds.
#
#   tools/bindings/check.sh [--skip-package] [--skip-install]
#
# 1. packages both jsii packages (tools/bindings/package.sh: Python wheels and Java jars for real, .NET code only),
# 2. installs them into the example environments (tools/bindings/install.sh),
# 3. synthesizes examples/{typescript,python,java} for both presets (-c preset=lowCost|highPerformance), the
#    custom-strategy apps tools/bindings/custom/{app.ts,app.py,java} and the wiring apps examples/wiring/{typescript,python}
#    (API Gateway, alarms, autoscaling on calm3.endpoint),
# 4. compares each Python/Java template with the TypeScript one (tools/bindings/compare_templates.py).
# It expects compiled packages (.jsii and lib/ of both): it packages what is compiled, while the TypeScript apps
# run the sources. The last line is `bindings: N passed, N failed`; the exit status is 1 when anything failed.
#
# Environment: BINDINGS_OUT (default ${TMPDIR:-/tmp}/aws-cdk-neuronx-bindings) receives the cloud assemblies and
# one log per step; PYTHON (default python3) creates the example's virtualenv.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/tools/bindings"
cd "$ROOT"

SKIP_PACKAGE=false
SKIP_INSTALL=false
for arg in "$@"; do
  case "$arg" in
    --skip-package) SKIP_PACKAGE=true ;;
    --skip-install) SKIP_INSTALL=true ;;
    *) echo "check.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done

OUT="${BINDINGS_OUT:-${TMPDIR:-/tmp}/aws-cdk-neuronx-bindings}"
LOGS="$OUT/logs"
rm -rf "$OUT"
mkdir -p "$LOGS"

export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION="${JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION:-20}"
export CDK_DISABLE_CLI_TELEMETRY=true
export AWS_EC2_METADATA_DISABLED=true # no credentials are needed; do not wait on instance metadata for them
unset CDK_DEFAULT_ACCOUNT CDK_DEFAULT_REGION

# The aws-cdk CLI pinned in the root devDependencies (aws-cdk-lib 2.245.0 assemblies need 2.1125 or later);
# without node_modules, that same version from the registry.
CDK="$ROOT/node_modules/.bin/cdk"
[ -x "$CDK" ] || CDK="npx -y aws-cdk@$(node -p "require('$ROOT/package.json').devDependencies['aws-cdk']")"
PYTHON="${PYTHON:-python3}"
PY_VENV="$ROOT/examples/python/.venv"

passed=0
failed=0
declare -A ok # step name -> 1 when it passed

# run_step NAME COMMAND...: runs COMMAND with its output in $LOGS/NAME.log, counts and reports it.
run_step() {
  local name="$1"; shift
  local log="$LOGS/${name//[^A-Za-z0-9_.-]/_}.log"
  local start=$SECONDS
  if "$@" >"$log" 2>&1; then
    passed=$((passed + 1)); ok[$name]=1
    echo "PASS $name ($((SECONDS - start))s)"
  else
    failed=$((failed + 1))
    echo "FAIL $name ($((SECONDS - start))s), log: $log"
    grep -v '^!!' "$log" | tail -n 25 | sed 's/^/    /'
  fi
}

# skip NAME REASON: a step that cannot run because one it needs failed counts as failed.
skip() {
  failed=$((failed + 1))
  echo "FAIL $1 (not run: $2)"
}

needs() { # needs STEP...: true when every STEP passed
  local s
  for s in "$@"; do [ "${ok[$s]:-}" = 1 ] || return 1; done
}

# lane NAME FUNCTION [ARG...]: runs FUNCTION (run_step and skip calls, one after another) in the background, beside
# the other lanes; join_lanes waits for them all, prints their reports lane by lane and counts their steps as run_step
# does. Lanes read ok[] as it was when they started.
LANES=()
lane() {
  local name="$1"; shift
  ("$@") >"$LOGS/lane-$name.out" 2>&1 &
  LANES+=("$name")
}
join_lanes() {
  wait
  local name line step
  for name in "${LANES[@]}"; do
    while IFS= read -r line; do
      echo "$line"
      case "$line" in
        "PASS "*) step="${line#PASS }"; step="${step% (*}"; passed=$((passed + 1)); ok[$step]=1 ;;
        "FAIL "*) failed=$((failed + 1)) ;;
      esac
    done <"$LOGS/lane-$name.out"
  done
  LANES=()
}

# --- tests of the checker itself -------------------------------------------------------------------------------
run_step "unit: compare_templates" "$PYTHON" -m unittest discover -s "$HERE" -p 'test_*.py'

# --- the npm tarball jsii-pacmak embeds in every wheel and jar ------------------------------------------------
# npm pack takes every file .npmignore does not exclude; virtualenvs, example builds or tools in the root
# package end up inside the Python wheel and the Java jar (and make packaging take minutes).
npm_bundle_is_lean() {
  local dir
  for dir in . packages/aws-cdk-neuronx-patterns; do
    (cd "$dir" && npm pack --dry-run --json 2>/dev/null) | "$PYTHON" -c '
import json, sys
name = sys.argv[1]
files = [f["path"] for f in json.load(sys.stdin)[0]["files"]]
repo_only = ("tools/", "examples/", "packages/", "build-tools/", ".ci/", "test/", "src/", "dist/")
bad = sorted(p for p in files if p.startswith(repo_only) or {".venv", "__pycache__", "cdk.out", "node_modules"} & set(p.split("/")[:-1]))
print(f"{name}: {len(files)} files in the npm bundle")
if bad:
    tops = sorted({"/".join(p.split("/")[:2]) for p in bad})
    print(f"{name}: {len(bad)} files that only belong in the repository: {tops[:20]}")
    sys.exit(1)
' "$dir" || return 1
  done
}
run_step "npm bundle: only library files in both packages" npm_bundle_is_lean
if ! $SKIP_PACKAGE && grep -q "'examples/" "$LOGS/npm_bundle__only_library_files_in_both_packages.log"; then
  # While the root .npmignore lets examples/ in, keep the example environments out of the tarball: a wheel would
  # otherwise contain the virtualenv that holds the previous wheel.
  echo "      (removing examples/python/.venv and examples/java/target before packaging)"
  rm -rf "$PY_VENV" "$ROOT/examples/java/target"
fi

# --- 1. package ---------------------------------------------------------------------------------------------
artifacts_exist() {
  local v; v="$(node -p "require('./package.json').version")"
  local f
  for f in \
    "packages/aws-cdk-neuronx-patterns/dist/python/aws_cdk_neuronx_patterns-$v-py3-none-any.whl" \
    "dist/python/aws_cdk_neuronx_models-$v-py3-none-any.whl" \
    "packages/aws-cdk-neuronx-patterns/dist/java/io/github/aws-cdk-neuronx/aws-cdk-neuronx-patterns/$v/aws-cdk-neuronx-patterns-$v.jar" \
    "dist/java/io/github/aws-cdk-neuronx/aws-cdk-neuronx-models/$v/aws-cdk-neuronx-models-$v.jar"; do
    [ -s "$f" ] || { echo "missing $f"; return 1; }
    ls -l "$f"
  done
}
dotnet_code_exists() {
  local n
  n="$(find packages/aws-cdk-neuronx-patterns/dist/dotnet/AwsCdkNeuronx.Patterns -name '*.cs' | wc -l)"
  echo "AwsCdkNeuronx.Patterns: $n .cs files"; [ "$n" -gt 0 ] || return 1
  n="$(find dist/dotnet/AwsCdkNeuronx.Models -name '*.cs' | wc -l)"
  echo "AwsCdkNeuronx.Models: $n .cs files"; [ "$n" -gt 0 ] || return 1
  find dist/dotnet -ipath '*calm3chat22b*' -name 'InstanceTypeStrategy.cs' | grep -q . \
    || { echo "no InstanceTypeStrategy.cs in AwsCdkNeuronx.Models"; return 1; }
}
package_python_java() { "$HERE/package.sh" python java && artifacts_exist; }
package_dotnet() { "$HERE/package.sh" dotnet && dotnet_code_exists; }
if $SKIP_PACKAGE; then
  PKG="package: python and java (existing)"
  run_step "$PKG" artifacts_exist
  run_step "package: dotnet --code-only (existing)" dotnet_code_exists
else
  PKG="package: python and java"
  run_step "$PKG" package_python_java
  run_step "package: dotnet --code-only" package_dotnet
fi

# --- 2. install -----------------------------------------------------------------------------------------------
if $SKIP_INSTALL; then
  [ -x "$PY_VENV/bin/python" ] && ok["install: python"]=1
  ok["install: java"]=1
elif needs "$PKG"; then
  # Side by side: a virtualenv and the local Maven repository have nothing in common.
  lane python run_step "install: python" "$HERE/install.sh" python
  lane java run_step "install: java" "$HERE/install.sh" java
  join_lanes
else
  skip "install: python" "$PKG failed"
  skip "install: java" "$PKG failed"
fi

# --- the examples run with the same CDK context (feature flags change templates) ---------------------------------
same_context() {
  "$PYTHON" - "$@" <<'PY'
import json, sys
ref = json.load(open("examples/typescript/cdk.json")).get("context", {})
bad = 0
for lang in sys.argv[1:]:
    ctx = json.load(open(f"examples/{lang}/cdk.json")).get("context", {})
    if ctx != ref:
        bad = 1
        print(f"examples/{lang}/cdk.json context {ctx} != examples/typescript/cdk.json context {ref}")
sys.exit(bad)
PY
}
run_step "examples: python and java cdk.json context = typescript's" same_context python java
run_step "examples: wiring/typescript and wiring/python cdk.json context = typescript's" same_context wiring/typescript wiring/python

# --- 3. synthesize ----------------------------------------------------------------------------------------------
# Version reporting is off: AWS::CDK::Metadata encodes the language runtime (see compare_templates.py).
SYNTH=(synth --quiet --no-notices --no-version-reporting)
synth_example() { # <language> <preset>
  (cd "examples/$1" && $CDK "${SYNTH[@]}" -o "$OUT/$1-$2" -c "preset=$2")
}
synth_custom() { # <language> <app command>
  $CDK "${SYNTH[@]}" -o "$OUT/$1-custom" -a "$2"
}
# The wiring apps (examples/wiring): the Python one runs in the example environment installed above.
synth_wiring() { # <language> [app command]
  (cd "examples/wiring/$1" && $CDK "${SYNTH[@]}" -o "$OUT/wiring-$1" ${2:+-a "$2"})
}
PRESETS=(lowCost highPerformance)
# One lane per language, side by side: each language's apps one after another (the Java examples share a Maven
# target directory).
typescript_synths() {
  local preset
  for preset in "${PRESETS[@]}"; do run_step "synth: typescript $preset" synth_example typescript "$preset"; done
  run_step "synth: typescript custom strategy" synth_custom typescript "npx ts-node --prefer-ts-exts tools/bindings/custom/app.ts"
  run_step "synth: typescript wiring" synth_wiring typescript
}
python_synths() {
  local preset
  if ! needs "install: python"; then
    for preset in "${PRESETS[@]}"; do skip "synth: python $preset" "install: python failed"; done
    skip "synth: python custom strategy" "install: python failed"
    skip "synth: python wiring" "install: python failed"
    return
  fi
  for preset in "${PRESETS[@]}"; do run_step "synth: python $preset" synth_example python "$preset"; done
  run_step "synth: python custom strategy" synth_custom python "$PY_VENV/bin/python tools/bindings/custom/app.py"
  run_step "synth: python wiring" synth_wiring python "$PY_VENV/bin/python app.py"
}
java_synths() {
  local preset
  if ! needs "install: java"; then
    for preset in "${PRESETS[@]}"; do skip "synth: java $preset" "install: java failed"; done
    skip "synth: java custom strategy" "install: java failed"
    return
  fi
  for preset in "${PRESETS[@]}"; do run_step "synth: java $preset" synth_example java "$preset"; done
  run_step "synth: java custom strategy" synth_custom java "mvn -e -q -f tools/bindings/custom/java/pom.xml compile exec:java"
}
lane typescript typescript_synths
lane python python_synths
lane java java_synths
join_lanes

# --- 4. compare -------------------------------------------------------------------------------------------------
declare -A EXPECT=([lowCost]=ml.trn1.2xlarge [highPerformance]=ml.inf2.24xlarge)
compare() { "$PYTHON" "$HERE/compare_templates.py" "$@"; }
for preset in "${PRESETS[@]}"; do
  for lang in python java; do
    name="same template: $lang vs typescript, $preset"
    if needs "synth: typescript $preset" "synth: $lang $preset"; then
      run_step "$name" compare "$OUT/typescript-$preset" "$OUT/$lang-$preset" --expect "${EXPECT[$preset]}"
    else skip "$name" "a synth failed"; fi
  done
done
for lang in python java; do
  name="same template: $lang vs typescript, custom InstanceTypeStrategy with CompileOptions"
  if needs "synth: typescript custom strategy" "synth: $lang custom strategy"; then
    # The custom values must reach the template: serving instance, and tpDegree/nPositions in the compile job.
    run_step "$name" compare "$OUT/typescript-custom" "$OUT/$lang-custom" --expect ml.inf2.48xlarge \
      --expect '"NEURONX_TP_DEGREE", "Value": "8"' --expect '"NEURONX_N_POSITIONS", "Value": "2048"'
  else skip "$name" "a synth failed"; fi
done
name="same template: python vs typescript, wiring (API Gateway, alarms, autoscaling)"
if needs "synth: typescript wiring" "synth: python wiring"; then
  # The wiring must reach the template: the API's SageMaker runtime integration and the concurrency scaling policy.
  run_step "$name" compare "$OUT/wiring-typescript" "$OUT/wiring-python" --expect ml.trn1.2xlarge \
    --expect 'runtime.sagemaker:path/endpoints/' --expect 'SageMakerVariantConcurrentRequestsPerModelHighResolution'
else skip "$name" "a synth failed"; fi

echo "outputs and logs: $OUT"
echo "bindings: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
