"""A copy of the shipped model with other metadata, for tests of what metadata decides.

The weights are the shipped ones, byte for byte; only the ``metadata_props`` entry the
model describes itself with (:data:`inference.metadata.METADATA_KEY`) is replaced. The
``onnx`` package is a training dependency, so the ModelProto's top-level fields are
rewritten in protobuf's wire format directly: field 14 (``metadata_props``, a
``StringStringEntryProto`` of key = field 1 and value = field 2).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from inference.classifier import SHIPPED_MODEL
from inference.metadata import METADATA_KEY, ModelMetadata
from tests.shipped import shipped_metadata

_METADATA_PROPS = 14
_LEN = 2  # wire type of strings and messages


def _varint(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, i


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _len_field(number: int, payload: bytes) -> bytes:
    return _encode_varint(number << 3 | _LEN) + _encode_varint(len(payload)) + payload


def _fields(data: bytes) -> list[tuple[int, int, bytes]]:
    """(field number, wire type, raw bytes of the whole field) of one message."""
    out, i = [], 0
    while i < len(data):
        start = i
        tag, i = _varint(data, i)
        wire = tag & 7
        if wire == 0:
            _, i = _varint(data, i)
        elif wire == 1:
            i += 8
        elif wire == _LEN:
            size, i = _varint(data, i)
            i += size
        elif wire == 5:
            i += 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        out.append((tag >> 3, wire, data[start:i]))
    return out


def _payload(raw: bytes) -> bytes:
    _, i = _varint(raw, 0)
    size, i = _varint(raw, i)
    return raw[i : i + size]


def with_metadata(model: bytes, metadata: ModelMetadata) -> bytes:
    """The model's bytes with its self-description replaced by ``metadata``."""
    kept = []
    for number, wire, raw in _fields(model):
        if number == _METADATA_PROPS and wire == _LEN:
            entry = {n: _payload(r) for n, _, r in _fields(_payload(raw))}
            if entry.get(1) == METADATA_KEY.encode():
                continue
        kept.append(raw)
    entry = _len_field(1, METADATA_KEY.encode()) + _len_field(2, metadata.to_json().encode())
    return b"".join(kept) + _len_field(_METADATA_PROPS, entry)


def shipped_with_gate(path: Path, **gate: Any) -> Path:
    """Write the shipped model to ``path`` with some gate settings changed."""
    meta = shipped_metadata()
    path.write_bytes(
        with_metadata(SHIPPED_MODEL.read_bytes(), replace(meta, gate=replace(meta.gate, **gate)))
    )
    return path
