"""The global content-addressed blob store (distribution ``registry/storage/blobstore.go``).

Every blob lives once, under its sha256 digest, in ``blobs/``. This store
neither knows nor checks repositories: :class:`~ocistore.storage.linkedblobstore.LinkedBlobStore`
is the door that does. It reads and writes blob data, writes and reads link
files, and walks ``blobs/`` for garbage collection.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import BinaryIO, Final

from ocistore.cache.base import BlobDescriptorService
from ocistore.descriptor import OCTET_STREAM, Descriptor
from ocistore.digest import Digest, as_digest
from ocistore.driver.base import Buffer, StorageDriver, URLForDriver
from ocistore.driver.buffers import byte_view
from ocistore.errors import BlobTooLarge, BlobUnknown, DigestError, PathNotFound
from ocistore.storage import paths
from ocistore.storage.statter import GlobalBlobStatter, read_link

__all__ = ["MAX_GET_SIZE", "BlobStore"]

log = logging.getLogger("ocistore.storage")

MAX_GET_SIZE: Final = 4 << 20
"""``get()`` returns at most this many bytes (distribution's ``maxBlobGetSize``); use ``open()`` beyond."""


class BlobStore:
    """Blob bytes by digest, plus the link primitives the linked stores build on.

    ``statter`` answers :meth:`stat` (the registry passes the cached global
    statter); :meth:`exists` always asks the driver, so a stale cache can never
    make :meth:`put` skip a write.

    ``redirect_expiry`` (seconds) lets :meth:`redirect_url` hand out the
    driver's URLs of that lifetime; None (the default) never redirects.
    """

    __slots__ = ("_raw", "_url_for", "driver", "redirect_expiry", "statter")

    def __init__(
        self,
        driver: StorageDriver,
        statter: BlobDescriptorService | None = None,
        *,
        redirect_expiry: float | None = None,
    ) -> None:
        self.driver = driver
        self._raw = GlobalBlobStatter(driver)
        self.statter: BlobDescriptorService = statter if statter is not None else self._raw
        self.redirect_expiry = redirect_expiry
        self._url_for: URLForDriver | None = (
            driver if redirect_expiry is not None and isinstance(driver, URLForDriver) else None
        )

    @property
    def redirects(self) -> bool:
        """Whether :meth:`redirect_url` gives URLs: redirects are on and the driver has ``url_for``."""
        return self._url_for is not None

    @staticmethod
    def data_path(digest: Digest) -> str:
        return paths.path_for(paths.BlobData(digest))

    def stat(self, digest: Digest | str) -> Descriptor:
        """The blob's descriptor; raises :class:`~ocistore.errors.BlobUnknown`.

        The string goes to the statter as is: every statter validates it, and
        the stat cache's hit path needs no :class:`Digest` (a hit proves it valid).
        """
        return self.statter.stat(digest)

    def exists(self, digest: Digest | str) -> bool:
        """Whether the data file is there, asked of the driver (no cache)."""
        try:
            self._raw.stat(digest)
        except BlobUnknown:
            return False
        return True

    def get(self, digest: Digest | str) -> bytes:
        """The whole blob; :class:`~ocistore.errors.BlobTooLarge` above :data:`MAX_GET_SIZE`."""
        desc = self.stat(digest)
        return self.read(desc)

    def read(self, desc: Descriptor) -> bytes:
        """The bytes of an already statted blob (size-limited as :meth:`get`)."""
        if desc.size > MAX_GET_SIZE:
            raise BlobTooLarge(desc.size, MAX_GET_SIZE)
        try:
            data = self.driver.get_content(self.data_path(desc.digest))
        except PathNotFound:
            raise BlobUnknown(desc.digest) from None
        if len(data) > MAX_GET_SIZE:  # grew behind the statter's back
            raise BlobTooLarge(len(data), MAX_GET_SIZE)
        return data

    def open(self, digest: Digest | str) -> BinaryIO:
        """A seekable stream over the blob; it reads from storage as it goes."""
        dgst = as_digest(digest)
        self.stat(dgst)
        return self.open_data(dgst)

    def open_data(self, digest: Digest) -> BinaryIO:
        """Open the data of ``digest`` without a stat (the caller just did one)."""
        try:
            return self.driver.reader(self.data_path(digest), 0)
        except PathNotFound:
            raise BlobUnknown(digest) from None

    def put(self, media_type: str, data: Buffer) -> Descriptor:
        """Store ``data`` under its sha256 digest; skip the write if the data file exists.

        Existence is asked of the driver, never of a cache: after a garbage
        collection a stale cache could claim a blob that is gone.
        ``put_content`` is atomic and durable, so a crash leaves either no
        file or the whole blob.
        """
        view = byte_view(data)
        dgst = Digest.from_bytes(view)
        if not self.exists(dgst):
            self.driver.put_content(self.data_path(dgst), view)
        return Descriptor(digest=dgst, size=view.nbytes, media_type=OCTET_STREAM)

    def redirect_url(self, digest: Digest) -> str | None:
        """A URL a client may GET the blob's bytes from (Range included), or None.

        None unless :attr:`redirects`; the caller has checked that the blob
        exists. The driver signs the URL, the storage layer picks the path and
        the lifetime, and the server only answers with it.
        """
        if self._url_for is None or self.redirect_expiry is None:
            return None
        return self._url_for.url_for(
            self.data_path(digest), method="GET", expiry=self.redirect_expiry
        )

    def enumerate(self) -> Iterator[Digest]:
        """Every digest in ``blobs/``, in walk order (for garbage collection).

        A stray file that is not ``<alg>/<xx>/<hex>/data`` is skipped with a
        warning: it names no blob, so there is nothing to collect.
        """
        root = paths.path_for(paths.BlobsRoot())
        try:
            entries = self.driver.walk(root)
        except PathNotFound:
            return
        for info in entries:
            if info.is_dir or not paths.is_blob_data_path(info.path):
                continue
            try:
                yield paths.digest_from_blob_data_path(info.path)
            except DigestError as exc:
                log.warning("skipping stray file in blobs/: %s (%s)", info.path, exc)

    # --- links -----------------------------------------------------------------

    def link(self, path: str, digest: Digest) -> None:
        """Write the link file ``path`` holding ``digest`` (no newline), atomically and durably."""
        self.driver.put_content(path, str(digest).encode("ascii"))

    def readlink(self, path: str) -> Digest:
        """The digest in link file ``path``: raises PathNotFound or DigestInvalid naming ``path``."""
        return read_link(self.driver, path)
