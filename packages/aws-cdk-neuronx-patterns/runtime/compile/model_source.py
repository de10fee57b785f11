"""Where the checkpoint comes from: a Hugging Face Hub repository or an S3 prefix.

Both sources fetch the same file set (CHECKPOINT_PATTERNS): the config, tokenizer files and
safetensors weights that transformers-neuronx and the tokenizer need, and nothing else (no .git,
no duplicate PyTorch .bin weights, no README images).
"""

from __future__ import annotations

import json
import os
import re
from fnmatch import fnmatch
from pathlib import Path
from typing import Any
from collections.abc import Iterable

import boto3

import s3_objects

CHECKPOINT_PATTERNS = ("*.json", "*.safetensors", "*.model", "*.txt")
"""Config, tokenizer (tokenizer.json, tokenizer.model, merges/vocab .txt) and safetensors weights."""

WEIGHTS_PATTERN = "*.safetensors"

CONFIG_FILE = "config.json"
"""The model's Hugging Face configuration: read first, alone, to check the architecture before the weights come."""

GENERATION_CONFIG_FILE = "generation_config.json"
"""The checkpoint's generation defaults: the handler reads the end-of-turn token ids from it (matched by *.json)."""

HF_DOWNLOAD_WORKERS = 16
"""Files downloaded in parallel by huggingface_hub.snapshot_download."""

COMMIT_SHA = re.compile(r"[0-9a-f]{40}")
"""A git commit id as the Hub reports it."""

HF_TOKEN_SECRET_KEYS = ("token", "HF_TOKEN")
"""Keys looked up, in order, when the secret string is a JSON object."""


def is_checkpoint_file(path: str) -> bool:
    return any(fnmatch(path, pattern) for pattern in CHECKPOINT_PATTERNS)


def _require_weights(paths: Iterable[str], source: str) -> None:
    if not any(fnmatch(path, WEIGHTS_PATTERN) for path in paths):
        raise ValueError(f"{source} holds no {WEIGHTS_PATTERN} weights")


def read_hf_token(secret_arn: str) -> str:
    """The Hugging Face token stored in Secrets Manager: a plain string, or JSON with a token key.

    Errors never quote the secret's value.
    """
    region = secret_arn.split(":")[3]
    client = boto3.client("secretsmanager", region_name=region)
    value = client.get_secret_value(SecretId=secret_arn)["SecretString"].strip()
    try:
        parsed = json.loads(value)
    except ValueError:
        return value
    if isinstance(parsed, dict):
        for key in HF_TOKEN_SECRET_KEYS:
            if isinstance(parsed.get(key), str) and parsed[key]:
                return parsed[key]
    raise ValueError(f"secret {secret_arn} is JSON without a string key {' or '.join(HF_TOKEN_SECRET_KEYS)}")


class HuggingFaceSource:
    """A model repository on the Hugging Face Hub, at a revision (None: the default branch).

    The revision is resolved to its commit once, by the first Hub call (`size_bytes`); the download
    and the manifest then use that commit, so a branch that moves meanwhile cannot mix two states.
    """

    def __init__(self, repo_id: str, revision: str | None, token: str | None):
        self.repo_id = repo_id
        self.revision = revision
        self._token = token
        self._info: Any = None

    def __str__(self) -> str:
        commit = f" (commit {self._info.sha})" if self._info else ""
        return f"huggingface.co/{self.repo_id}@{self.revision or 'default branch'}{commit}"

    @property
    def commit(self) -> str:
        """The commit sha the revision resolved to."""
        return self._resolve().sha

    def _resolve(self) -> Any:
        if self._info is None:
            from huggingface_hub import HfApi

            info = HfApi().model_info(self.repo_id, revision=self.revision, files_metadata=True, token=self._token)
            if not (isinstance(info.sha, str) and COMMIT_SHA.fullmatch(info.sha)):
                raise ValueError(f"the Hub gave no commit sha for {self}: {info.sha!r}")
            self._info = info
        return self._info

    def size_bytes(self) -> int:
        info = self._resolve()
        files = [sibling for sibling in info.siblings if is_checkpoint_file(sibling.rfilename)]
        _require_weights((sibling.rfilename for sibling in files), str(self))
        return sum(sibling.size or 0 for sibling in files)

    def download_config(self, destination: Path) -> Path:
        """config.json alone, of the resolved commit, into `destination`; returns its path."""
        commit = self.commit
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        from huggingface_hub import hf_hub_download

        return Path(
            hf_hub_download(
                self.repo_id, CONFIG_FILE, revision=commit, local_dir=str(destination), token=self._token
            )
        )

    def download(self, destination: Path) -> None:
        commit = self.commit
        # Progress bars only add noise to CloudWatch; huggingface_hub reads this when imported.
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        from huggingface_hub import snapshot_download

        snapshot_download(
            self.repo_id,
            revision=commit,
            local_dir=str(destination),
            allow_patterns=list(CHECKPOINT_PATTERNS),
            token=self._token,
            max_workers=HF_DOWNLOAD_WORKERS,
        )


class S3Source:
    """A Hugging Face checkpoint already copied to an S3 prefix."""

    def __init__(self, s3: Any, uri: str):
        self._s3 = s3
        self._uri = uri
        location = s3_objects.S3Uri.parse(uri)
        self._bucket = location.bucket
        self._prefix = location.key if location.key.endswith("/") or not location.key else location.key + "/"

    def __str__(self) -> str:
        return self._uri

    commit = ""
    """S3 objects have no commit: the manifest records an empty one."""

    def _files(self) -> list[s3_objects.S3Object]:
        objects = s3_objects.list_objects(self._s3, self._bucket, self._prefix)
        files = [obj for obj in objects if is_checkpoint_file(obj.key[len(self._prefix) :])]
        _require_weights((obj.key for obj in files), str(self))
        return files

    def size_bytes(self) -> int:
        return sum(obj.size for obj in self._files())

    def download_config(self, destination: Path) -> Path:
        """config.json alone into `destination`; returns its path."""
        key = self._prefix + CONFIG_FILE
        if not s3_objects.object_exists(self._s3, self._bucket, key):
            raise ValueError(f"{self} holds no {CONFIG_FILE}")
        path = destination / CONFIG_FILE
        s3_objects.download_file(self._s3, self._bucket, key, path)
        return path

    def download(self, destination: Path) -> None:
        for obj in self._files():
            s3_objects.download_file(self._s3, self._bucket, obj.key, destination / obj.key[len(self._prefix) :])
