"""The ``storage.s3`` section the S3 benchmarks give ``ocistore serve`` (and the Go registry).

One builder, so every benchmark talks to its local S3 server with the same
keys, region and settings.
"""

from __future__ import annotations


def s3_yaml(endpoint: str, bucket: str, *, root: str = "/bench", chunksize: int = 0) -> str:
    """``  s3:`` and its keys, indented to sit under ``storage:``; ``chunksize`` 0 leaves it out."""
    text = (
        "  s3:\n    region: us-east-1\n"
        f"    bucket: {bucket}\n    regionendpoint: {endpoint}\n"
        "    accesskey: bench\n    secretkey: bench\n    secure: false\n"
        f"    rootdirectory: {root}\n"
    )
    if chunksize:
        text += f"    chunksize: {chunksize}\n"
    return text
