"""Machinery of the differential HTTP test: run one scenario against a server, record what it saw.

A scenario is a function that talks to one registry through a :class:`Session`;
every request it makes is a named *step* whose answer is reduced to an
:class:`Observation` (status, error codes and the headers the spec requires,
normalised so that values which legitimately differ, such as upload ids and
Location URLs, compare by presence). Running the same scenario against the Go
registry and ``ocistore serve`` gives two step-by-step records to compare.

Scenarios must be deterministic: they draw bytes from a generator seeded by
their name, so both servers receive identical content and digests.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ._http import Response, request, retarget

# Headers whose value must be equal on both servers (after normalisation).
VALUE_HEADERS = (
    "Docker-Content-Digest",
    "Range",
    "Content-Range",
    "Docker-Distribution-API-Version",
    "OCI-Subject",
    "OCI-Filters-Applied",
)
# Headers that must be present on both or absent on both (values are server specific).
PRESENCE_HEADERS = ("Location", "Docker-Upload-UUID", "Link", "OCI-Chunk-Min-Length", "ETag")

Observation = dict[str, Any]


@dataclass
class Session:
    """One scenario's connection to one server; ``record`` maps step name to observation."""

    base: str
    seed: str
    record: dict[str, Observation] = field(default_factory=dict)
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def url(self, path: str) -> str:
        return path if path.startswith("http") else self.base + path

    def step(
        self,
        name: str,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        compare: tuple[str, ...] = (),
        content: str = "",
    ) -> Response:
        """Send one request and record it as step ``name``.

        ``compare`` adds headers compared by value for this step only (for example
        Content-Length, Content-Type); ``content`` = ``"bytes"`` compares the body's
        sha256, ``"json"`` the parsed body.
        """
        assert name not in self.record, f"step {name} recorded twice"
        resp = request(method, self.url(path), headers=headers, body=body)
        self.record[name] = observe(resp, compare=compare, content=content)
        return resp

    def follow(self, resp: Response) -> str:
        """The newest Location, on this server."""
        return retarget(resp.location(), self.base)


def observe(resp: Response, *, compare: tuple[str, ...] = (), content: str = "") -> Observation:
    # One error per missing blob (Go) or one naming them all: the same answer.
    obs: Observation = {"status": resp.status, "codes": sorted(set(resp.error_codes()))}
    for name in VALUE_HEADERS:
        value = resp.header(name)
        obs[name] = value.lower() if name == "Docker-Distribution-API-Version" and value else value
    for name in compare:  # entity headers: only for content, not for error bodies
        obs[name] = resp.header(name) if resp.status < 400 else None
    for name in PRESENCE_HEADERS:
        obs[name] = resp.header(name) is not None
    if content == "bytes" and resp.status < 300:
        obs["body"] = "sha256:" + hashlib.sha256(resp.body).hexdigest()
    elif content == "json" and resp.status < 300:
        obs["body"] = normalise_json(resp.body)
    return obs


def normalise_json(body: bytes) -> Any:
    try:
        doc = json.loads(body)
    except ValueError:
        return f"<not json: {body[:60]!r}>"
    if isinstance(doc, dict) and "tags" in doc:
        # Go writes "tags": null for an empty list, and lists tags in directory
        # order (the filesystem's, not lexical): compare the set, in order.
        doc["tags"] = sorted(doc["tags"] or [])
    return doc


Scenario = Callable[[Session], None]


def run(scenario: Scenario, base: str, name: str) -> dict[str, Observation]:
    session = Session(base, seed=name)
    scenario(session)
    return session.record


Key = tuple[str, str, str]  # (scenario, step, field)


def differences(
    go: dict[str, dict[str, Observation]], oci: dict[str, dict[str, Observation]]
) -> dict[Key, tuple[Any, Any]]:
    """Every (scenario, step, field) whose value differs, with (Go's, ocistore's) value.

    A step only one server saw (the scenario branched on an answer) differs in
    its ``status`` field, with ``None`` for the side that did not send it.
    """
    out: dict[Key, tuple[Any, Any]] = {}
    for scenario in sorted(set(go) | set(oci)):
        a, b = go.get(scenario, {}), oci.get(scenario, {})
        for step in list(dict.fromkeys([*a, *b])):
            if step not in a or step not in b:
                out[(scenario, step, "status")] = (
                    a.get(step, {}).get("status"),
                    b.get(step, {}).get("status"),
                )
                continue
            for fld in list(dict.fromkeys([*a[step], *b[step]])):
                va, vb = a[step].get(fld), b[step].get(fld)
                if va != vb:
                    out[(scenario, step, fld)] = (va, vb)
    return out
