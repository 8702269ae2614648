"""HMAC-SHA256 signatures with secret keys kept in files: bundles that travel, and the fit cache.

A bundle's manifest records the sha256 of every part, so one signature over the manifest's bytes
vouches for the whole bundle. Whoever holds the key can sign, so the key file must stay private:
it is read only when it belongs to the current user, and a key prodcat creates itself is
written with mode 0600 in a folder with mode 0700.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path

from prodcat.errors import BundleError, ConfigError

ALGORITHM = "hmac-sha256"
#: Fewer bytes than this is a password, not a key.
MIN_KEY_BYTES = 16
KEY_HINT = ("make one with: python -c \"import secrets; print(secrets.token_hex(32))\" > FILE "
            "&& chmod 600 FILE")


def read_key(path: str | os.PathLike) -> bytes:
    """The key in the file ``path`` (surrounding whitespace ignored, so an editor's newline does
    not change it)."""
    path = Path(path).expanduser()
    try:
        key = path.read_bytes().strip()
    except FileNotFoundError:
        raise ConfigError(f"signing key {path} not found; {KEY_HINT}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read signing key {path}: {exc.strerror or exc}") from None
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(f"signing key {path} is too short ({len(key)} bytes, at least "
                          f"{MIN_KEY_BYTES}); {KEY_HINT}")
    return key


def key_id(key: bytes) -> str:
    """A short name of a key that reveals nothing of it: tells "another key" from "changed"."""
    return hashlib.sha256(b"prodcat key id\0" + key).hexdigest()[:16]


def sign(data: bytes, key: bytes) -> dict[str, str]:
    return {"algorithm": ALGORITHM, "key_id": key_id(key),
            "signature": hmac.new(key, data, hashlib.sha256).hexdigest()}


def verify(data: bytes, record: object, key: bytes, what: str) -> None:
    """Raise :class:`BundleError` unless ``record`` (:func:`sign`'s) signs ``data`` with ``key``."""
    if not (isinstance(record, dict) and record.get("algorithm") == ALGORITHM
            and isinstance(record.get("signature"), str)):
        raise BundleError(f"{what} has a malformed signature; refusing it")
    expected = hmac.new(key, data, hashlib.sha256).hexdigest()
    if hmac.compare_digest(expected, record["signature"]):
        return
    if record.get("key_id") != key_id(key):
        raise BundleError(f"{what} was signed with another key (key id {str(record.get('key_id'))[:16]}, "
                          f"yours is {key_id(key)}); refusing it")
    raise BundleError(f"{what} was changed after it was signed; refusing it")


def _others_can_touch(info: os.stat_result) -> bool:
    """Whether another user owns the file or may read or write it (POSIX; Windows has ACLs)."""
    if not hasattr(os, "getuid"):
        return False
    return info.st_uid != os.getuid() or bool(stat.S_IMODE(info.st_mode) & 0o077)


def private_dir(path: Path, *, close: bool = True) -> Path:
    """``path`` as a folder only its owner can enter: every folder created on the way is 0700
    (``mkdir -p`` would give the parents the umask's mode), and with ``close`` an existing one of
    ours that others could enter is closed."""
    missing = []
    for folder in (path, *path.parents):
        if folder.exists():
            break
        missing.append(folder)
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it meanwhile
            folder.mkdir(mode=0o700)
    info = path.stat()
    if close and hasattr(os, "getuid") and info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) & 0o077:
        path.chmod(0o700)
    return path


def private_key(path: Path) -> bytes:
    """The per-user key at ``path``, created (0600, race-free) on first use.

    A key file that another user owns, or that others may read or write, is not trusted:
    :class:`ConfigError`.
    """
    private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "wb") as fh:
            fh.write(secrets.token_hex(32).encode("ascii"))
    info = path.stat()
    if _others_can_touch(info):
        raise ConfigError(f"{path} belongs to another user or others may read or write it "
                          f"(mode {stat.S_IMODE(info.st_mode):o}); delete it and prodcat makes a new one")
    return read_key(path)
