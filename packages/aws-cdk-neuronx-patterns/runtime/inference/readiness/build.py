"""Builds readiness-ping.jar, loaded into TorchServe's JVM as a Java agent: the plugin that answers /ping only once the
model has loaded (src/.../ModelLoadedPing.java) and the TERM handler that drains the model server before it stops
(src/.../DrainOnTerm.java, the agent's premain). Built from its source, byte for byte the same each time: entries in
a fixed order with a fixed date, so that the jar's asset hash, and with it the templates, change only when the source does.

Compiled against the frontend jar of the TorchServe the image runs (0.11.0: the plugin SDK's classes are inside it),
for Java 11 (the image's OpenJDK). Run it with a Python that has that TorchServe installed, e.g. the model-server
test's venv:

    tools/model-server/.venv/bin/python packages/aws-cdk-neuronx-patterns/runtime/inference/readiness/build.py

`--check` builds into a temporary directory and fails if the committed jar differs (the model-server test runs it).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "src"
JAR = HERE.parent / json.loads((HERE.parent.parent / "contract.json").read_text())["endpoint"]["readiness"]["jar"]
TORCHSERVE_VERSION = "0.11.0"  # the image's (Dockerfile.neuronx ARG TORCHSERVE_VERSION)
JAVA_RELEASE = "11"  # the image installs openjdk-11-jdk
# The agent: its premain installs the TERM handler (the /ping plugin is found through the service file).
AGENT_CLASS = "io.github.awscdkneuronx.patterns.readiness.DrainOnTerm"
# The earliest date a zip entry can carry; any fixed date would do.
ENTRY_DATE = (1980, 1, 1, 0, 0, 0)
MANIFEST = (
    "Manifest-Version: 1.0\r\n"
    f"Premain-Class: {AGENT_CLASS}\r\n"
    f"Implementation-Title: TorchServe {TORCHSERVE_VERSION} /ping once the model has loaded, drain on SIGTERM\r\n"
    "\r\n"
)


def torchserve_frontend_jar() -> Path:
    # TorchServe's Python package carries the frontend jar; found, not imported (importing it starts nothing, but
    # needs its dependencies).
    spec = importlib.util.find_spec("ts")
    if spec is None or spec.origin is None:
        raise SystemExit(f"TorchServe is not installed here: run this with a Python that has torchserve=={TORCHSERVE_VERSION}.")
    package = Path(spec.origin).parent
    version = (package / "version.txt").read_text().strip()
    if version != TORCHSERVE_VERSION:
        raise SystemExit(f"TorchServe {version} is installed; the plugin is built against the image's {TORCHSERVE_VERSION}.")
    return package / "frontend" / "model-server.jar"


def build(out: Path) -> None:
    with tempfile.TemporaryDirectory() as classes:
        sources = sorted(str(p) for p in SOURCE.rglob("*.java"))
        subprocess.run(
            ["javac", "--release", JAVA_RELEASE, "-encoding", "UTF-8", "-Xlint:all", "-Werror", "-proc:none",
             "-cp", str(torchserve_frontend_jar()), "-d", classes, *sources],
            check=True,
        )
        entries = {"META-INF/MANIFEST.MF": MANIFEST.encode()}
        for root in (Path(classes), SOURCE):
            for path in sorted(root.rglob("*")):
                if path.is_file() and path.suffix != ".java":
                    entries[path.relative_to(root).as_posix()] = path.read_bytes()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as jar:
        for name in ["META-INF/MANIFEST.MF", *sorted(n for n in entries if n != "META-INF/MANIFEST.MF")]:
            info = zipfile.ZipInfo(name, ENTRY_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            jar.writestr(info, entries[name])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if the committed jar is not what the source builds")
    args = parser.parse_args()
    if not args.check:
        build(JAR)
        print(f"wrote {JAR}")
        return
    with tempfile.TemporaryDirectory() as scratch:
        fresh = Path(scratch) / JAR.name
        build(fresh)
        if not JAR.exists() or fresh.read_bytes() != JAR.read_bytes():
            sys.exit(f"{JAR} is not what its source builds: run {Path(__file__).name} with the model-server venv's Python and commit the jar.")
    print(f"{JAR.name} is what its source builds")


if __name__ == "__main__":
    main()
