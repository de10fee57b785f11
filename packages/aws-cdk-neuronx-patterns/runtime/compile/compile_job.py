"""AWS Batch entry point: compile a Hugging Face Llama checkpoint with transformers-neuronx into S3.

Configured only by the environment variables named in contract.json `compileJob.environment`.
Phases, each logged with its seconds and bytes:

  check-marker  the artifact prefix already holds the marker: log it and exit 0 at once
  read-token    the Hugging Face token from Secrets Manager (only when a secret is configured)
  disk-check    resolves the revision to a commit, reads that commit's config.json alone (the model must be a
                Llama: model_type 'llama'), then the work dir must hold the checkpoint and the compiler's output
                (contract diskSpace)
  download      the checkpoint (that commit) from the Hugging Face Hub or from S3 into <workDir>/<checkpointDir>
  compile       transformers-neuronx into <workDir>/<compiledDir>, as many graphs at once as host memory allows
  upload        both directories to the artifact prefix, under the same names
  write-marker  the manifest, last: a prefix without it is incomplete, whatever else it holds

Any failure logs `phase <name> failed: <reason>` and exits with the contract's failure code,
without a marker. See ../README.md.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from collections.abc import Iterator, Mapping, Sequence

import boto3

import model_source
import neuronx_compile
import s3_objects
from neuronx_common import (
    COMPILE_OPTIONS,
    CONTINUOUS_BATCHING,
    CONTRACT,
    LAYOUT,
    MANIFEST,
    OPTION_DEFAULTS,
    QUANT_NONE,
    installed_versions,
)

HERE = Path(__file__).resolve().parent
RELEASE_SCRIPT = HERE / "release_entrypoint.py"

ENV = CONTRACT["compileJob"]["environment"]
EXIT_CODES = CONTRACT["compileJob"]["exitCodes"]
DISK_SPACE = CONTRACT["compileJob"]["diskSpace"]

GIB = neuronx_compile.GIB
SUPPORTED_AMPS = ("bf16", "f16", "f32")
ENABLED = CONTRACT["compileJob"]["enabledValue"]
"""Value that turns on a boolean environment variable (releaseEntrypoint)."""
REDACTED = "***"
SUPPORTED_MODEL_TYPE = "llama"
"""config.json `model_type` of the checkpoints this job builds (it compiles transformers-neuronx LlamaForSampling)."""

log = logging.getLogger("compile_job")


class PhaseFailed(Exception):
    def __init__(self, phase: str, reason: str):
        super().__init__(f"phase {phase} failed: {reason}")
        self.phase = phase
        self.reason = reason


class SecretRedactor(logging.Filter):
    """Replaces registered secrets in every record that reaches the job's log handler."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()

    def add(self, secret: str) -> None:
        self._secrets.add(secret)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = message
        for secret in self._secrets:
            redacted = redacted.replace(secret, REDACTED)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


REDACTOR = SecretRedactor()


def configure_logging() -> None:
    """One line per event on stdout (CloudWatch Logs), secrets redacted, whoever logs them."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    handler.addFilter(REDACTOR)
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)


# ---------------------------------------------------------------------------------------------
# Configuration


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError
    return number


def _one_of(choices: Sequence[Any], parse=str):
    def parser(value: str) -> Any:
        parsed = parse(value)
        if parsed not in choices:
            raise ValueError
        return parsed

    return parser


_OPTION_PARSERS = {
    "tpDegree": (_positive_int, "a positive integer"),
    "nPositions": (_positive_int, "a positive integer"),
    "batchSize": (_positive_int, "a positive integer"),
    "amp": (_one_of(SUPPORTED_AMPS), f"one of {', '.join(SUPPORTED_AMPS)}"),
    "quantDtype": (
        _one_of((QUANT_NONE, *COMPILE_OPTIONS["quantDtypes"])),
        f"empty or one of {', '.join(COMPILE_OPTIONS['quantDtypes'])}",
    ),
    "optLevel": (_one_of(COMPILE_OPTIONS["optLevels"], int), f"one of {', '.join(map(str, COMPILE_OPTIONS['optLevels']))}"),
}


@dataclass(frozen=True)
class JobConfig:
    model_id: str
    model_revision: str
    model_s3_uri: str
    hf_token_secret_arn: str
    artifact_s3_uri: str
    compiler_target: str
    image_uri: str
    work_dir: Path
    release_entrypoint: bool
    options: Mapping[str, Any]
    """The manifest option keys (contract `manifest.optionKeys`) with their parsed values."""

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> JobConfig:
        """Reads and checks every variable; raises ValueError naming all problems at once."""
        problems: list[str] = []

        def get(key: str) -> str:
            return environ.get(ENV[key], "").strip()

        options: dict[str, Any] = {}
        for key in MANIFEST["optionKeys"]:
            raw = environ.get(ENV[key])
            if raw is None:
                if key in OPTION_DEFAULTS:
                    options[key] = OPTION_DEFAULTS[key]
                else:
                    problems.append(f"{ENV[key]} is not set")
                continue
            parse, expected = _OPTION_PARSERS[key]
            try:
                options[key] = parse(raw.strip())
            except ValueError:
                problems.append(f"{ENV[key]} must be {expected}, got {raw!r}")

        # Not one of the manifest's required option keys: recorded only when set, so that the manifests of
        # artifacts compiled without it read as they always did (absent: false).
        continuous = get("continuousBatching")
        if continuous not in ("", ENABLED):
            problems.append(f"{ENV['continuousBatching']} must be {ENABLED!r} or unset, got {continuous!r}")
        elif continuous == ENABLED:
            options[CONTINUOUS_BATCHING] = True
        if options.get(CONTINUOUS_BATCHING) and options.get("batchSize", 0) < 2:
            problems.append(
                f"{ENV['continuousBatching']}={ENABLED!r} needs {ENV['batchSize']} of at least 2 (the slots), got"
                f" {environ.get(ENV['batchSize'])!r}"
            )

        if not (get("modelId") or get("modelS3Uri")):
            problems.append(f"set {ENV['modelId']} (Hugging Face) or {ENV['modelS3Uri']} (a checkpoint in S3)")
        if get("modelS3Uri"):
            problems += _s3_uri_problems("modelS3Uri", get("modelS3Uri"))
        if not get("artifactS3Uri").endswith("/"):
            problems.append(
                f"{ENV['artifactS3Uri']} must be an s3:// prefix ending with '/', got {get('artifactS3Uri')!r}"
            )
        else:
            problems += _s3_uri_problems("artifactS3Uri", get("artifactS3Uri"))
        if get("compilerTarget") not in COMPILE_OPTIONS["compilerTargets"]:
            problems.append(
                f"{ENV['compilerTarget']} must be one of {', '.join(COMPILE_OPTIONS['compilerTargets'])}"
                f" (the serving family), got {get('compilerTarget')!r}"
            )
        if not get("imageUri"):
            problems.append(f"{ENV['imageUri']} is not set")
        if problems:
            raise ValueError("; ".join(problems))

        return cls(
            model_id=get("modelId"),
            model_revision=get("modelRevision"),
            model_s3_uri=get("modelS3Uri"),
            hf_token_secret_arn=get("hfTokenSecretArn"),
            artifact_s3_uri=get("artifactS3Uri"),
            compiler_target=get("compilerTarget"),
            image_uri=get("imageUri"),
            work_dir=Path(get("workDir") or Path.cwd() / "neuronx-compile"),
            release_entrypoint=get("releaseEntrypoint") == ENABLED,
            options=options,
        )


def _s3_uri_problems(key: str, uri: str) -> list[str]:
    try:
        s3_objects.S3Uri.parse(uri)
    except ValueError as error:
        return [f"{ENV[key]}: {error}"]
    return []


# ---------------------------------------------------------------------------------------------
# Phases


class PhaseLog:
    """Times phases, logs their start and end (seconds, bytes) and turns errors into PhaseFailed."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str) -> Iterator[dict[str, int]]:
        """The body may set `measure["bytes"]`, logged with the phase's end."""
        log.info("phase %s started", name)
        measure: dict[str, int] = {}
        started = time.monotonic()
        try:
            yield measure
        except Exception as error:  # every failure ends the job through one log line
            raise PhaseFailed(name, _one_line(f"{type(error).__name__}: {error}")) from error
        seconds = round(time.monotonic() - started, 1)
        self.seconds[name] = seconds
        if "bytes" in measure:
            log.info(
                "phase %s finished in %.1f s, %d bytes (%.2f GiB)",
                name,
                seconds,
                measure["bytes"],
                measure["bytes"] / GIB,
            )
        else:
            log.info("phase %s finished in %.1f s", name, seconds)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _local_dir(layout_key: str) -> str:
    return LAYOUT[layout_key].rstrip("/")


def _disk_factor(quantized: bool) -> float:
    return DISK_SPACE["factorQuantized"] if quantized else DISK_SPACE["factorUnquantized"]


def required_disk_bytes(snapshot_bytes: int, quantized: bool) -> int:
    return int(snapshot_bytes * _disk_factor(quantized) + DISK_SPACE["marginGiB"] * GIB)


def check_disk(work_dir: Path, snapshot_bytes: int, quantized: bool) -> None:
    free = shutil.disk_usage(work_dir).free
    needed = required_disk_bytes(snapshot_bytes, quantized)
    numbers = (
        f"{free / GIB:.1f} GiB free in {work_dir}, {needed / GIB:.1f} GiB needed"
        f" (snapshot {snapshot_bytes / GIB:.1f} GiB x {_disk_factor(quantized)} + {DISK_SPACE['marginGiB']} GiB margin)"
    )
    if free < needed:
        raise OSError(f"not enough disk space: {numbers}; give the compile job a larger volume")
    log.info("disk space ok: %s", numbers)


def check_model_type(config_path: Path, source: object) -> None:
    """Raises ValueError unless config.json names a Llama model (what LlamaForSampling builds)."""
    try:
        model_type = json.loads(config_path.read_text()).get("model_type")
    except (ValueError, AttributeError) as error:
        raise ValueError(f"{model_source.CONFIG_FILE} of {source} is not a JSON object: {error}") from error
    if model_type != SUPPORTED_MODEL_TYPE:
        raise ValueError(
            f"{source} is not a Llama model: its {model_source.CONFIG_FILE} has model_type {model_type!r}, and this"
            f" job compiles only model_type {SUPPORTED_MODEL_TYPE!r} (transformers-neuronx LlamaForSampling);"
            " use a Llama-architecture checkpoint"
        )
    log.info("%s of %s: model_type %r", model_source.CONFIG_FILE, source, model_type)


def local_files(directory: Path) -> list[Path]:
    """Files under `directory`, without hidden entries (huggingface_hub keeps metadata in .cache/)."""
    return sorted(
        path
        for path in directory.rglob("*")
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(directory).parts)
    )


def upload_artifacts(s3: Any, work_dir: Path, artifact: s3_objects.S3Uri) -> list[dict[str, Any]]:
    """Uploads the checkpoint and compiled dirs; returns the manifest's `files` entries.

    An upload that fails is aborted by boto3's transfer manager, so no incomplete multipart upload stays behind. An
    attempt killed while uploading (a Spot reclaim, its timeout: the image's entry point does not pass SIGTERM on,
    SIGKILL follows) cannot abort; the job-state function aborts those uploads when the job ends.
    """
    files = []
    for layout_key in ("checkpointDir", "compiledDir"):
        directory = work_dir / _local_dir(layout_key)
        for path in local_files(directory):
            key = LAYOUT[layout_key] + path.relative_to(directory).as_posix()
            s3_objects.upload_file(s3, path, artifact.bucket, artifact.key + key)
            files.append({"key": key, "bytes": path.stat().st_size})
    return files


def build_manifest(
    config: JobConfig,
    model_commit: str,
    neuron_packages: Mapping[str, str | None],
    files: list[dict[str, Any]],
    phases: Mapping[str, float],
    completed_at: datetime,
) -> dict[str, Any]:
    """The marker's content. `files` keys are relative to the artifact prefix (= to the model dir).

    `modelRevision` is the revision as configured (a branch, a tag or a commit; "" for the default
    branch), `modelCommit` the commit it resolved to and that was downloaded ("" for weights from S3).
    """
    return {
        "schemaVersion": MANIFEST["schemaVersion"],
        "modelId": config.model_id or config.model_s3_uri,
        "modelRevision": config.model_revision,
        "modelCommit": model_commit,
        "imageUri": config.image_uri,
        "neuronPackages": dict(neuron_packages),
        "compilerTarget": config.compiler_target,
        "options": dict(config.options),
        "files": files,
        "phases": dict(phases),
        "completedAt": completed_at.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
    }


def run(config: JobConfig, s3: Any) -> None:
    """All phases; raises PhaseFailed. Returns early when the marker already exists."""
    phases = PhaseLog()
    artifact = s3_objects.S3Uri.parse(config.artifact_s3_uri)
    marker_key = artifact.key + LAYOUT["marker"]

    with phases.phase("check-marker"):
        if s3_objects.object_exists(s3, artifact.bucket, marker_key):
            log.info("marker s3://%s/%s exists: artifacts are complete, nothing to do", artifact.bucket, marker_key)
            return

    token = None
    if config.hf_token_secret_arn:
        with phases.phase("read-token"):
            token = model_source.read_hf_token(config.hf_token_secret_arn)
            REDACTOR.add(token)

    source = (
        model_source.S3Source(s3, config.model_s3_uri)
        if config.model_s3_uri
        else model_source.HuggingFaceSource(config.model_id, config.model_revision or None, token)
    )
    checkpoint_dir = config.work_dir / _local_dir("checkpointDir")
    compiled_dir = config.work_dir / _local_dir("compiledDir")

    with phases.phase("disk-check") as measure:
        config.work_dir.mkdir(parents=True, exist_ok=True)
        measure["bytes"] = source.size_bytes()
        if source.commit:
            revision = config.model_revision or "(default branch)"
            log.info("revision %s of %s is commit %s: downloading that", revision, config.model_id, source.commit)
        # Minutes after the start, not after a download of tens of GB: a model this job cannot build fails here.
        check_model_type(source.download_config(checkpoint_dir), source)
        check_disk(config.work_dir, measure["bytes"], quantized=config.options["quantDtype"] != QUANT_NONE)

    with phases.phase("download") as measure:
        log.info("downloading %s to %s", source, checkpoint_dir)
        source.download(checkpoint_dir)
        measure["bytes"] = sum(path.stat().st_size for path in local_files(checkpoint_dir))
        if not (checkpoint_dir / model_source.GENERATION_CONFIG_FILE).is_file():
            log.warning(
                "%s has no %s: the endpoint knows only the tokenizer's end-of-turn tokens",
                source,
                model_source.GENERATION_CONFIG_FILE,
            )

    with phases.phase("compile") as measure:
        flags = neuronx_compile.neuron_cc_flags(
            os.environ.get(neuronx_compile.NEURON_CC_FLAGS, ""), config.options["optLevel"]
        )
        os.environ[neuronx_compile.NEURON_CC_FLAGS] = flags
        neuron_packages = installed_versions(MANIFEST["neuronPackages"])
        available = neuronx_compile.available_memory_bytes()
        workers = neuronx_compile.compile_workers(available)
        log.info(
            "compiling for %s (NEFFs of the trn1 target, which inf2 and trn1 both load) with %s=%r, options %s and %s;"
            " at most %d graphs at once (%.1f GiB available, %d GiB each)",
            config.compiler_target,
            neuronx_compile.NEURON_CC_FLAGS,
            flags,
            json.dumps(config.options),
            json.dumps(neuron_packages),
            workers,
            available / GIB,
            neuronx_compile.COMPILE_WORKER_MEMORY_GIB,
        )
        neuronx_compile.compile_checkpoint(checkpoint_dir, compiled_dir, config.options, workers)
        measure["bytes"] = sum(path.stat().st_size for path in local_files(compiled_dir))
        log.info(
            "the largest child process (the compilers and their workers) peaked at %.1f GiB resident",
            neuronx_compile.peak_child_rss_bytes() / GIB,
        )

    with phases.phase("upload") as measure:
        files = upload_artifacts(s3, config.work_dir, artifact)
        measure["bytes"] = sum(entry["bytes"] for entry in files)

    with phases.phase("write-marker"):
        manifest = build_manifest(
            config, source.commit, neuron_packages, files, phases.seconds, datetime.now(timezone.utc)
        )
        s3.put_object(
            Bucket=artifact.bucket,
            Key=marker_key,
            Body=json.dumps(manifest, indent=2).encode(),
            ContentType="application/json",
        )
        log.info("marker written to s3://%s/%s", artifact.bucket, marker_key)


def start_release_watcher() -> None:
    """Detached release_entrypoint.py: it outlives this process and ends the image's keep-alive."""
    subprocess.Popen(
        [sys.executable, str(RELEASE_SCRIPT)],
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    log.info("started %s to end the entry point's keep-alive process", RELEASE_SCRIPT.name)


def main(environ: Mapping[str, str] = os.environ) -> int:
    configure_logging()
    try:
        try:
            config = JobConfig.from_environ(environ)
        except ValueError as error:
            raise PhaseFailed("configure", str(error)) from error
        run(config, boto3.client("s3"))
        if config.release_entrypoint:
            with PhaseLog().phase("release-entrypoint"):
                start_release_watcher()
    except PhaseFailed as failure:
        log.error("phase %s failed: %s", failure.phase, failure.reason)
        return EXIT_CODES["failure"]
    return EXIT_CODES["success"]


if __name__ == "__main__":
    sys.exit(main())
