"""Repository names and tags, exactly as distribution's ``reference`` package accepts them.

Name grammar (distribution 2.8 ``reference/regexp.go``)::

    name            := [domain '/'] path-component ('/' path-component)*
    domain          := domain-component ('.' domain-component)* [':' [0-9]+]
    domain-component:= [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]
    path-component  := [a-z0-9]+ (separator [a-z0-9]+)*
    separator       := [._] | '__' | '-'*

at most 255 characters in all. Tags: ``[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}``.

Every component therefore starts with a letter or digit, so no valid name can
spell ``..``, an empty component, or collide with the ``_layers``,
``_manifests`` and ``_uploads`` directories that sit beside repositories.
"""

from __future__ import annotations

import re
from typing import Final

from ocistore.errors import NameInvalid, TagInvalid

NAME_TOTAL_LENGTH_MAX: Final = 255
TAG_LENGTH_MAX: Final = 128

# The grammar's separator may be empty ('-'*), which lets a backtracking engine split a
# run of letters in exponentially many ways: 'a' * 30 + '!' took minutes (found by
# tests/fuzz/fuzz_reference.py). An empty separator adds nothing to the language, so
# these spell the same grammar with '-'+ and one way to match each component.
_PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)"
_DOMAIN = re.compile(rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*(?::[0-9]+)?")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


def validate_name(name: str) -> str:
    """Return ``name`` if distribution accepts it; else raise :class:`NameInvalid`."""
    if not isinstance(name, str):
        raise NameInvalid(name, f"expected a string, got {type(name).__name__}")
    if not name:
        raise NameInvalid(name, "empty name")
    if len(name) > NAME_TOTAL_LENGTH_MAX:
        raise NameInvalid(
            name, f"{len(name)} characters, more than the {NAME_TOTAL_LENGTH_MAX} allowed"
        )
    if not name.isascii():
        raise NameInvalid(name, "contains non-ASCII characters")
    components = name.split("/")
    for i, component in enumerate(components):
        if _PATH_COMPONENT.fullmatch(component) is not None:
            continue
        # distribution lets the first of several components be a domain (upper
        # case, dots, hyphens at the inside, a port): existing trees hold such names.
        if i == 0 and len(components) > 1 and _DOMAIN.fullmatch(component) is not None:
            continue
        raise NameInvalid(name, _component_reason(component, i))
    return name


def _component_reason(component: str, index: int) -> str:
    where = f"component {index + 1} {component!r}"
    if component == "":
        return f"{where} is empty (leading, trailing or doubled '/')"
    if "\x00" in component:
        return f"{where} contains a NUL byte"
    if component in (".", ".."):
        return f"{where} is a relative path element"
    if not component[0].isalnum() or not component[-1].isalnum():
        return f"{where} must start and end with a lowercase letter or digit"
    if component.lower() != component:
        return f"{where} has upper case (only a domain in first place may)"
    return f"{where} does not match [a-z0-9]+((\\.|_|__|-*)[a-z0-9]+)*"


def validate_tag(tag: str) -> str:
    """Return ``tag`` if valid; else raise :class:`TagInvalid` with the reason."""
    if not isinstance(tag, str):
        raise TagInvalid(tag, f"expected a string, got {type(tag).__name__}")
    if not tag:
        raise TagInvalid(tag, "empty tag")
    if len(tag) > TAG_LENGTH_MAX:
        raise TagInvalid(tag, f"{len(tag)} characters, more than the {TAG_LENGTH_MAX} allowed")
    if _TAG.fullmatch(tag) is None:
        if tag[0] in ".-":
            raise TagInvalid(tag, "must not start with '.' or '-'")
        raise TagInvalid(tag, "only [A-Za-z0-9_.-] allowed, starting with [A-Za-z0-9_]")
    return tag
