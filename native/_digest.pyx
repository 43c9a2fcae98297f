# cython: language_level=3
"""Native twin of ocistore._core_py.digest: digest validation."""

from ocistore._core_py.errors import BlobDigestUnsupported, DigestInvalid


cdef inline bint _alg_char(Py_UCS4 c) noexcept:
    return (c >= u'a' and c <= u'z') or (c >= u'0' and c <= u'9')


cdef inline bint _sep_char(Py_UCS4 c) noexcept:
    return c == u'+' or c == u'.' or c == u'_' or c == u'-'


cdef inline bint _enc_char(Py_UCS4 c) noexcept:
    return ((c >= u'a' and c <= u'z') or (c >= u'A' and c <= u'Z') or (c >= u'0' and c <= u'9')
            or c == u'=' or c == u'_' or c == u'-')


cdef inline bint _hex_char(Py_UCS4 c) noexcept:
    return (c >= u'0' and c <= u'9') or (c >= u'a' and c <= u'f')


cdef bint _valid_algorithm(str alg):
    # [a-z0-9]+([+._-][a-z0-9]+)*
    cdef Py_ssize_t i, n = len(alg)
    cdef bint need_alnum = True
    cdef Py_UCS4 c
    for i in range(n):
        c = alg[i]
        if _alg_char(c):
            need_alnum = False
        elif _sep_char(c) and not need_alnum:
            need_alnum = True
        else:
            return False
    return not need_alnum


def parse_digest(value):
    """Split and validate ``algorithm:encoded``; return ``(algorithm, encoded)``."""
    cdef str s
    cdef Py_ssize_t colon, i, n, length
    cdef Py_UCS4 c
    if not isinstance(value, str):
        raise DigestInvalid(value, f"expected a string, got {type(value).__name__}")
    s = <str>value
    n = len(s)
    if n == 0:
        raise DigestInvalid(value, "empty digest")
    colon = s.find(u":")
    if colon < 0:
        raise DigestInvalid(value, "missing ':' between algorithm and encoded part")
    if colon == 0:
        raise DigestInvalid(value, "empty algorithm")
    if colon == n - 1:
        raise DigestInvalid(value, "empty encoded part")
    alg = s[:colon]
    enc = s[colon + 1:]
    if not _valid_algorithm(alg):
        raise DigestInvalid(value, f"algorithm {alg!r} does not match [a-z0-9]+([+._-][a-z0-9]+)*")
    for i in range(colon + 1, n):
        if not _enc_char(s[i]):
            raise DigestInvalid(value, "encoded part has characters outside [a-zA-Z0-9=_-]")
    if alg == "sha256" or alg == "blake3":
        length = 64
    elif alg == "sha512":
        length = 128
    else:
        raise BlobDigestUnsupported(value, alg)
    if n - colon - 1 != length:
        raise DigestInvalid(value, f"{alg} needs {length} hex characters, got {n - colon - 1}")
    for i in range(colon + 1, n):
        if not _hex_char(s[i]):
            raise DigestInvalid(value, "encoded part must be lowercase hex")
    return alg, enc

