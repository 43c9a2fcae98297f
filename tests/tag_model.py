"""A model of tag and manifest mutations, to check that concurrent ones ran in a serial order.

A round runs a few mutations at once (put a manifest under a tag, untag, delete
a manifest by digest); :func:`serial_order` then looks for an order of those
mutations that, applied one at a time to the state before the round, yields
every outcome the requests got (done, or unknown) and the state found after it.
With at most a handful of mutations per round every order is tried.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

__all__ = ["Op", "State", "serial_order"]


@dataclass(frozen=True)
class State:
    tags: tuple[tuple[str, str], ...]
    """(tag, digest) sorted: what every tag points at."""
    manifests: frozenset[str]
    """The digests of the manifests the repository has (among those the test uses)."""

    @classmethod
    def of(cls, tags: dict[str, str], manifests: set[str] | frozenset[str]) -> State:
        return cls(tuple(sorted(tags.items())), frozenset(manifests))


@dataclass(frozen=True)
class Op:
    kind: str
    """``put`` (tag, digest), ``untag`` (tag), ``delete`` (digest)."""
    tag: str = ""
    digest: str = ""

    def apply(self, tags: dict[str, str], manifests: set[str]) -> bool:
        """Apply to the model; whether it succeeds (False: TAG_UNKNOWN / MANIFEST_UNKNOWN)."""
        if self.kind == "put":
            manifests.add(self.digest)
            tags[self.tag] = self.digest
            return True
        if self.kind == "untag":
            return tags.pop(self.tag, None) is not None
        if self.digest not in manifests:
            return False
        for t in [t for t, d in tags.items() if d == self.digest]:
            del tags[t]
        manifests.discard(self.digest)
        return True


def serial_order(before: State, ops: list[tuple[Op, bool]], after: State) -> tuple[Op, ...] | None:
    """An order of ``ops`` (each with whether it succeeded) from ``before`` to ``after``."""
    for order in itertools.permutations(range(len(ops))):
        tags = dict(before.tags)
        manifests = set(before.manifests)
        for i in order:
            op, ok = ops[i]
            if op.apply(tags, manifests) != ok:
                break
        else:
            if State.of(tags, manifests) == after:
                return tuple(ops[i][0] for i in order)
    return None
