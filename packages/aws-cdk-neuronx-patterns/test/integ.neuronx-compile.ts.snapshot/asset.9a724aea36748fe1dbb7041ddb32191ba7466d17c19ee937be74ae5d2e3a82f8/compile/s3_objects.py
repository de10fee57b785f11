"""The few S3 operations the compile job needs, over a boto3 S3 client."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

MIB = 1024**2

TRANSFER_CONFIG = TransferConfig(
    multipart_threshold=64 * MIB,
    multipart_chunksize=64 * MIB,
    max_concurrency=16,
)
"""Multipart, 16 parts in flight per file: safetensors shards are several GiB each."""

_NOT_FOUND_CODES = ("404", "NoSuchKey", "NotFound")


class S3Uri(NamedTuple):
    bucket: str
    key: str

    @classmethod
    def parse(cls, uri: str) -> S3Uri:
        """`s3://bucket/key` -> S3Uri(bucket, key); raises ValueError for anything else."""
        scheme, _, rest = uri.partition("://")
        bucket, _, key = rest.partition("/")
        if scheme != "s3" or not bucket:
            raise ValueError(f"not an s3://bucket/key URI: {uri!r}")
        return cls(bucket, key)


class S3Object(NamedTuple):
    key: str
    size: int


def object_exists(s3: Any, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in _NOT_FOUND_CODES:
            return False
        raise
    return True


def list_objects(s3: Any, bucket: str, prefix: str) -> list[S3Object]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [S3Object(item["Key"], item["Size"]) for page in pages for item in page.get("Contents", [])]


def download_file(s3: Any, bucket: str, key: str, destination: Path) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    s3.download_file(bucket, key, str(destination), Config=TRANSFER_CONFIG)


def upload_file(s3: Any, source: Path, bucket: str, key: str) -> None:
    s3.upload_file(str(source), bucket, key, Config=TRANSFER_CONFIG)
