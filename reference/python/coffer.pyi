"""Open, inspect, decrypt and encrypt WhatsApp crypt15 (crypt14, crypt12) backups and
Coffer files, streaming, on Coffer's Rust format crate."""

import os
from typing import IO, Any, Callable, Dict, Literal, Optional, Type, Union

__version__: str

StrPath = Union[str, "os.PathLike[str]"]
#: A path, or a binary file object (``open(..., "rb")``, ``io.BytesIO``, a socket's makefile).
Source = Union[StrPath, IO[bytes]]
#: A path (created only when complete), or a binary file object (rolled back on failure).
Destination = Union[StrPath, IO[bytes]]
#: The 64 hex digits (spaces and dashes allowed), a key file's path
#: (``encrypted_backup.key``, or crypt12/14's ``key``), or a key file's bytes.
Key = Union[str, "os.PathLike[str]", bytes]
#: Called with the number of bytes read so far.
Progress = Callable[[int], object]

class CofferError(Exception):
    """Base class of every Coffer error."""

    #: The error class of spec/errors.md: "wrong_key", "corrupt", "truncated",
    #: "trailing_data", "unsupported", "malformed" or "io".
    error_class: str

class WrongKeyError(CofferError):
    """The key does not open this backup (authentication failed on intact data)."""

class CorruptError(CofferError):
    """The backup was modified or damaged."""

class TruncatedError(CofferError):
    """The backup ends before its structure says it should."""

class TrailingDataError(CofferError):
    """Bytes follow the end of a complete backup."""

class UnsupportedError(CofferError):
    """A well-formed backup that uses a feature or version this package does not support."""

class MalformedError(CofferError):
    """The input (backup or key) is not of the expected form at all."""

class CofferIOError(CofferError):
    """Reading or writing failed for a reason outside the data."""

#: Error class name -> exception type.
ERROR_CLASSES: Dict[str, Type[CofferError]]

def decrypt(
    src: Source,
    dst: Destination,
    *,
    key: Key,
    decompress: bool = True,
    overwrite: bool = False,
    progress: Optional[Progress] = None,
) -> Dict[str, Any]:
    """Decrypts a crypt15, crypt14, crypt12 or Coffer backup (recognised from its bytes).

    Nothing unauthenticated is left in ``dst``. An existing ``dst`` path raises
    FileExistsError unless ``overwrite``. ``decompress=False`` keeps crypt15's zlib payload.
    Returns a summary: ``format``, ``input_bytes``, ``output_bytes`` and per-format details.
    """

def verify(src: Source, *, key: Key, progress: Optional[Progress] = None) -> Dict[str, Any]:
    """Authenticates a backup without writing its plaintext; raises as ``decrypt`` would."""

def encrypt(
    src: Source,
    dst: Destination,
    *,
    key: Key,
    format: Literal["crypt15", "coffer"] = "crypt15",
    overwrite: bool = False,
    like: Optional[Source] = None,
    keep_iv: bool = False,
    iv: Union[bytes, str, None] = None,
    app_version: Optional[str] = None,
    jid_suffix: Optional[str] = None,
    backup_version: Optional[int] = None,
    level: Optional[int] = None,
    stored: bool = False,
    md5: bool = True,
    compress: Optional[Literal["zstd", "none"]] = None,
    zstd_level: Optional[int] = None,
    progress: Optional[Progress] = None,
) -> Dict[str, Any]:
    """Encrypts ``src`` into a crypt15 backup (``format="crypt15"``) or a Coffer file.

    crypt15: the header comes from ``like`` (new random IV unless ``keep_iv``, which
    reproduces ``like`` byte for byte from its own plaintext: never for other plaintext) or
    from ``app_version``/``jid_suffix``/``backup_version``; zlib at ``level`` (default 1)
    or ``stored``. Coffer: ``compress`` "zstd" (default: seekable frames, read back as
    "zstd_seekable") or "none", ``zstd_level`` 1-19.
    """

def inspect(src: Source) -> Dict[str, Any]:
    """The format and public header of a backup, without the key."""

def open(src: Source, *, key: Key) -> CofferReader:
    """A Coffer file as a readable binary stream of its plaintext.

    Chunks are released only once authenticated; truncation raises at the end, so read to
    the end before trusting the whole. crypt15 raises UnsupportedError: use ``decrypt``.
    """

class CofferReader:
    """The plaintext of a Coffer file; a context manager."""

    @property
    def compression(self) -> Literal["zstd_seekable", "zstd", "none"]: ...
    @property
    def closed(self) -> bool: ...
    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (all that remain if negative); ``b""`` at the verified end."""
    def readable(self) -> bool: ...
    def close(self) -> None: ...
    def __enter__(self) -> "CofferReader": ...
    def __exit__(self, *args: object) -> bool: ...
