"""The compile job end to end, with S3 and Secrets Manager in moto and fakes for the Hub and the compiler."""

import importlib.metadata
import json
import shutil
import subprocess
import sys
import types
from collections import namedtuple
from datetime import datetime
from unittest import mock

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

import compile_job
import s3_objects
from conftest import CONTRACT_PATH
import neuronx_compile

REGION = "us-east-1"
BUCKET = "artifacts"
PREFIX = "calm3-22b-chat/0123abcd/"
MODEL_ID = "cyberagent/calm3-22b-chat"
REVISION = "main"
"""A branch, as the constructs allow (with a warning): the job must pin it to COMMIT once."""
COMMIT = "0123abcd" * 5
TOKEN = "hf_TopSecretTokenValue42"
SECRET_NAME = "hf-token"

CHECKPOINT = {
    "config.json": b'{"architectures": ["LlamaForCausalLM"], "model_type": "llama"}',
    "generation_config.json": b'{"eos_token_id": [65001, 65008]}',
    "tokenizer.json": b'{"model": {}}',
    "model-00001-of-00001.safetensors": b"w" * 4096,
}
"""What the fake Hub downloads; it also leaves huggingface_hub metadata under .cache/."""
NOT_DOWNLOADED = {"README.md": 100, "pytorch_model.bin": 9999}
NEFF = ("model.neff", b"n" * 512)

Sibling = namedtuple("Sibling", "rfilename size")


class FakeHub(types.ModuleType):
    """Stands in for the huggingface_hub module: records calls, writes CHECKPOINT."""

    def __init__(self, events):
        super().__init__("huggingface_hub")
        self.events = events
        self.calls = []
        self.download_error = None
        self.sha = COMMIT
        self.config = CHECKPOINT["config.json"]
        hub = self

        class HfApi:
            def model_info(self, repo_id, **kwargs):
                hub.calls.append(("model_info", repo_id, kwargs))
                files = {name: len(content) for name, content in CHECKPOINT.items()} | NOT_DOWNLOADED
                return types.SimpleNamespace(
                    sha=hub.sha, siblings=[Sibling(name, size) for name, size in files.items()]
                )

        self.HfApi = HfApi

    def hf_hub_download(self, repo_id, filename, **kwargs):
        self.calls.append(("hf_hub_download", repo_id, filename, kwargs))
        self.events.append(("config", filename))
        path = compile_job.Path(kwargs["local_dir"]) / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.config)
        return str(path)

    def snapshot_download(self, repo_id, **kwargs):
        self.calls.append(("snapshot_download", repo_id, kwargs))
        self.events.append("download")
        if self.download_error:
            raise self.download_error
        local_dir = compile_job.Path(kwargs["local_dir"])
        for name, content in CHECKPOINT.items():
            (local_dir / name).parent.mkdir(parents=True, exist_ok=True)
            (local_dir / name).write_bytes(content)
        (local_dir / ".cache/huggingface/download").mkdir(parents=True)
        (local_dir / ".cache/huggingface/download/config.json.metadata").write_text("etag")


class RecordingS3:
    """The moto S3 client, recording uploads and puts in the shared event list; each call can be made to fail."""

    def __init__(self, client, events):
        self._client = client
        self._events = events
        self.upload_error = None
        self.head_error = None
        self.put_error = None

    def head_object(self, **kwargs):
        if self.head_error:
            raise self.head_error
        return self._client.head_object(**kwargs)

    def upload_file(self, filename, bucket, key, **kwargs):
        self._events.append(("upload", key))
        if self.upload_error:
            raise self.upload_error
        return self._client.upload_file(filename, bucket, key, **kwargs)

    def put_object(self, **kwargs):
        if self.put_error:
            raise self.put_error
        self._events.append(("put", kwargs["Key"]))
        return self._client.put_object(**kwargs)

    def __getattr__(self, name):
        return getattr(self._client, name)


class Job:
    """One test's world: environment, fakes, and what they saw."""

    def __init__(self, contract, tmp_path, monkeypatch):
        self.contract = contract
        self.env_names = contract["compileJob"]["environment"]
        self.events = []
        self.hub = FakeHub(self.events)
        self.compile_calls = []
        self.compile_error = None
        self.popen = mock.Mock()
        self.s3 = RecordingS3(boto3.client("s3", region_name=REGION), self.events)
        self.work_dir = tmp_path / "work"
        self.environ = self.env(
            modelId=MODEL_ID,
            modelRevision=REVISION,
            artifactS3Uri=f"s3://{BUCKET}/{PREFIX}",
            tpDegree="2",
            nPositions="1024",
            quantDtype="s8",
            optLevel="3",
            compilerTarget="trn1",
            imageUri="763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference-neuronx:2.5.1",
            workDir=str(self.work_dir),
            releaseEntrypoint="1",
        )
        real_client = boto3.client
        monkeypatch.setattr(
            boto3, "client", lambda service, **kw: self.s3 if service == "s3" else real_client(service, **kw)
        )
        monkeypatch.setitem(sys.modules, "huggingface_hub", self.hub)
        monkeypatch.setattr(neuronx_compile, "compile_checkpoint", self.fake_compile)
        monkeypatch.setattr(subprocess, "Popen", self.popen)
        monkeypatch.delenv(neuronx_compile.NEURON_CC_FLAGS, raising=False)

    def env(self, **values):
        return {self.env_names[key]: value for key, value in values.items()}

    def fake_compile(self, checkpoint_dir, compiled_dir, options, workers):
        self.events.append("compile")
        self.compile_calls.append(
            (checkpoint_dir, compiled_dir, dict(options), compile_job.os.environ[neuronx_compile.NEURON_CC_FLAGS])
        )
        self.compile_workers = workers
        if self.compile_error:
            raise self.compile_error
        compiled_dir.mkdir(parents=True)
        (compiled_dir / NEFF[0]).write_bytes(NEFF[1])

    def run(self):
        return compile_job.main(self.environ)

    def marker_key(self):
        return PREFIX + self.contract["layout"]["marker"]

    def marker(self):
        body = self.s3.get_object(Bucket=BUCKET, Key=self.marker_key())["Body"].read()
        return json.loads(body)

    def has_marker(self):
        return "Contents" in self.s3.list_objects_v2(Bucket=BUCKET, Prefix=self.marker_key())

    def objects(self):
        listed = self.s3.list_objects_v2(Bucket=BUCKET, Prefix=PREFIX).get("Contents", [])
        return {item["Key"][len(PREFIX) :]: item["Size"] for item in listed}


@pytest.fixture
def job(contract, tmp_path, monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
        yield Job(contract, tmp_path, monkeypatch)


def add_token_secret(job, secret_string):
    arn = boto3.client("secretsmanager", region_name=REGION).create_secret(
        Name=SECRET_NAME, SecretString=secret_string
    )["ARN"]
    job.environ[job.env_names["hfTokenSecretArn"]] = arn


def test_success_uploads_checkpoint_and_neffs_then_writes_the_marker_last(job, contract):
    assert job.run() == contract["compileJob"]["exitCodes"]["success"]

    layout = contract["layout"]
    assert job.events[:3] == [("config", "config.json"), "download", "compile"]
    uploads = [key for kind, key in job.events[3:-1]]
    assert all(kind == "upload" for kind, _ in job.events[3:-1])
    assert sorted(uploads) == sorted(PREFIX + layout["checkpointDir"] + name for name in CHECKPOINT) + [
        PREFIX + layout["compiledDir"] + NEFF[0]
    ]
    assert job.events[-1] == ("put", job.marker_key())
    assert not any(".cache" in key for key in job.objects())


def test_manifest_matches_the_contract_and_the_uploaded_objects(job, contract):
    job.run()
    manifest = job.marker()

    assert list(manifest) == contract["manifest"]["requiredKeys"]
    assert manifest["schemaVersion"] == contract["manifest"]["schemaVersion"]
    assert manifest["modelId"] == MODEL_ID
    assert (manifest["modelRevision"], manifest["modelCommit"]) == (REVISION, COMMIT)
    # No Neuron SDK in the tests; the image's versions are recorded as found.
    assert manifest["neuronPackages"] == {name: None for name in contract["manifest"]["neuronPackages"]}
    assert manifest["compilerTarget"] == "trn1"
    assert manifest["imageUri"] == job.environ[job.env_names["imageUri"]]
    assert manifest["options"] == {
        "tpDegree": 2,
        "nPositions": 1024,
        "batchSize": 1,
        "amp": "bf16",
        "quantDtype": "s8",
        "optLevel": 3,
    }
    assert list(manifest["options"]) == contract["manifest"]["optionKeys"]
    uploaded = {key: size for key, size in job.objects().items() if key != contract["layout"]["marker"]}
    assert {entry["key"]: entry["bytes"] for entry in manifest["files"]} == uploaded
    assert uploaded[contract["layout"]["checkpointDir"] + "model-00001-of-00001.safetensors"] == 4096
    assert list(manifest["phases"]) == ["check-marker", "disk-check", "download", "compile", "upload"]
    assert manifest["completedAt"].endswith("Z")
    assert datetime.fromisoformat(manifest["completedAt"].replace("Z", "+00:00")).utcoffset().total_seconds() == 0


def test_download_and_compile_get_the_configured_options(job, contract):
    job.run()

    (_, repo_id, info_args), (_, _, config_file, config_args), (_, _, download_args) = job.hub.calls
    assert repo_id == MODEL_ID
    assert info_args == {"revision": REVISION, "files_metadata": True, "token": None}
    # The branch was resolved once; config.json and the download ask for that commit, not for the branch again.
    assert (config_file, config_args["revision"]) == ("config.json", COMMIT)
    assert config_args["local_dir"] == download_args["local_dir"]
    assert download_args["revision"] == COMMIT
    assert download_args["max_workers"] > 1
    assert download_args["local_dir"] == str(job.work_dir / contract["layout"]["checkpointDir"].rstrip("/"))
    checkpoint_dir, compiled_dir, options, flags = job.compile_calls[0]
    assert str(checkpoint_dir) == download_args["local_dir"]
    assert compiled_dir == job.work_dir / contract["layout"]["compiledDir"].rstrip("/")
    assert options["quantDtype"] == "s8" and options["tpDegree"] == 2
    # No --target: transformers-neuronx gives neuronx-cc --target=trn1 itself, and those NEFFs serve on inf2 too.
    assert flags == "-O3"


def test_continuous_batching_reaches_the_compile_and_the_manifest(job, contract):
    job.environ.update(job.env(batchSize="6", continuousBatching="1"))
    job.run()
    _, _, options, _ = job.compile_calls[0]
    assert options["continuousBatching"] is True and options["batchSize"] == 6
    assert job.marker()["options"]["continuousBatching"] is True


@pytest.mark.parametrize(
    "value, batch_size, expected",
    [("true", "6", " must be '1' or unset, got 'true'"), ("1", "1", "='1' needs NEURONX_BATCH_SIZE of at least 2 (the slots), got '1'")],
)
def test_continuous_batching_refuses_what_would_not_serve(job, contract, capsys, value, batch_size, expected):
    job.environ.update(job.env(batchSize=batch_size, continuousBatching=value))
    assert job.run() == contract["compileJob"]["exitCodes"]["failure"]
    line = next(line for line in capsys.readouterr().out.splitlines() if "failed" in line)
    assert "phase configure failed:" in line and job.env_names["continuousBatching"] + expected in line
    assert job.compile_calls == []


def test_existing_neuron_cc_flags_are_kept_without_a_second_target(job, monkeypatch):
    monkeypatch.setenv(neuronx_compile.NEURON_CC_FLAGS, "--verbose=info --target=inf2 -O1")
    job.run()
    assert job.compile_calls[0][3] == "--verbose=info -O3"


def test_existing_marker_exits_at_once_without_download_or_compile(job, contract, capsys):
    job.s3.put_object(Bucket=BUCKET, Key=job.marker_key(), Body=b"{}")
    job.events.clear()

    assert job.run() == contract["compileJob"]["exitCodes"]["success"]

    assert job.events == []
    assert job.hub.calls == []
    assert f"marker s3://{BUCKET}/{job.marker_key()} exists" in capsys.readouterr().out
    job.popen.assert_called_once()


def test_release_watcher_is_started_detached_after_success(job):
    job.run()

    job.popen.assert_called_once()
    (command,), options = job.popen.call_args
    assert command == [sys.executable, str(compile_job.RELEASE_SCRIPT)]
    assert compile_job.RELEASE_SCRIPT.is_file()
    assert options == {
        "start_new_session": True,
        "stdin": subprocess.DEVNULL,
        "stdout": subprocess.DEVNULL,
        "stderr": subprocess.DEVNULL,
    }


def test_release_watcher_is_not_started_without_the_flag(job):
    del job.environ[job.env_names["releaseEntrypoint"]]
    job.run()
    job.popen.assert_not_called()


def fail_download(job):
    job.hub.download_error = OSError("connection reset\nby peer")


def fail_compile(job):
    job.compile_error = RuntimeError("neuronx-cc returned 70")


def fail_upload(job):
    job.s3.upload_error = OSError("Access Denied")


def client_error(code, message, operation):
    return ClientError({"Error": {"Code": code, "Message": message}}, operation)


def fail_check_marker(job):
    # HEAD answers 403 without s3:ListBucket (or with a wrong KMS grant): not "no marker", a failure.
    job.s3.head_error = client_error("403", "Forbidden", "HeadObject")


def fail_write_marker(job):
    job.s3.put_error = client_error("AccessDenied", "Access Denied", "PutObject")


@pytest.mark.parametrize(
    "phase, make_it_fail, reason",
    [
        ("download", fail_download, "OSError: connection reset by peer"),
        ("compile", fail_compile, "RuntimeError: neuronx-cc returned 70"),
        ("upload", fail_upload, "OSError: Access Denied"),
        (
            "check-marker",
            fail_check_marker,
            "ClientError: An error occurred (403) when calling the HeadObject operation: Forbidden",
        ),
        (
            "write-marker",
            fail_write_marker,
            "ClientError: An error occurred (AccessDenied) when calling the PutObject operation: Access Denied",
        ),
    ],
)
def test_a_failing_phase_exits_non_zero_names_the_phase_and_writes_no_marker(
    job, contract, capsys, phase, make_it_fail, reason
):
    make_it_fail(job)

    assert job.run() == contract["compileJob"]["exitCodes"]["failure"]

    assert f"phase {phase} failed: {reason}\n" in capsys.readouterr().out
    assert not job.has_marker()
    assert not any(event[0] == "put" for event in job.events if isinstance(event, tuple))
    job.popen.assert_not_called()


def test_disk_check_failure_names_the_numbers_and_downloads_nothing(job, contract, capsys, monkeypatch):
    usage = shutil.disk_usage(job.work_dir.parent)
    monkeypatch.setattr(compile_job.shutil, "disk_usage", lambda path: usage._replace(free=5 * 1024**3))

    assert job.run() == contract["compileJob"]["exitCodes"]["failure"]

    line = next(line for line in capsys.readouterr().out.splitlines() if "failed" in line)
    # 4.2 KiB snapshot x 2 (quantized) + 10 GiB margin
    assert "phase disk-check failed: OSError: not enough disk space: 5.0 GiB free in" in line
    assert "10.0 GiB needed (snapshot 0.0 GiB x 2.0 + 10 GiB margin)" in line
    assert "download" not in job.events
    assert not job.has_marker()


def test_required_disk_space_uses_the_contract_factors(contract):
    space = contract["compileJob"]["diskSpace"]
    gib = 1024**3
    assert compile_job.required_disk_bytes(42 * gib, quantized=False) == int(
        (42 * space["factorUnquantized"] + space["marginGiB"]) * gib
    )
    assert compile_job.required_disk_bytes(42 * gib, quantized=True) == int(
        (42 * space["factorQuantized"] + space["marginGiB"]) * gib
    )


@pytest.mark.parametrize(
    "secret_string", [TOKEN, json.dumps({"token": TOKEN}), json.dumps({"HF_TOKEN": TOKEN, "other": "x"})]
)
def test_token_from_secrets_manager_reaches_the_hub(job, secret_string):
    add_token_secret(job, secret_string)
    job.run()
    assert [call[-1]["token"] for call in job.hub.calls] == [TOKEN, TOKEN, TOKEN]


def test_token_never_appears_in_the_output_even_on_failure(job, contract, capsys):
    add_token_secret(job, json.dumps({"token": TOKEN}))
    job.hub.download_error = PermissionError(f"401 for url with Authorization: Bearer {TOKEN}")
    real_download = job.hub.snapshot_download

    def chatty_download(repo_id, **kwargs):
        compile_job.logging.getLogger("huggingface_hub").warning("using token %s", kwargs["token"])
        return real_download(repo_id, **kwargs)

    job.hub.snapshot_download = chatty_download

    assert job.run() == contract["compileJob"]["exitCodes"]["failure"]

    captured = capsys.readouterr()
    assert "phase download failed: PermissionError: 401 for url with Authorization: Bearer ***" in captured.out
    assert "using token ***" in captured.out
    assert TOKEN not in captured.out + captured.err


def test_a_secret_without_a_token_key_fails_the_read_token_phase(job, contract, capsys):
    add_token_secret(job, json.dumps({"password": TOKEN}))
    assert job.run() == contract["compileJob"]["exitCodes"]["failure"]
    out = capsys.readouterr().out
    assert "phase read-token failed: ValueError: secret arn:aws:secretsmanager:" in out
    assert TOKEN not in out


def test_weights_already_in_s3_are_sized_downloaded_and_uploaded(job, contract):
    source_prefix = "sources/calm3/"
    for name, content in CHECKPOINT.items():
        job.s3.put_object(Bucket=BUCKET, Key=source_prefix + name, Body=content)
    job.s3.put_object(Bucket=BUCKET, Key=source_prefix + "pytorch_model.bin", Body=b"b" * 100)
    job.environ[job.env_names["modelS3Uri"]] = f"s3://{BUCKET}/{source_prefix.rstrip('/')}"

    assert job.run() == contract["compileJob"]["exitCodes"]["success"]

    assert job.hub.calls == []  # the model id only labels the weights
    manifest = job.marker()
    assert manifest["modelId"] == MODEL_ID
    assert (manifest["modelRevision"], manifest["modelCommit"]) == (REVISION, "")
    checkpoint_files = {
        entry["key"]: entry["bytes"]
        for entry in manifest["files"]
        if entry["key"].startswith(contract["layout"]["checkpointDir"])
    }
    assert checkpoint_files == {
        contract["layout"]["checkpointDir"] + name: len(content) for name, content in CHECKPOINT.items()
    }


def test_without_a_model_id_the_s3_uri_names_the_model(job):
    job.s3.put_object(Bucket=BUCKET, Key="sources/calm3/model.safetensors", Body=b"w")
    job.s3.put_object(Bucket=BUCKET, Key="sources/calm3/config.json", Body=CHECKPOINT["config.json"])
    del job.environ[job.env_names["modelId"]]
    job.environ[job.env_names["modelS3Uri"]] = f"s3://{BUCKET}/sources/calm3/"

    job.run()

    assert job.marker()["modelId"] == f"s3://{BUCKET}/sources/calm3/"


def test_a_source_without_safetensors_fails_the_disk_check(job, contract, capsys):
    job.s3.put_object(Bucket=BUCKET, Key="sources/old/pytorch_model.bin", Body=b"b")
    job.s3.put_object(Bucket=BUCKET, Key="sources/old/config.json", Body=b"{}")
    job.environ[job.env_names["modelS3Uri"]] = f"s3://{BUCKET}/sources/old/"

    assert job.run() == contract["compileJob"]["exitCodes"]["failure"]
    assert (
        f"phase disk-check failed: ValueError: s3://{BUCKET}/sources/old/ holds no *.safetensors weights"
        in capsys.readouterr().out
    )


def test_configuration_problems_are_reported_together(job, contract, capsys):
    job.environ.update(
        job.env(
            modelS3Uri="https://b/k",
            tpDegree="two",
            optLevel="4",
            compilerTarget="inf1",
            artifactS3Uri="s3://b/no-slash",
        )
    )
    del job.environ[job.env_names["nPositions"]]

    assert job.run() == contract["compileJob"]["exitCodes"]["failure"]

    line = next(line for line in capsys.readouterr().out.splitlines() if "failed" in line)
    env = job.env_names
    assert "phase configure failed:" in line
    for expected in (
        f"{env['tpDegree']} must be a positive integer, got 'two'",
        f"{env['nPositions']} is not set",
        f"{env['optLevel']} must be one of 1, 2, 3, got '4'",
        f"{env['modelS3Uri']}: not an s3://bucket/key URI: 'https://b/k'",
        f"{env['artifactS3Uri']} must be an s3:// prefix ending with '/'",
        f"{env['compilerTarget']} must be one of inf2, trn1",
    ):
        assert expected in line
    assert job.events == []


def test_a_model_is_required(job, contract, capsys):
    del job.environ[job.env_names["modelId"]]
    assert job.run() == contract["compileJob"]["exitCodes"]["failure"]
    env = job.env_names
    assert (
        f"phase configure failed: set {env['modelId']} (Hugging Face) or {env['modelS3Uri']} (a checkpoint in S3)"
        in capsys.readouterr().out
    )


def pretend_the_neuron_sdk_is_installed(monkeypatch):
    image = {"neuronx-cc": "2.20.9961.0", "transformers-neuronx": "0.13.1216"}  # DLC tag 2.25.0, 2.7.0 Dockerfile ARGs
    real_version = importlib.metadata.version
    monkeypatch.setattr(
        importlib.metadata, "version", lambda name: image[name] if name in image else real_version(name)
    )
    return image


def test_manifest_has_the_shape_of_the_documented_example(job, contract, monkeypatch):
    """manifest.example.json is what the README documents and the TypeScript tests read: keep them true."""
    example = json.loads((CONTRACT_PATH.parent / "manifest.example.json").read_text())
    assert pretend_the_neuron_sdk_is_installed(monkeypatch) == example["neuronPackages"]
    job.run()
    manifest = job.marker()

    def shape(value):
        if isinstance(value, dict):
            return {key: shape(item) for key, item in value.items()}
        if isinstance(value, list):
            return [shape(value[0])] if value else []
        return type(value).__name__

    assert shape(manifest) == {**shape(example), "phases": shape(manifest["phases"])}
    assert list(manifest["phases"]) == list(example["phases"])


def test_the_default_branch_is_resolved_and_recorded_as_given(job):
    del job.environ[job.env_names["modelRevision"]]
    job.run()

    (_, _, info_args), _, (_, _, download_args) = job.hub.calls
    assert info_args["revision"] is None and download_args["revision"] == COMMIT
    assert (job.marker()["modelRevision"], job.marker()["modelCommit"]) == ("", COMMIT)


def test_a_hub_answer_without_a_commit_fails_the_disk_check(job, contract, capsys):
    job.hub.sha = None

    assert job.run() == contract["compileJob"]["exitCodes"]["failure"]

    assert (
        "phase disk-check failed: ValueError: the Hub gave no commit sha for"
        f" huggingface.co/{MODEL_ID}@{REVISION}: None"
        in capsys.readouterr().out
    )
    assert "download" not in job.events


def test_the_neuron_package_versions_of_the_image_are_recorded_and_logged(job, contract, monkeypatch, capsys):
    image = pretend_the_neuron_sdk_is_installed(monkeypatch)

    job.run()

    assert list(contract["manifest"]["neuronPackages"]) == list(image)
    assert job.marker()["neuronPackages"] == image
    assert json.dumps(image) in capsys.readouterr().out


def test_a_forbidden_marker_check_neither_downloads_nor_compiles(job, contract):
    fail_check_marker(job)
    assert job.run() == contract["compileJob"]["exitCodes"]["failure"]
    assert job.events == [] and job.hub.calls == []


def test_a_failed_marker_write_leaves_the_uploads_without_a_marker(job, contract):
    fail_write_marker(job)
    assert job.run() == contract["compileJob"]["exitCodes"]["failure"]
    # Everything else is there; without the marker the prefix still counts as incomplete and a rerun redoes it.
    assert contract["layout"]["compiledDir"] + NEFF[0] in job.objects()
    assert not job.has_marker()


@pytest.mark.parametrize("config", [b'{"model_type": "mistral"}', b'{"architectures": ["GPT2LMHeadModel"]}'])
def test_a_model_that_is_not_a_llama_fails_before_its_weights_are_downloaded(job, contract, capsys, config):
    job.hub.config = config
    model_type = json.loads(config).get("model_type")

    assert job.run() == contract["compileJob"]["exitCodes"]["failure"]

    line = next(line for line in capsys.readouterr().out.splitlines() if "failed" in line)
    assert (
        f"phase disk-check failed: ValueError: huggingface.co/{MODEL_ID}@{REVISION} (commit {COMMIT}) is not a Llama"
        f" model: its config.json has model_type {model_type!r}, and this job compiles only model_type 'llama'"
        in line
    )
    # config.json alone came down: no weights, no compile, no marker.
    assert job.events == [("config", "config.json")]
    assert [call[0] for call in job.hub.calls] == ["model_info", "hf_hub_download"]
    assert not job.has_marker()


def test_weights_in_s3_are_checked_for_their_model_type_first(job, contract, capsys):
    job.s3.put_object(Bucket=BUCKET, Key="sources/m/config.json", Body=b'{"model_type": "qwen2"}')
    job.s3.put_object(Bucket=BUCKET, Key="sources/m/model.safetensors", Body=b"w" * 64)
    job.environ[job.env_names["modelS3Uri"]] = f"s3://{BUCKET}/sources/m/"

    assert job.run() == contract["compileJob"]["exitCodes"]["failure"]

    assert (
        f"phase disk-check failed: ValueError: s3://{BUCKET}/sources/m/ is not a Llama model: its config.json has"
        " model_type 'qwen2'" in capsys.readouterr().out
    )
    assert not (job.work_dir / "checkpoint" / "model.safetensors").exists()
    assert "compile" not in job.events


def test_weights_in_s3_without_a_config_fail_the_disk_check(job, contract, capsys):
    job.s3.put_object(Bucket=BUCKET, Key="sources/m/model.safetensors", Body=b"w")
    job.environ[job.env_names["modelS3Uri"]] = f"s3://{BUCKET}/sources/m/"

    assert job.run() == contract["compileJob"]["exitCodes"]["failure"]
    expected = f"phase disk-check failed: ValueError: s3://{BUCKET}/sources/m/ holds no config.json"
    assert expected in capsys.readouterr().out


def test_the_generation_config_reaches_the_endpoints_checkpoint_dir_and_the_manifest(job, contract, capsys):
    # The handler reads the end-of-turn ids from it: it must be in checkpoint/ of the prefix, listed with its size.
    job.run()

    key = contract["layout"]["checkpointDir"] + "generation_config.json"
    assert job.objects()[key] == len(CHECKPOINT["generation_config.json"])
    assert {"key": key, "bytes": len(CHECKPOINT["generation_config.json"])} in job.marker()["files"]
    assert "generation_config.json" not in capsys.readouterr().out


def test_a_checkpoint_without_a_generation_config_is_compiled_with_a_warning(job, contract, capsys, monkeypatch):
    monkeypatch.delitem(CHECKPOINT, "generation_config.json")

    assert job.run() == contract["compileJob"]["exitCodes"]["success"]

    assert (
        f"WARNING compile_job huggingface.co/{MODEL_ID}@{REVISION} (commit {COMMIT}) has no generation_config.json"
        in capsys.readouterr().out
    )


def test_the_compile_runs_as_many_graphs_at_once_as_memory_allows(job, capsys, monkeypatch):
    # A trn1.2xlarge's container (0.9 x 32 GiB) holds two compilers, not the eight graphs of 1024 positions.
    monkeypatch.setattr(neuronx_compile, "available_memory_bytes", lambda: int(0.9 * 32 * 1024**3))

    job.run()

    assert job.compile_workers == 2
    assert "at most 2 graphs at once (28.8 GiB available, 14 GiB each)" in capsys.readouterr().out



def test_an_upload_that_fails_midway_leaves_no_incomplete_multipart_upload(job, contract, capsys, monkeypatch):
    """S3 keeps (and bills) the parts of an upload that is neither completed nor aborted: a failed upload aborts."""
    mib = s3_objects.MIB
    monkeypatch.setattr(
        s3_objects,
        "TRANSFER_CONFIG",
        s3_objects.TransferConfig(multipart_threshold=5 * mib, multipart_chunksize=5 * mib, max_concurrency=2),
    )
    fake_compile = job.fake_compile

    def compile_a_large_neff(checkpoint_dir, compiled_dir, options, workers):
        fake_compile(checkpoint_dir, compiled_dir, options, workers)
        (compiled_dir / "large.neff").write_bytes(b"n" * 12 * mib)

    monkeypatch.setattr(neuronx_compile, "compile_checkpoint", compile_a_large_neff)
    parts = []

    def fail_the_third_part(params, **kwargs):
        parts.append(params["PartNumber"])
        if params["PartNumber"] == 3:
            raise OSError("connection reset by peer")

    job.s3._client.meta.events.register("before-parameter-build.s3.UploadPart", fail_the_third_part)

    assert job.run() == contract["compileJob"]["exitCodes"]["failure"]

    assert "phase upload failed: OSError: connection reset by peer" in capsys.readouterr().out
    assert 3 in parts  # a multipart upload was under way
    assert job.s3.list_multipart_uploads(Bucket=BUCKET, Prefix=PREFIX).get("Uploads", []) == []
    assert not job.has_marker()
