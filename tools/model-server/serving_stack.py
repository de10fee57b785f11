"""The serving image's stack on this machine: the endpoint as the synthesized template configures it, the model
directory as SageMaker lays out the compile job's S3 prefix, and the image's own entry point started as the image
starts it. Used by test_model_server.py; see README.md for what is real and what is not.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
RUNTIME = REPO / "packages" / "aws-cdk-neuronx-patterns" / "runtime"
EXAMPLE_OUT = REPO / "examples" / "typescript" / "cdk.out"
FAKE_NEURON = HERE / "fake_neuron"

sys.path[:0] = [
    str(FAKE_NEURON), str(RUNTIME / "compile"), str(RUNTIME / "common"), str(RUNTIME / "inference"), str(RUNTIME / "tests"),
]
import compile_job  # noqa: E402  the compile job's own manifest code, so the marker is what a compile writes
import neuron_device  # noqa: E402
from chat_tokenizer import build_chat_tokenizer  # noqa: E402  the runtime tests' tiny calm3 (ChatML) tokenizer

CONTRACT = json.loads((RUNTIME / "contract.json").read_text())
ENDPOINT_ENV = CONTRACT["endpoint"]["environment"]
COMPILE_ENV = CONTRACT["compileJob"]["environment"]
SERVER_BATCHING = ("serverBatchSize", "serverMaxBatchDelay", "serverMinWorkers", "serverMaxWorkers", "serverResponseTimeout")
"""The toolkit's SAGEMAKER_TS_* variables (contract endpoint.batching): set together, or none."""
LAYOUT = CONTRACT["layout"]

# NeuronCores per SageMaker instance type: two per Inferentia2 or Trainium chip (aws-neuron-sdk docs, inf2-arch and
# trn1-arch; the table in shared FACTS.md). The library's own table is TypeScript (neuronx-instance-type.ts).
NEURON_CORES = {
    "ml.inf2.xlarge": 2, "ml.inf2.8xlarge": 2, "ml.inf2.24xlarge": 12, "ml.inf2.48xlarge": 24,
    "ml.trn1.2xlarge": 2, "ml.trn1.32xlarge": 32,
}  # fmt: skip

# How the image starts the server (aws-neuron/deep-learning-containers tag 2.25.0, as tag 2.21.0 did):
# docker/pytorch/inference/2.7.0/Dockerfile.neuronx has ENTRYPOINT ["python", "/usr/local/bin/dockerd-entrypoint.py"],
# no WORKDIR (so /) and these ENV lines; SageMaker runs the image with the argument `serve`, for which
# docker/common/neuron-entrypoint.py (copied to dockerd-entrypoint.py) starts neuron-monitor.sh
# (Neuron device metrics: nothing to monitor here) and then calls the toolkit's serving.main().
SERVE = "from sagemaker_pytorch_serving_container import serving; serving.main()"
IMAGE_ENV = {
    "LANG": "C.UTF-8",
    "SAGEMAKER_SERVING_MODULE": "sagemaker_pytorch_serving_container.serving:main",
}
IMAGE_TEMP = "TEMP"  # ENV TEMP=/home/model-server/tmp; TorchServe keeps its pid file there (tempfile.gettempdir())
TS_CONFIG_FILE = Path("/etc/sagemaker-ts.properties")
"""Toolkit 2.0.25 writes TorchServe's configuration there (torchserve.py TS_CONFIG_FILE, a fixed path) and starts
TorchServe with it. Each server here runs in a mount namespace of its own with a file of its own bound over that
path, so that servers can start side by side and the host's /etc is never written (see ModelServer.start)."""
# Deviations, all on the host side of the container boundary:
# - the toolkit finds /opt/ml through SAGEMAKER_BASE_DIR (sagemaker_inference/parameters.py BASE_PATH_ENV; SageMaker
#   leaves it unset, so /opt/ml): a temporary directory instead, so that nothing is written to the host's /opt/ml;
# - the toolkit binds 0.0.0.0 on 8080 (its default SAGEMAKER_BIND_TO_PORT) and TorchServe its management API on 8081; TorchServe reads TS_<KEY> over its
#   config file (enable_envvars_config=true in the toolkit's default-ts.properties), so loopback_env below keeps
#   each server on loopback, on ports of its own (free_ports; several servers run at once in the test suite);
# - the working directory is a temporary directory, not /: only the toolkit's empty model store
#   (<cwd>/.sagemaker/ts/models) and TorchServe's logs/ are written under it;
#   The frontend's sockets to its workers (<java.io.tmpdir>/.ts.sock.<9000 + n>, frontend util/Connector.java) are
#   in IMAGE_TEMP too, which the torchserve launcher passes as java.io.tmpdir: each server's own.
# - each server runs in a PID namespace of its own, as in its container: toolkit 2.0.25 finds its TorchServe by
#   scanning every process for TorchServe's main class (torchserve.py _retrieve_ts_server_process), refuses to go on
#   when it sees two, and forwards SIGTERM to what it found. The pids that TorchServe and the fake device report are
#   the namespace's (ModelServer.host_pid translates).
# - the library's /ping plugin is named by its container path (JDK_JAVA_OPTIONS=-javaagent:/opt/ml/model/code/<hash>/...):
#   the same path under the temporary directory (host_paths).


@dataclass(frozen=True)
class Ports:
    inference: int
    management: int
    metrics: int
    grpc_inference: int
    grpc_management: int


PORTS_PER_SERVER = len(Ports.__dataclass_fields__)
PORT_BLOCKS = range(20_000, 32_000, PORTS_PER_SERVER)
"""Where servers' ports come from: below Linux's ephemeral range (ip_local_port_range, 32768-60999 by default), so
that no client connection's source port, and no other program's bind to port 0, can take one between its choice and
TorchServe's bind."""
PORT_COUNTER = Path(os.environ.get("TMPDIR", "/tmp")) / "aws-cdk-neuronx-model-server-ports"
"""The next block to hand out, shared by every process on the machine (xdist workers, a benchmark, another clone's
suite) under a lock."""


def free_ports() -> Ports:
    """The ports of one server (one per field of Ports): the next block of PORT_BLOCKS (a counter shared by every process, under a lock)
    whose ports nothing is bound to now."""
    import fcntl
    import socket

    def unused(port: int) -> bool:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                return False
            return True

    with open(f"{PORT_COUNTER}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            start = int(PORT_COUNTER.read_text())
        except (OSError, ValueError):
            start = 0
        for step in range(len(PORT_BLOCKS)):
            index = (start + step) % len(PORT_BLOCKS)
            ports = range(PORT_BLOCKS[index], PORT_BLOCKS[index] + PORTS_PER_SERVER)
            if all(unused(port) for port in ports):
                PORT_COUNTER.write_text(str(index + 1))
                return Ports(*ports)
    raise RuntimeError(f"no block of {PORTS_PER_SERVER} unused ports in {PORT_BLOCKS}")


def loopback_env(ports: Ports) -> dict[str, str]:
    return {
        "SAGEMAKER_BIND_TO_PORT": str(ports.inference),
        "TS_INFERENCE_ADDRESS": f"http://127.0.0.1:{ports.inference}",
        "TS_MANAGEMENT_ADDRESS": f"http://127.0.0.1:{ports.management}",
        "TS_METRICS_ADDRESS": f"http://127.0.0.1:{ports.metrics}",
        "TS_GRPC_INFERENCE_PORT": str(ports.grpc_inference),
        "TS_GRPC_MANAGEMENT_PORT": str(ports.grpc_management),
    }


PASSED_THROUGH = ("PATH", "HOME", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")

ANSWER_WORDS = ("hello", "world", "again")
"""What the fake model says, in a cycle (ids from the tokenizer built here)."""
GOODBYE_WORD = "bye"
"""A prompt holding it gets "bye" and then the end-of-turn token: finish_reason "stop"."""


# ---------------------------------------------------------------------------------------------
# The synthesized template


def resolve(value: Any) -> str:
    """A template value as a string: intrinsic functions rendered with a stand-in for what only a deploy knows
    (Ref X -> "ref-x"; ${AWS::AccountId} -> "111111111111")."""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return str(value)
    (function, argument), = value.items()
    if function == "Ref":
        return "111111111111" if argument == "AWS::AccountId" else f"ref-{argument.lower().replace('::', '-')}"
    if function == "Fn::Join":
        separator, parts = argument
        return separator.join(resolve(part) for part in parts)
    if function == "Fn::Sub":
        text = argument if isinstance(argument, str) else argument[0]
        return text.replace("${AWS::AccountId}", "111111111111").replace("${AWS::Region}", "us-east-1")
    raise ValueError(f"cannot render {function} without a deploy: {value!r}")


@dataclass(frozen=True)
class Deployment:
    """What the synthesized template says the endpoint runs with."""

    preset: str
    environment: dict[str, str]
    """The SageMaker Model's PrimaryContainer.Environment."""
    instance_type: str
    startup_timeout: int
    """The production variant's ContainerStartupHealthCheckTimeoutInSeconds."""
    compile_environment: dict[str, str]
    """The compile job definition's environment (what the compile job ran with)."""
    code_files: dict[str, Path]
    """The code placer's files: key under code/ (`<hash>/<name>` for the code's folder, `neuronx_code_<hash>.py` for its
    entry) -> the staged asset in cdk.out."""
    objects: dict[str, str] = field(default_factory=dict)
    """What the code placer writes as text besides them: key under the artifact prefix -> the text (the model
    server's continuous-batching configuration, when the artifacts are compiled for it)."""

    @property
    def continuous_batching(self) -> bool:
        return self.compile_environment.get(COMPILE_ENV["continuousBatching"]) == CONTRACT["compileJob"]["enabledValue"]

    @property
    def workers(self) -> int:
        return int(self.environment[ENDPOINT_ENV["workers"]])

    @property
    def cores_per_worker(self) -> int:
        return int(self.environment[ENDPOINT_ENV["coresPerWorker"]])

    @property
    def instance_cores(self) -> int:
        return NEURON_CORES[self.instance_type]

    @property
    def seconds_per_step(self) -> float:
        """The fake device's time per token of a lone request, at its calibrated speed: batch 1's step, or, batching
        continuously, a decoding step over every compiled slot (the graph computes them all)."""
        if not self.continuous_batching:
            return self.seconds_per_token
        slots = int(self.environment[ENDPOINT_ENV["batchSize"]])
        return neuron_device.seconds_per_step(self.seconds_per_token, slots, environ={})

    @property
    def seconds_per_token(self) -> float:
        """The fake device's time per token for the model options the endpoint loads, at batch 1."""
        env = self.environment
        return neuron_device.seconds_per_token(
            int(env[ENDPOINT_ENV["tpDegree"]]), env[ENDPOINT_ENV["amp"]], env[ENDPOINT_ENV["quantDtype"]]
        )


def with_static_batching(deployment: Deployment, batch_size: int) -> Deployment:
    """`deployment` as the constructs configure it for compile option batchSize `batch_size` without continuous
    batching (contract endpoint.batching): the compile job's and the endpoint's NEURONX_BATCH_SIZE and, above 1,
    TorchServe's batching through the toolkit's SAGEMAKER_TS_* variables; no continuous-batching option or objects.
    For the tests and the benchmark, which compare batch sizes and batching modes on one template at its time limit:
    the constructs' admission without continuous batching (a bounded TorchServe queue, a 20 s limit: contract
    endpoint.batching.staticAdmission) is left out, and the static-batching template carries it."""
    environment = {
        name: value for name, value in deployment.environment.items()
        if name not in {ENDPOINT_ENV[key] for key in SERVER_BATCHING}
    }
    environment[ENDPOINT_ENV["batchSize"]] = str(batch_size)
    if batch_size > 1:
        workers = str(deployment.workers)
        environment.update({
            ENDPOINT_ENV["serverBatchSize"]: str(batch_size),
            ENDPOINT_ENV["serverMaxBatchDelay"]: str(CONTRACT["endpoint"]["batching"]["maxBatchDelayMilliseconds"]),
            ENDPOINT_ENV["serverMinWorkers"]: workers,
            ENDPOINT_ENV["serverMaxWorkers"]: workers,
            ENDPOINT_ENV["serverResponseTimeout"]: environment[ENDPOINT_ENV["responseTimeout"]],
        })
    compile_environment = {
        **{name: value for name, value in deployment.compile_environment.items() if name != COMPILE_ENV["continuousBatching"]},
        COMPILE_ENV["batchSize"]: str(batch_size),
    }
    return replace(deployment, environment=environment, compile_environment=compile_environment, objects={})


def _one(resources: dict[str, Any], resource_type: str) -> dict[str, Any]:
    found = [resource["Properties"] for resource in resources.values() if resource["Type"] == resource_type]
    if len(found) != 1:
        raise AssertionError(f"expected one {resource_type} in the template, found {len(found)}")
    return found[0]


def read_deployment(preset: str, cdk_out: Path = EXAMPLE_OUT) -> Deployment:
    """The example app's template for `preset`, as `npx projen synth:example` writes it."""
    out = cdk_out / preset
    templates = sorted(out.glob("*.template.json"))
    if len(templates) != 1:
        raise FileNotFoundError(f"no single *.template.json in {out}: run `npx projen synth:example` first")
    resources = json.loads(templates[0].read_text())["Resources"]
    model = _one(resources, "AWS::SageMaker::Model")
    (variant,) = _one(resources, "AWS::SageMaker::EndpointConfig")["ProductionVariants"]
    job_definition = _one(resources, "AWS::Batch::JobDefinition")
    code = _one(resources, "Custom::NeuronxInferenceCode")
    # MarkerKey is <artifact prefix><marker>; DestinationPrefix is <artifact prefix>code/; the objects' keys are under
    # the artifact prefix.
    artifact_prefix = resolve(code["MarkerKey"])[: -len(LAYOUT["marker"])]
    if resolve(code["DestinationPrefix"]) != artifact_prefix + LAYOUT["codeDir"]:
        raise AssertionError(f"the code placer writes to {code['DestinationPrefix']!r}, not the artifact prefix's {LAYOUT['codeDir']}")
    objects = {resolve(entry["Key"])[len(artifact_prefix) :]: entry["Body"] for entry in code.get("Objects", [])}
    return Deployment(
        preset=preset,
        environment={name: resolve(value) for name, value in model["PrimaryContainer"]["Environment"].items()},
        instance_type=variant["InstanceType"],
        startup_timeout=int(variant["ContainerStartupHealthCheckTimeoutInSeconds"]),
        compile_environment={
            entry["Name"]: resolve(entry["Value"]) for entry in job_definition["ContainerProperties"]["Environment"]
        },
        code_files={entry["Name"]: out / f"asset.{entry['SourceKey']}" for entry in code["Files"]},
        objects=objects,
    )


# ---------------------------------------------------------------------------------------------
# The model directory (SageMaker copies the artifact prefix to /opt/ml/model)


def lay_out_model_dir(model_dir: Path, deployment: Deployment) -> dict[str, int]:
    """Writes what the compile job and the code placer leave under the artifact prefix; returns the fake model's
    token ids (answer words, goodbye)."""
    checkpoint = model_dir / LAYOUT["checkpointDir"]
    compiled = model_dir / LAYOUT["compiledDir"]
    code = model_dir / LAYOUT["codeDir"]
    for directory in (checkpoint, compiled, code):
        directory.mkdir(parents=True)
    tokenizer = build_chat_tokenizer(checkpoint)
    # A Llama config of calm3's shape except for the sizes the fake never uses (calm3's config.json: FACTS.md).
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": len(tokenizer),
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "max_position_embeddings": 16384,
        "torch_dtype": "bfloat16",
        "eos_token_id": tokenizer.eos_token_id,
        "tie_word_embeddings": False,
    }
    (checkpoint / "config.json").write_text(json.dumps(config, indent=2))
    generation_config = checkpoint / "generation_config.json"
    if not generation_config.exists():
        # calm3's names one eos id (65001, FACTS.md); here the tiny tokenizer's eos.
        generation_config.write_text(json.dumps({"eos_token_id": tokenizer.eos_token_id}))
    # The fake device reads no weights; from_pretrained still requires the file (module.py load_state_dict_dir).
    (checkpoint / "model.safetensors").write_bytes(b"\0" * 1024)
    (compiled / "0123456789abcdef.neff").write_bytes(b"\0" * 4096)
    for name, source in deployment.code_files.items():
        (code / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, code / name)
    for key, body in deployment.objects.items():
        (model_dir / key).parent.mkdir(parents=True, exist_ok=True)
        (model_dir / key).write_text(body)

    config = compile_job.JobConfig.from_environ(deployment.compile_environment)
    files = [
        {"key": path.relative_to(model_dir).as_posix(), "bytes": path.stat().st_size}
        for directory in (checkpoint, compiled)
        for path in compile_job.local_files(directory)
    ]
    packages = {"neuronx-cc": None, "transformers-neuronx": "0.13.1216"}  # as this machine has them (fake_neuron)
    manifest = compile_job.build_manifest(
        config, config.model_revision, packages, files, {"compile": 1.0}, datetime.now(timezone.utc)
    )
    (model_dir / LAYOUT["marker"]).write_text(json.dumps(manifest, indent=2))
    ids = tokenizer.convert_tokens_to_ids([*ANSWER_WORDS, GOODBYE_WORD])
    return {"answer": ids[:-1], "goodbye": ids[-1]}


# ---------------------------------------------------------------------------------------------
# The server


class ModelServer:
    """The image's `serve` in a process group of its own, under `root` (a temporary directory)."""

    def __init__(
        self, root: Path, deployment: Deployment, *, load_seconds: float, overrides: dict[str, str] | None = None
    ):
        self.root = root
        self.deployment = deployment
        self.state_dir = root / "neuron-device"
        self.work_dir = root / "work"
        self.log_path = root / "serve.log"
        self.model_dir = root / "opt-ml" / "model"
        self.token_ids = lay_out_model_dir(self.model_dir, deployment)
        self.ports = free_ports()
        self.ts_config = root / "sagemaker-ts.properties"
        """What the toolkit writes as /etc/sagemaker-ts.properties, inside this server's mount namespace."""
        # TEMP holds the frontend's AF_UNIX sockets to its workers, whose path may not exceed 107 bytes: a short
        # directory of its own, not under `root` (pytest's /tmp/pytest-of-<user>/pytest-<n>/popen-gw<k>/<test name>
        # passed that limit once n had three digits, and no worker ever came up). Removed by stop().
        temp = self.temp = Path(tempfile.mkdtemp(prefix="ts-"))
        self.work_dir.mkdir(parents=True)
        self.environ = {
            **{name: os.environ[name] for name in PASSED_THROUGH if name in os.environ},
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
            **IMAGE_ENV,
            IMAGE_TEMP: str(temp),
            **host_paths(deployment.environment, self.model_dir),
            "SAGEMAKER_BASE_DIR": str(root / "opt-ml"),
            **loopback_env(self.ports),
            "PYTHONPATH": str(FAKE_NEURON),
            neuron_device.STATE_DIR: str(self.state_dir),
            neuron_device.POOL_CORES: str(deployment.instance_cores),
            neuron_device.LOAD_SECONDS: str(load_seconds),
            "FAKE_NEURON_ANSWER_IDS": ",".join(map(str, self.token_ids["answer"])),
            "FAKE_NEURON_GOODBYE_ID": str(self.token_ids["goodbye"]),
            **(overrides or {}),
        }
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        """Starts the image's `serve` in a new session (its process group), as the first process of a PID namespace of
        its own (as in a container: when it ends, everything it started ends), in a mount namespace of its own in which
        self.ts_config stands at TS_CONFIG_FILE, so the toolkit's config file is this server's alone. The bind needs
        the path to exist on the host: an empty file is created once if it does not."""
        self.ts_config.touch()
        if not TS_CONFIG_FILE.exists():
            TS_CONFIG_FILE.touch()
        bind_then_serve = 'mount --bind "$1" "$2" && exec "$3" -c "$4"'
        command = [
            "unshare", "--mount", "--propagation", "private", "--pid", "--fork", "--mount-proc",
            "sh", "-c", bind_then_serve, "sh", str(self.ts_config), str(TS_CONFIG_FILE), sys.executable, SERVE,
        ]  # fmt: skip
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                command,
                cwd=self.work_dir,
                env=self.environ,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # TorchServe's Java frontend and its Python workers stay in this group
            )
        self.started_at = time.time()

    def stop(self) -> None:
        """Ends the whole process group (serve, the torchserve launcher, Java, every worker): SIGTERM, and SIGKILL once
        only unshare(1) and the toolkit's serve are left (unshare ignores SIGTERM while it waits for its child, and
        toolkit 2.0.25's serve stops TorchServe on SIGTERM but does not exit) or after 15 s."""
        if self.process is None:
            return
        pgid = self.process.pid
        for sig, grace in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            deadline = time.time() + grace
            keep = {pgid, self._namespace_init()} if sig == signal.SIGTERM else set()
            while time.time() < deadline and _group_members(pgid) - keep:
                self.process.poll()
                time.sleep(0.2)
        self.process.wait(timeout=5)
        shutil.rmtree(self.temp, ignore_errors=True)

    def logs(self) -> str:
        """The serve process's output and TorchServe's log files (log4j2.xml of the toolkit: <cwd>/logs)."""
        parts = [self.log_path.read_text(errors="replace")]
        parts += [path.read_text(errors="replace") for path in sorted((self.work_dir / "logs").glob("*.log"))]
        return "\n".join(parts)

    def claims(self) -> list[dict[str, Any]]:
        return neuron_device.read_claims(self.state_dir, alive=lambda pid: self.host_pid(pid) is not None)

    def host_pid(self, pid: int) -> int | None:
        """The host's pid of this server's live (not zombie) process `pid` as its namespace numbers it, or None."""
        namespace = self._pid_namespace()
        if namespace is None:
            return None
        for status in Path("/proc").glob("[0-9]*/status"):
            try:
                if os.readlink(status.parent / "ns" / "pid") != namespace:
                    continue
                fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
            except OSError:
                continue  # ended meanwhile
            if int(fields["NSpid"].split()[-1]) == pid and not fields["State"].strip().startswith("Z"):
                return int(status.parent.name)
        return None

    def _namespace_init(self) -> int | None:
        """The host's pid of unshare's child, the first process of this server's PID namespace (serve)."""
        if self.process is None:
            return None
        try:
            (child,) = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
            return int(child)
        except (OSError, ValueError):
            return None  # ended

    def _pid_namespace(self) -> str | None:
        """The PID namespace of this server's processes."""
        init = self._namespace_init()
        try:
            return None if init is None else os.readlink(f"/proc/{init}/ns/pid")
        except OSError:
            return None  # ended

    def generations(self) -> list[dict[str, Any]]:
        """Every sample() call of the fake device (neuron_device.record_generation)."""
        return neuron_device.read_generations(self.state_dir)

    def workers(self) -> list[dict[str, Any]]:
        """TorchServe's own description of the model's workers (management API: id, pid, status, ...)."""
        status, body = request("GET", "/models/model", port=self.ports.management)
        if status != 200:
            raise AssertionError(f"management API answered {status}: {body[:500]!r}")
        (model,) = json.loads(body)
        return model["workers"]

    def invoke(self, body: bytes, headers: dict[str, str] | None = None, **options: Any) -> Response:
        """One request to this server's /invocations (see `invoke`)."""
        return invoke(body, headers, port=self.ports.inference, **options)

    def invoke_streaming(self, body: bytes, headers: dict[str, str] | None = None, **options: Any) -> StreamedResponse:
        """One request to this server's /invocations, read as it comes (see `invoke_streaming`)."""
        return invoke_streaming(body, headers, port=self.ports.inference, **options)

    def ping(self) -> int | None:
        try:
            return request("GET", "/ping", port=self.ports.inference, timeout=5)[0]
        except OSError:
            return None  # not listening yet


def host_paths(environment: dict[str, str], model_dir: Path) -> dict[str, str]:
    """`environment` with the container's model directory in the JVM options (the /ping plugin's jar) as `model_dir`."""
    java_options = ENDPOINT_ENV["javaOptions"]
    if java_options not in environment:
        return environment
    value = environment[java_options].replace(CONTRACT["endpoint"]["modelDir"], f"{model_dir}/")
    return {**environment, java_options: value}


def _group_members(pgid: int) -> set[int]:
    """The live (not zombie) processes of process group `pgid`."""
    members = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.add(int(stat.parent.name))
    return members


# ---------------------------------------------------------------------------------------------
# HTTP on loopback


@dataclass(frozen=True)
class Response:
    status: int
    reason: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def invoke(
    body: bytes, headers: dict[str, str] | None = None, *, port: int, method: str = "POST", timeout: float = 90
) -> Response:
    """One request to /invocations as SageMaker's InvokeEndpoint forwards it (raw bytes, the client's headers)."""
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, "/invocations", body=body, headers=headers or {})
        response = connection.getresponse()
        return Response(response.status, response.reason, dict(response.getheaders()), response.read())
    finally:
        connection.close()


@dataclass(frozen=True)
class StreamedResponse:
    """A response read chunk by chunk as it arrives (Transfer-Encoding: chunked)."""

    status: int
    reason: str
    headers: dict[str, str]
    chunks: list[tuple[float, bytes]]
    """(seconds since the request was sent, bytes) of each piece read: http.client's read1 returns at most one
    HTTP chunk, or what has arrived of it."""

    @property
    def body(self) -> bytes:
        return b"".join(data for _, data in self.chunks)

    def lines(self) -> list[Any]:
        """The body as JSON Lines: one JSON value per "\n"-terminated line."""
        assert self.body.endswith(b"\n"), self.body[-200:]
        return [json.loads(line) for line in self.body.split(b"\n")[:-1]]


def invoke_streaming(
    body: bytes, headers: dict[str, str] | None = None, *, port: int, timeout: float = 90
) -> StreamedResponse:
    """One request to /invocations whose answer is read as it comes, each piece with its arrival time."""
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        sent = time.monotonic()
        connection.request("POST", "/invocations", body=body, headers=headers or {})
        response = connection.getresponse()
        chunks = []
        while data := response.read1(65536):
            chunks.append((time.monotonic() - sent, data))
        return StreamedResponse(response.status, response.reason, dict(response.getheaders()), chunks)
    finally:
        connection.close()


def request(method: str, path: str, *, port: int, timeout: float = 10) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method),
                                    timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
