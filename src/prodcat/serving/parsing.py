"""Reading a request: one listing from JSON or a multipart form, or a batch; every problem
becomes a :class:`~prodcat.serving.errors.ServingError` with the API's status and code."""

from __future__ import annotations

import base64
import binascii
import codecs
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import from_json
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request

from prodcat.serving.config import ServingSettings
from prodcat.serving.errors import ServingError

#: JSON bodies above this are parsed on the threadpool rather than on the event loop.
PARSE_INLINE_BYTES = 64 * 1024


def validation_error(exc: ValidationError, s: ServingSettings, prefix: str = "") -> ServingError:
    """The first problem pydantic found, as one of the API's error codes."""
    err = exc.errors(include_url=False)[0]
    loc = [str(p) for p in err.get("loc", ())]
    field = loc[-1] if loc else ""
    kind = err.get("type", "")
    where = prefix + ".".join(loc) if loc else prefix.rstrip(".") or "body"
    if kind == "json_invalid":
        return ServingError(422, "invalid_json", f"the body is not valid JSON: {err.get('msg')}")
    if field == "title" and (kind in {"missing", "string_too_short", "string_pattern_mismatch"}
                             or (kind == "string_type" and err.get("input") is None)):
        return ServingError(422, "title_required", f"{where}: a title is required (not empty or blank)")
    if kind == "string_too_long":
        limit = {"title": s.max_title_chars, "description": s.max_description_chars}.get(field)
        return ServingError(422, "text_too_long",
                            f"{where} is too long (at most {limit or err.get('ctx', {}).get('max_length')} characters)")
    return ServingError(422, "invalid_request", f"{where}: {err.get('msg')}")


def decode_base64(text: str, where: str, s: ServingSettings) -> bytes:
    if text.startswith("data:"):  # a data URL from a browser: keep the payload
        text = text.split(",", 1)[-1]
    if len(text) > (s.max_image_bytes + 2) // 3 * 4 + 8:
        raise ServingError(413, "image_too_large",
                           f"{where}: more than the {s.max_image_bytes:,} bytes accepted")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ServingError(422, "invalid_image_encoding", f"{where}: not valid base64") from None


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def is_json(media: str) -> bool:
    return media == "application/json" or media.endswith("+json")


_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
_UNICODE_CHARSETS = {"utf-8", "utf8", "utf-16", "utf-16le", "utf-16be", "utf-32", "utf-32le", "utf-32be"}


def json_text(request: Request, body: bytes) -> bytes | str:
    """A JSON body as the parser takes it: UTF-8 bytes as they are; a body that starts with a
    byte-order mark, or declares a UTF-16/32 ``charset``, decoded. The single and the batch
    endpoints both read their bodies through this, so they accept the same encodings."""
    charset = ""
    for param in request.headers.get("content-type", "").split(";")[1:]:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset":
            charset = value.strip().strip('"').lower()
    encoding = next((enc for bom, enc in _BOMS if body.startswith(bom)), None)
    if encoding is None and charset and charset not in ("utf-8", "utf8"):
        if charset not in _UNICODE_CHARSETS:
            raise ServingError(415, "unsupported_media_type",
                               f"charset {charset} is not accepted; send JSON as UTF-8 (or UTF-16/32)")
        encoding = charset
    if encoding is None:
        return body
    try:
        return body.decode(encoding)
    except UnicodeDecodeError as exc:
        raise ServingError(422, "invalid_json", f"the body is not valid {encoding}: {exc.reason}") from None


async def parse_json(request: Request, model: type[BaseModel], s: ServingSettings) -> Any:
    body = await request.body()
    if not body:
        raise ServingError(422, "invalid_request", "the body is empty; send a JSON object")
    text = json_text(request, body)
    try:
        if len(body) > PARSE_INLINE_BYTES:
            return await run_in_threadpool(model.model_validate_json, text)
        return model.model_validate_json(text)
    except ValidationError as exc:
        raise validation_error(exc, s) from None


async def parse_form(request: Request, form_model: type[BaseModel],
                     s: ServingSettings) -> tuple[BaseModel, bytes | None]:
    try:
        # Text parts are bounded too (UTF-8 takes at most 4 bytes a character).
        form = await request.form(max_files=1, max_fields=16,
                                  max_part_size=4 * max(s.max_title_chars, s.max_description_chars) + 64)
    except StarletteHTTPException as exc:
        detail = str(exc.detail)
        if "maximum size" in detail.lower():
            raise ServingError(422, "text_too_long", f"a form field is too long ({detail})") from None
        # 422 like a JSON syntax error: the body cannot be read as the form it claims to be.
        raise ServingError(422, "invalid_multipart", f"cannot read the form: {detail}") from None
    try:
        fields = {k: v for k, v in form.items() if k != "image" and isinstance(v, str)}
        try:
            m = form_model.model_validate(fields)
        except ValidationError as exc:
            raise validation_error(exc, s) from None
        upload = form.get("image")
        data: bytes | None = None
        if isinstance(upload, UploadFile):
            data = await upload.read(s.max_image_bytes + 1)
            if len(data) > s.max_image_bytes:
                raise ServingError(413, "image_too_large",
                                   f"image: more than the {s.max_image_bytes:,} bytes accepted")
            if not data and not upload.filename:
                data = None  # a browser's empty file input: no photo
        elif isinstance(upload, str) and upload:
            raise ServingError(422, "invalid_request", "image: send the photo as a file part")
        return m, data
    finally:
        await form.close()


async def parse_listing(request: Request, json_model: type[BaseModel], form_model: type[BaseModel],
                        s: ServingSettings) -> tuple[BaseModel, bytes | None]:
    """One listing from a JSON body (photo base64-encoded) or a multipart form (photo as the
    file part ``image``): the validated fields and the photo's bytes, if any."""
    media = media_type(request)
    if media in ("multipart/form-data", "application/x-www-form-urlencoded"):
        return await parse_form(request, form_model, s)
    if is_json(media):
        m = await parse_json(request, json_model, s)
        return m, decode_base64(m.image, "image", s) if m.image else None
    raise ServingError(415, "unsupported_media_type",
                       "send application/json or multipart/form-data (a URL-encoded form "
                       "without a photo is accepted too)")


async def parse_batch(request: Request, batch_model: type[BaseModel], s: ServingSettings) -> BaseModel:
    """The listings of a ``/v1/predict/batch`` body, refused outright when there are too many."""
    if not is_json(media_type(request)):
        raise ServingError(415, "unsupported_media_type", "send application/json")
    body = await request.body()
    if not body:
        raise ServingError(422, "invalid_request", "the body is empty; send a JSON object")
    text = json_text(request, body)
    try:
        # The same JSON parser as the single endpoint's (pydantic's): the same bodies are valid.
        raw = from_json(text) if len(body) <= PARSE_INLINE_BYTES else await run_in_threadpool(from_json, text)
    except (ValueError, RecursionError) as exc:
        raise ServingError(422, "invalid_json", f"the body is not valid JSON: {exc}") from None
    # Counted before the items are validated: validating thousands only to refuse them is waste.
    if isinstance(raw, dict) and isinstance(raw.get("items"), list) and len(raw["items"]) > s.max_batch:
        raise ServingError(413, "batch_too_large", f"{len(raw['items'])} items; at most {s.max_batch} per batch")
    try:
        return batch_model.model_validate(raw)
    except ValidationError as exc:
        raise validation_error(exc, s) from None


def listing_photos(batch: BaseModel, s: ServingSettings) -> list[tuple[BaseModel, bytes | None]]:
    """Each listing of a batch with its decoded photo (or None)."""
    return [(m, decode_base64(m.image, f"items.{i}.image", s) if m.image else None)
            for i, m in enumerate(batch.items)]
