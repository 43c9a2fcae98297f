"""The schemaVersion rule shared by every handler."""

from __future__ import annotations

from ocistore.manifest.document import invalid

SCHEMA1_UNSUPPORTED = (
    "Docker image manifest schema 1 is unsupported (deprecated and removed from "
    "distribution 3): push it as schema 2 or OCI"
)


def check_schema_version(version: int) -> None:
    """Schema 1 gets its own message; anything but 2 is refused as distribution does."""
    if version == 1:
        invalid(SCHEMA1_UNSUPPORTED)
    if version != 2:
        invalid(f"unrecognized manifest schema version {version}")
