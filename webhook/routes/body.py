"""Bounded request bodies: a huge body is refused before it is buffered whole."""

from __future__ import annotations

from fastapi import Request


class BodyTooLarge(Exception):
    pass


async def read_body(request: Request, limit: int) -> bytes:
    """Read at most `limit` bytes, or raise BodyTooLarge."""
    declared = request.headers.get("content-length")
    # ASCII digits only ("²" is a digit to str.isdigit), and no int() of thousands of them.
    if (
        declared is not None
        and declared.isascii()
        and declared.isdigit()
        and (len(declared) > 18 or int(declared) > limit)
    ):
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)
