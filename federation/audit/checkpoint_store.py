"""Where signed audit checkpoints are published, outside the database (AUDIT_CHECKPOINT_URL).

``file:///dir``: one file per object, created exclusively (never overwritten). ``s3://bucket/
prefix``: one object each; when the bucket has S3 Object Lock enabled, each object is written
with a COMPLIANCE-mode retention of the bucket's default period (or 365 days when it sets none),
so not even the bucket's owner can delete or overwrite it before that date. A locked bucket is
versioned, so a writer can still hide an object behind a newer version or a delete marker: the
store therefore lists every version and reads each name's first (oldest, locked) version.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from federation.refusals import Refused

DEFAULT_LOCK = timedelta(days=365)


class CheckpointStoreMisconfigured(Refused):
    code = "audit_checkpoint_store"
    status = 500
    title = "Audit checkpoint store misconfigured"


class CheckpointStore(Protocol):
    url: str

    def names(self) -> list[str]: ...
    def read(self, name: str) -> bytes: ...
    def write(self, name: str, body: bytes, *, now: datetime) -> None: ...


class FileStore:
    def __init__(self, url: str, directory: Path) -> None:
        self.url, self.directory = url, directory

    def names(self) -> list[str]:
        if not self.directory.is_dir():
            return []
        return sorted(entry.name for entry in self.directory.iterdir() if entry.is_file())

    def read(self, name: str) -> bytes:
        return (self.directory / name).read_bytes()

    def write(self, name: str, body: bytes, *, now: datetime) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        # "x": a name that exists is never replaced; fsync so a published checkpoint survives.
        with open(self.directory / name, "xb") as handle:
            handle.write(body)
            handle.flush()
            os.fsync(handle.fileno())


class S3Store:
    def __init__(self, url: str, bucket: str, prefix: str) -> None:
        import boto3

        self.url, self.bucket = url, bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.client: Any = boto3.client("s3")
        self._first_version: dict[str, str] = {}

    def names(self) -> list[str]:
        paginator = self.client.get_paginator("list_object_versions")
        first: dict[str, tuple[Any, str]] = {}
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
            for version in page.get("Versions", []):
                name = version["Key"][len(self.prefix) :]
                seen = first.get(name)
                if seen is None or version["LastModified"] <= seen[0]:  # listed newest first
                    first[name] = (version["LastModified"], version["VersionId"])
        self._first_version = {name: version for name, (_, version) in first.items()}
        return sorted(first)

    def read(self, name: str) -> bytes:
        extra = {}
        if name in self._first_version:
            extra = {"VersionId": self._first_version[name]}
        response = self.client.get_object(Bucket=self.bucket, Key=self.prefix + name, **extra)
        return bytes(response["Body"].read())

    def write(self, name: str, body: bytes, *, now: datetime) -> None:
        extra: dict[str, Any] = {}
        retention = self._lock_period()
        if retention is not None:
            extra = {"ObjectLockMode": "COMPLIANCE", "ObjectLockRetainUntilDate": now + retention}
        self.client.put_object(
            Bucket=self.bucket,
            Key=self.prefix + name,
            Body=body,
            ContentType="application/json"
            if name.endswith(".json")
            else "application/octet-stream",
            **extra,
        )

    def _lock_period(self) -> timedelta | None:
        """The bucket's default retention, if it has Object Lock enabled; else None."""
        from botocore.exceptions import ClientError

        try:
            config = self.client.get_object_lock_configuration(Bucket=self.bucket)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ObjectLockConfigurationNotFoundError":
                return None
            raise
        lock = config.get("ObjectLockConfiguration", {})
        if lock.get("ObjectLockEnabled") != "Enabled":
            return None
        default = lock.get("Rule", {}).get("DefaultRetention", {})
        if "Days" in default:
            return timedelta(days=int(default["Days"]))
        if "Years" in default:
            return timedelta(days=365 * int(default["Years"]))
        return DEFAULT_LOCK


def open_store(url: str) -> CheckpointStore:
    parts = urlsplit(url)
    if parts.scheme == "file" and parts.path and not parts.netloc:
        return FileStore(url, Path(unquote(parts.path)))
    if parts.scheme == "s3" and parts.netloc:
        return S3Store(url, parts.netloc, parts.path)
    raise CheckpointStoreMisconfigured(
        f"AUDIT_CHECKPOINT_URL must be file:///dir or s3://bucket/prefix, got {url!r}"
    )
