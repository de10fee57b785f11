"""A harness hook (not part of serving_stack's start and stop): lays out a model dir as a continuous-batching endpoint
needs it, before ModelServer.start(). Used by test_continuous_batching.py and benchmark_serving.py --batching continuous.

The constructs do not place these files yet: artifacts whose manifest says they were compiled for continuous batching,
the model config YAML with continuousBatching, and MAR-INF/MANIFEST.json naming it (TorchServe 0.11.0 reads the setting
from there only: test_torchserve_continuous_batching.py).
"""

from __future__ import annotations

import json

import serving_stack


JOBS_BEYOND_SLOTS = 32
"""TorchServe's batchSize is the slots + this (to become contract endpoint.continuousBatching.jobsBeyondSlots). Under
continuous batching the frontend hands the handler every job it holds at every step, up to batchSize (0.11.0: one
fewer while jobs run, the probe's last test), so the handler sees a request the step after it arrives, stamps its
deadline then and refuses it at once when it cannot start in time (neuronx_admission.py). The handler holds at most
the slots running, as many waiting, and the requests it answered whole until the frontend lets them go (one more
step): 32 leaves room for more than 20 new requests a step (about 200 a second at lowCost's 0.11 s step) beside a
full line of 8 (highPerformance's slots). Beyond that, requests wait in TorchServe's queue for the next steps, and
past its job_queue_size (100) the frontend itself answers 503 at once."""


def enable_continuous_batching(server: serving_stack.ModelServer) -> None:
    """Before start(): the artifacts as compiled for continuous batching (manifest option continuousBatching, with
    batchSize slots) and TorchServe told to batch continuously with room for JOBS_BEYOND_SLOTS jobs beyond the
    slots."""
    deployment = server.deployment
    marker = server.model_dir / serving_stack.LAYOUT["marker"]
    manifest = json.loads(marker.read_text())
    manifest["options"]["continuousBatching"] = True
    marker.write_text(json.dumps(manifest, indent=2))
    slots = int(deployment.environment[serving_stack.ENDPOINT_ENV["batchSize"]])
    code = server.model_dir / serving_stack.LAYOUT["codeDir"]
    (code / "model-config.yaml").write_text(
        f"minWorkers: {deployment.workers}\nmaxWorkers: {deployment.workers}\nbatchSize: {slots + JOBS_BEYOND_SLOTS}\n"
        f"maxBatchDelay: 20\nresponseTimeout: {deployment.startup_timeout}\ncontinuousBatching: true\n"
    )
    (server.model_dir / "MAR-INF").mkdir()
    (server.model_dir / "MAR-INF" / "MANIFEST.json").write_text(json.dumps({
        "runtime": "python", "archiverVersion": "0.11.0",
        "model": {"modelName": "model", "modelVersion": "1.0", "configFile": "code/model-config.yaml"},
    }))  # fmt: skip
