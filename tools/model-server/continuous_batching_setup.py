"""A harness hook (not part of serving_stack's start and stop): lays out a model dir as a continuous-batching endpoint
needs it, before ModelServer.start(). Used by test_continuous_batching.py and benchmark_serving.py --batching continuous.

The constructs do not place these files yet: artifacts whose manifest says they were compiled for continuous batching,
the model config YAML with continuousBatching, and MAR-INF/MANIFEST.json naming it (TorchServe 0.11.0 reads the setting
from there only: test_torchserve_continuous_batching.py).
"""

from __future__ import annotations

import json

import serving_stack


def enable_continuous_batching(server: serving_stack.ModelServer) -> None:
    """Before start(): the artifacts as compiled for continuous batching (manifest option continuousBatching, with
    batchSize slots) and TorchServe told to batch continuously with room for one job beyond the slots (0.11.0 admits
    batchSize - 1 while jobs run: the probe's last test)."""
    deployment = server.deployment
    marker = server.model_dir / serving_stack.LAYOUT["marker"]
    manifest = json.loads(marker.read_text())
    manifest["options"]["continuousBatching"] = True
    marker.write_text(json.dumps(manifest, indent=2))
    slots = int(deployment.environment[serving_stack.ENDPOINT_ENV["batchSize"]])
    code = server.model_dir / serving_stack.LAYOUT["codeDir"]
    (code / "model-config.yaml").write_text(
        f"minWorkers: {deployment.workers}\nmaxWorkers: {deployment.workers}\nbatchSize: {slots + 1}\n"
        f"maxBatchDelay: 20\nresponseTimeout: {deployment.startup_timeout}\ncontinuousBatching: true\n"
    )
    (server.model_dir / "MAR-INF").mkdir()
    (server.model_dir / "MAR-INF" / "MANIFEST.json").write_text(json.dumps({
        "runtime": "python", "archiverVersion": "0.11.0",
        "model": {"modelName": "model", "modelVersion": "1.0", "configFile": "code/model-config.yaml"},
    }))  # fmt: skip
