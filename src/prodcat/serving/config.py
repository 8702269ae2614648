"""Serving settings: where the model is, the input limits, and the optional API keys.

Settings come from the ``prodcat serve`` options or, for a uvicorn worker process started by
import string (``--workers`` > 1), from ``PRODCAT_SERVE_*`` environment variables, so that every
worker sees the same configuration.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from prodcat.errors import ConfigError
from prodcat.serving.images import DEFAULT_MAX_DECODE_SAMPLES
from prodcat.system import usable_cpus

#: Environment variable holding comma-separated API keys (``PRODCAT_API_KEYS=k1,k2``).
API_KEYS_ENV = "PRODCAT_API_KEYS"
#: Environment variable naming a file with one API key per line (``#`` starts a comment).
API_KEY_FILE_ENV = "PRODCAT_API_KEY_FILE"
#: Environment variable carrying the JSON-encoded settings to uvicorn worker processes.
SETTINGS_ENV = "PRODCAT_SERVE_SETTINGS"
#: A key shorter than this is refused: a short key can be guessed by trying them all.
MIN_KEY_LENGTH = 16


#: Photo requests that may wait for a decode, per decode slot (see ``decode_queue``).
DECODE_QUEUE_PER_SLOT = 4


@dataclass(frozen=True)
class ServingSettings:
    """What one API process needs to know. Limits are per request."""

    model_dir: str
    #: Longest title accepted, in characters (Rakuten titles are at most ~250).
    max_title_chars: int = 1_000
    #: Longest description accepted, in characters; the model reads the first 1,000 anyway.
    max_description_chars: int = 20_000
    #: Largest photo accepted, in bytes (after base64 decoding).
    max_image_bytes: int = 8 * 1024 * 1024
    #: Most pixels a photo may declare; larger ones are refused before they are decoded.
    max_image_pixels: int = 40_000_000
    #: The decode budget: most samples (pixels × bands) one photo's decode may hold, after a
    #: JPEG's reduced-scale decode; checked from the header, refused with 413 above it.
    max_decode_samples: int = DEFAULT_MAX_DECODE_SAMPLES
    #: Photos decoded at once (default: one per usable CPU) ...
    decode_concurrency: int = field(default_factory=usable_cpus)
    #: ... and how many more may wait for a decode; past that a photo request gets 503 with
    #: Retry-After, and text requests keep their share of the machine. Four per CPU: a waiting
    #: request holds only its bytes, and with twice per CPU eight photo clients on two cores,
    #: the API's target load, already met 503s once the photo encoder became EfficientNet-Lite1
    #: (its encoding takes longer, so decodes wait longer for a core).
    decode_queue: int = field(default_factory=lambda: DECODE_QUEUE_PER_SLOT * usable_cpus())
    #: Most photo bytes in one ``/v1/predict/batch`` request (after base64 decoding) ...
    max_batch_image_bytes: int = 8 * 1024 * 1024
    #: ... and most decode samples, all its photos together.
    max_batch_decode_samples: int = 4 * DEFAULT_MAX_DECODE_SAMPLES
    #: Largest request body, in bytes; checked before the body is read.
    max_body_bytes: int = 16 * 1024 * 1024
    #: Most listings in one ``/v1/predict/batch`` request.
    max_batch: int = 64
    #: Most categories a request may ask for.
    max_top_k: int = 20
    #: Most perturbed copies one ``/v1/explain`` request may ask LIME to classify.
    max_lime_samples: int = 2_000
    #: Explanations computed at once (each keeps the cores busy for up to a few seconds).
    explain_concurrency: int = 1
    #: Most listings the micro-batcher hands the model in one call.
    inference_batch: int = 64
    #: Seconds a client has to send a request's headers once it connects (or after its previous
    #: response), and to send the whole body once the headers are in: slow clients must not
    #: hold connections and memory open.
    header_timeout: float = 10.0
    body_timeout: float = 60.0
    #: Whether ``/metrics``, ``/docs`` and ``/openapi.json`` need the API key too (health
    #: checks never do).
    protect_ops: bool = False
    #: SHA-256 digests of the accepted API keys; empty means the API is open.
    api_key_digests: tuple[str, ...] = field(default=(), repr=False)
    #: Review store URL (``sqlite:///reviews.db``, ``postgresql://...``); None: no review queue.
    review_db: str | None = field(default=None, repr=False)
    #: Default order of ``/v1/review/next``: ``uncertain`` (margin sampling) or ``oldest``.
    review_order: str = "uncertain"

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, int) and not isinstance(value, bool) and value < 1:
                raise ConfigError(f"serving setting {f.name} must be at least 1, got {value}")
            if isinstance(value, float) and not value > 0:
                raise ConfigError(f"serving setting {f.name} must be more than 0, got {value}")
        if self.protect_ops and not self.api_key_digests:
            raise ConfigError("protecting /metrics and /docs with the API key needs API keys "
                              f"({API_KEYS_ENV} or an API key file)")

    @property
    def auth_enabled(self) -> bool:
        return bool(self.api_key_digests)

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> ServingSettings:
        environ = os.environ if environ is None else environ
        raw = environ.get(SETTINGS_ENV)
        if not raw:
            raise ConfigError(f"{SETTINGS_ENV} is not set: start the API with `prodcat serve`")
        data = json.loads(raw)
        data["api_key_digests"] = tuple(data.get("api_key_digests") or ())
        return cls(**data)


def digest_key(key: str) -> str:
    """Keys are kept and compared as SHA-256 digests: equal-length values for compare_digest,
    and no plain key in memory dumps or in the environment of worker processes."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _check_keys(keys: list[str], where: str) -> None:
    # HTTP header values are Latin-1 at best: a non-ASCII key could never be sent as typed.
    odd = [i for i, k in enumerate(keys, 1) if not k.isascii() or not k.isprintable()]
    if odd:
        raise ConfigError(f"{where}: {len(odd)} API key(s) with non-ASCII or control characters "
                          f"(key {', '.join(map(str, odd[:5]))}); keys must be printable ASCII")
    short = [k for k in keys if len(k) < MIN_KEY_LENGTH]
    if short:
        raise ConfigError(f"{where}: {len(short)} API key(s) shorter than {MIN_KEY_LENGTH} characters; "
                          "use long random keys (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)")


def read_api_keys(key_file: str | os.PathLike | None = None,
                  environ: dict[str, str] | None = None) -> tuple[str, ...]:
    """The API keys from ``PRODCAT_API_KEYS``, the key file (argument or ``PRODCAT_API_KEY_FILE``),
    as digests. No keys anywhere means an open API; there is never a built-in default key.

    A source that is given but yields no key (``PRODCAT_API_KEYS=","``, an empty key file) is an
    error, not an open API; so are short keys and keys that are not printable ASCII. An empty
    ``PRODCAT_API_KEYS=`` counts as not set.
    """
    environ = os.environ if environ is None else environ
    raw = environ.get(API_KEYS_ENV, "")
    keys = [k.strip() for k in raw.split(",") if k.strip()]
    if raw.strip() and not keys:
        raise ConfigError(f"{API_KEYS_ENV} is set but holds no key (comma-separated keys); "
                          "unset it for an open API")
    _check_keys(keys, API_KEYS_ENV)
    key_file = key_file or environ.get(API_KEY_FILE_ENV) or None
    if key_file:
        path = Path(key_file)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError:
            raise ConfigError(f"API key file {path} is not UTF-8 text") from None
        except OSError as exc:
            raise ConfigError(f"cannot read API key file {path}: {exc.strerror or exc}") from None
        file_keys = [ln.split("#", 1)[0].strip() for ln in lines]
        file_keys = [k for k in file_keys if k]
        if not file_keys:
            raise ConfigError(f"API key file {path} has no keys (one per line)")
        _check_keys(file_keys, f"API key file {path}")
        keys += file_keys
    return tuple(sorted({digest_key(k) for k in keys}))
