"""Minimal hand-written safetensors reader/writer (no `safetensors` package).

Format: 8-byte little-endian u64 N, then N bytes of JSON header
  {"__metadata__": {str: str}, name: {"dtype": "F64", "shape": [...],
   "data_offsets": [begin, end]}, ...}
padded with spaces to a multiple of 8, then the tensor data, contiguous,
little-endian, row-major. Offsets are relative to the start of the data block.
Tensors are written in sorted name order (the data block is laid out in that
order too). Scalars have shape [] and one element.
"""

from __future__ import annotations

import json
import struct
import sys
from typing import Dict, Optional, Tuple

import torch

_DT_TO_STR = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}
_STR_TO_DT = {v: k for k, v in _DT_TO_STR.items()}

if sys.byteorder != "little":  # pragma: no cover
    raise RuntimeError("safetensors_io assumes a little-endian host")


def _tensor_bytes(t: torch.Tensor) -> bytes:
    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().tobytes()
    return t.numpy().tobytes()


def serialize(tensors: Dict[str, torch.Tensor], metadata: Optional[Dict[str, str]] = None) -> bytes:
    header: Dict[str, object] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs = []
    off = 0
    for name in sorted(tensors):
        if name == "__metadata__":
            raise ValueError("reserved tensor name")
        t = tensors[name]
        if t.dtype not in _DT_TO_STR:
            raise TypeError(f"{name}: unsupported dtype {t.dtype}")
        b = _tensor_bytes(t)
        header[name] = {"dtype": _DT_TO_STR[t.dtype], "shape": list(t.shape),
                        "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    hjson = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hjson += b" " * ((-len(hjson)) % 8)
    return struct.pack("<Q", len(hjson)) + hjson + b"".join(blobs)


def save_file(tensors: Dict[str, torch.Tensor], path: str,
              metadata: Optional[Dict[str, str]] = None) -> None:
    with open(path, "wb") as f:
        f.write(serialize(tensors, metadata))


def deserialize(data: bytes) -> Tuple[Dict[str, torch.Tensor], Dict[str, str]]:
    if len(data) < 8:
        raise ValueError("file too short")
    (n,) = struct.unpack("<Q", data[:8])
    if 8 + n > len(data):
        raise ValueError("header length past end of file")
    header = json.loads(data[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {}) or {}
    body = data[8 + n:]
    out: Dict[str, torch.Tensor] = {}
    spans = []
    for name, info in header.items():
        dt = _STR_TO_DT[info["dtype"]]
        shape = [int(s) for s in info["shape"]]
        b, e = info["data_offsets"]
        numel = 1
        for s in shape:
            numel *= s
        itemsize = torch.empty((), dtype=dt).element_size()
        if e - b != numel * itemsize or e > len(body) or b < 0:
            raise ValueError(f"{name}: bad data_offsets {b},{e}")
        spans.append((b, e))
        raw = bytearray(body[b:e])
        if dt == torch.bfloat16:
            t = torch.frombuffer(raw, dtype=torch.int16).view(torch.bfloat16) if numel else torch.empty(0, dtype=dt)
        else:
            t = torch.frombuffer(raw, dtype=dt) if numel else torch.empty(0, dtype=dt)
        out[name] = t.reshape(shape).clone()
    spans.sort()
    pos = 0
    for b, e in spans:
        if b != pos:
            raise ValueError("data block is not contiguous")
        pos = e
    if pos != len(body):
        raise ValueError("trailing bytes after the data block")
    return out, meta


def load_file(path: str) -> Dict[str, torch.Tensor]:
    with open(path, "rb") as f:
        return deserialize(f.read())[0]


def load_file_with_metadata(path: str) -> Tuple[Dict[str, torch.Tensor], Dict[str, str]]:
    with open(path, "rb") as f:
        return deserialize(f.read())
