#!/usr/bin/env bash
# Creates tools/model-server/.venv with the serving image's Python stack (requirements*.txt) on the image's Python
# (3.10), and makes sure Java is there for TorchServe's frontend.
# Idempotent: a venv that already has exactly these requirements is left as it is. One run at a time (a lock beside
# the venv): the build installs it in the background, and a model-server test started meanwhile waits for that.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.venv"
stamp="$venv/.requirements.sha256"
exec 9>"$here/.venv.lock"
flock 9
want="$(cat "$here/requirements-torch.txt" "$here/requirements.txt" | sha256sum | cut -d' ' -f1)"
if ! command -v java >/dev/null; then
  # TorchServe's frontend is Java (the image has OpenJDK 11; 17 runs TorchServe 0.11.0 as well).
  apt-get update -qq && apt-get install -y -qq openjdk-17-jre-headless >/dev/null
fi
# The image's Python is 3.10 (Dockerfile ARG PYTHON=python3.10); pyenv machines have it as a version, off PATH.
test -x "$venv/bin/python" || PYENV_VERSION="${PYENV_VERSION:-3.10.13}" python3.10 -m venv "$venv"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check)
  # pip then reports torch's missing triton as a dependency conflict: expected (requirements-torch.txt says why).
  "${pip[@]}" --no-deps -r "$here/requirements-torch.txt"
  "${pip[@]}" -r "$here/requirements.txt"
  echo "$want" > "$stamp"
fi
