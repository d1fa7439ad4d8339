"""Request bodies as sent: Content-Encoding (gzip, deflate) within the configured limits."""

from __future__ import annotations

import zlib

from services.ingest.errors import PayloadTooLarge, UndecodableBody, UnsupportedMediaType

_WBITS = {"gzip": 31, "x-gzip": 31, "deflate": 15}


def decompress(body: bytes, content_encoding: str | None, limit: int) -> bytes:
    """The body decoded from its Content-Encoding; ``PayloadTooLarge`` once it grows past ``limit``."""
    encoding = (content_encoding or "").strip().lower()
    if encoding in ("", "identity"):
        return body
    wbits = _WBITS.get(encoding)
    if wbits is None:
        raise UnsupportedMediaType(
            f"Content-Encoding {encoding!r} is not supported: send gzip, deflate or no encoding"
        )
    decompressor = zlib.decompressobj(wbits)
    try:
        out = decompressor.decompress(body, limit + 1)
    except zlib.error as exc:
        if encoding == "deflate":
            # Some clients send raw deflate (no zlib header) as "deflate".
            try:
                decompressor = zlib.decompressobj(-15)
                out = decompressor.decompress(body, limit + 1)
            except zlib.error:
                raise UndecodableBody(f"body is not valid {encoding} data: {exc}") from None
        else:
            raise UndecodableBody(f"body is not valid {encoding} data: {exc}") from None
    if len(out) > limit or decompressor.unconsumed_tail:
        raise PayloadTooLarge(f"body is over {limit} bytes once decompressed")
    if not decompressor.eof:
        raise UndecodableBody(f"{encoding} body is truncated: the compressed stream does not end")
    return out
