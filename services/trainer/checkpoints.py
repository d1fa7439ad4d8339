"""Checkpoints off the node: a copy of each checkpoint in S3, so a job resumed elsewhere finds it.

A worker (or a Kubernetes Job retried on another node, a reclaimed spot instance) keeps checkpoints on its
local disk; with ``KAIZEN_TRAINER__CHECKPOINT_URI=s3://bucket/prefix`` every checkpoint is also uploaded
to ``<prefix>/<project>/<dataset>/checkpoint-<step>/`` once saved, its ``COMPLETE`` marker last, and a
job that starts without a local checkpoint downloads the newest complete one first. Only the newest
``keep`` checkpoints stay in S3. The S3 endpoint and credentials are the deployment's (``KAIZEN_S3__*``).
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from services.trainer.errors import TrainerError
from shared.settings import KaizenSettings

log = logging.getLogger("kaizen.trainer.checkpoints")

MARKER = "COMPLETE"
_CHECKPOINT = re.compile(r"checkpoint-(\d+)/$")


class CheckpointStore:
    """The checkpoints of one job under ``s3://bucket/prefix/<job path>/``."""

    def __init__(self, settings: KaizenSettings, uri: str, job_path: str, *, keep: int = 2) -> None:
        parsed = urlparse(uri)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise TrainerError(f"checkpoint_uri must be s3://bucket/prefix, got {uri!r}")
        self.bucket = parsed.netloc
        self.prefix = "/".join(part for part in (parsed.path.strip("/"), job_path.strip("/")) if part) + "/"
        self.keep = max(1, keep)
        self.client = s3_client(settings)

    def upload(self, checkpoint: Path) -> None:
        """Copy a saved checkpoint directory, then its marker; drop checkpoints beyond ``keep``."""
        key = f"{self.prefix}{checkpoint.name}/"
        for path in sorted(p for p in checkpoint.rglob("*") if p.is_file()):
            self.client.upload_file(str(path), self.bucket, key + path.relative_to(checkpoint).as_posix())
        self.client.put_object(Bucket=self.bucket, Key=key + MARKER, Body=b"")
        for step in self.complete_steps()[: -self.keep]:
            self._delete(step)
        log.info(
            "checkpoint uploaded", extra={"checkpoint": checkpoint.name, "bucket": self.bucket, "key": key}
        )

    def complete_steps(self) -> list[int]:
        """Steps of the checkpoints whose upload finished, oldest first."""
        steps = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix, Delimiter="/"):
            for common in page.get("CommonPrefixes", []):
                match = _CHECKPOINT.search(common["Prefix"])
                if match and self._exists(f"{common['Prefix']}{MARKER}"):
                    steps.append(int(match.group(1)))
        return sorted(steps)

    def download_latest(self, output_dir: Path, newer_than: int | None) -> Path | None:
        """The newest complete checkpoint, downloaded into ``output_dir`` when newer than the local one."""
        steps = self.complete_steps()
        if not steps or (newer_than is not None and steps[-1] <= newer_than):
            return None
        step = steps[-1]
        key = f"{self.prefix}checkpoint-{step}/"
        target = output_dir / f"checkpoint-{step}"
        staging = output_dir / f".download-checkpoint-{step}"
        shutil.rmtree(staging, ignore_errors=True)
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=key):
            for item in page.get("Contents", []):
                relative = item["Key"][len(key) :]
                if relative == MARKER:
                    continue
                local = staging / relative
                local.parent.mkdir(parents=True, exist_ok=True)
                self.client.download_file(self.bucket, item["Key"], str(local))
        staging.rename(target)
        log.info("checkpoint downloaded", extra={"checkpoint": target.name, "bucket": self.bucket})
        return target

    def _exists(self, key: str) -> bool:
        response = self.client.list_objects_v2(Bucket=self.bucket, Prefix=key, MaxKeys=1)
        return bool(response.get("KeyCount", 0))

    def _delete(self, step: int) -> None:
        key = f"{self.prefix}checkpoint-{step}/"
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=key):
            objects = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if objects:
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": objects})


def s3_client(settings: KaizenSettings) -> Any:
    import boto3

    s3 = settings.s3
    secret = s3.secret_access_key.get_secret_value() if s3.secret_access_key is not None else None
    return boto3.client(
        "s3",
        endpoint_url=s3.endpoint_url or None,
        region_name=s3.region,
        aws_access_key_id=s3.access_key_id or None,
        aws_secret_access_key=secret or None,
    )
