"""The messages between a worker and a store process, sans-IO.

Request:  op (1 byte), key length (4), value length (4), key, value.
Response: status (1 byte), payload length (4), payload.
All integers are unsigned big-endian.
"""

from __future__ import annotations

import struct
from typing import Final

from .commands import CommandError
from .store import Store

REQUEST_HEADER: Final = struct.Struct(">BII")
RESPONSE_HEADER: Final = struct.Struct(">BI")

OP_GET, OP_SET, OP_DEL, OP_INCR = 1, 2, 3, 4
STATUS_VALUE, STATUS_NIL, STATUS_ERROR = 0, 1, 2


def encode_request(op: int, key: bytes, value: bytes = b"") -> bytes:
    return REQUEST_HEADER.pack(op, len(key), len(value)) + key + value


def cut_request(buffer: bytes | bytearray) -> tuple[int, bytes, bytes, int] | None:
    """(op, key, value, bytes used) for the first whole request, or None."""
    if len(buffer) < REQUEST_HEADER.size:
        return None
    op, key_length, value_length = REQUEST_HEADER.unpack_from(buffer)
    key_end = REQUEST_HEADER.size + key_length
    end = key_end + value_length
    if len(buffer) < end:
        return None
    return op, bytes(buffer[REQUEST_HEADER.size : key_end]), bytes(buffer[key_end:end]), end


def apply(store: Store, op: int, key: bytes, value: bytes) -> bytes:
    """Run one request against the store, and encode its response."""
    try:
        if op == OP_GET:
            found = store.get(key)
            if found is None:
                return RESPONSE_HEADER.pack(STATUS_NIL, 0)
            return RESPONSE_HEADER.pack(STATUS_VALUE, len(found)) + found
        if op == OP_SET:
            store.set(key, value)
            payload = b""
        elif op == OP_DEL:
            payload = b"1" if store.delete(key) else b"0"
        elif op == OP_INCR:
            payload = str(store.incr(key)).encode("ascii")
        else:
            raise ValueError(f"unknown store op {op}")
    except CommandError as error:
        payload = f"{error.code} {error.text}".encode("ascii")
        return RESPONSE_HEADER.pack(STATUS_ERROR, len(payload)) + payload
    return RESPONSE_HEADER.pack(STATUS_VALUE, len(payload)) + payload


def decode_response(status: int, payload: bytes) -> bytes | None:
    """The value, None for nil; raises the CommandError the store raised."""
    if status == STATUS_NIL:
        return None
    if status == STATUS_ERROR:
        code, _, text = payload.decode("ascii").partition(" ")
        raise CommandError(code, text)
    return payload
