"""Checkpoint integrity for sweeps: a content hash of the weights and checks that catch corrupt files.

* :func:`weights_sha256`: SHA-256 of a checkpoint's weight files (the value ``analyze`` records as
  ``weights_sha256``), so identical weights saved under different step names are recognised;
* :func:`check_checkpoint`: ``None`` when the checkpoint looks intact, else why not. It verifies the
  per-file SHA-256 checksums recorded at save time when the checkpoint has them (native checkpoints,
  :func:`infoplane.train.checkpoint.verify_checkpoint`), and otherwise the structure of every weight file:
  a safetensors file must hold exactly the bytes its header declares (a truncated or padded file fails),
  a GGUF file must start with its magic. Flipped bytes inside tensor data are only detectable with
  recorded checksums.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from infoplane.probe.models import _WEIGHT_SUFFIXES, _weights_sha256, is_native_checkpoint

__all__ = ["weight_files", "weights_sha256", "check_checkpoint", "check_safetensors"]

_MAX_HEADER = 100 << 20  # safetensors caps its JSON header at 100 MB


def weight_files(path: str | Path) -> list[Path]:
    """The weight files of a checkpoint: the ``.gguf`` file itself, ``model.safetensors`` of a native
    checkpoint, or every weight file (safetensors, bin, pt) of an HF directory."""
    p = Path(path)
    if p.is_file():
        return [p]
    if is_native_checkpoint(p):
        return [p / "model.safetensors"]
    return sorted(f for f in p.iterdir() if f.suffix in _WEIGHT_SUFFIXES and f.is_file())


def weights_sha256(path: str | Path) -> str:
    """SHA-256 of the checkpoint's weight files (as ``LoadedModel.weights_sha256``); ``ValueError`` when it
    has none."""
    files = weight_files(path)
    if not files:
        raise ValueError(f"checkpoint {str(path)!r} has no weight files (expected one of {_WEIGHT_SUFFIXES})")
    return _weights_sha256(files)


def check_safetensors(f: Path) -> str | None:
    """Why ``f`` is not a complete safetensors file (8-byte little-endian header length, JSON header,
    tensor data whose extent the header declares), or None."""
    size = f.stat().st_size
    if size < 8:
        return f"{str(f)!r} is truncated: {size} bytes, shorter than the 8-byte safetensors header length"
    with open(f, "rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        if n > _MAX_HEADER or 8 + n > size:
            return (f"{str(f)!r} is truncated or not safetensors: header of {n} bytes declared, "
                    f"file has {size}")
        try:
            header = json.loads(fh.read(n).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return f"{str(f)!r} has a corrupt safetensors header ({exc})"
    if not isinstance(header, dict):
        return f"{str(f)!r} has a corrupt safetensors header (not a JSON object)"
    try:
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    except (KeyError, TypeError, ValueError, IndexError):
        return f"{str(f)!r} has a corrupt safetensors header (bad data_offsets)"
    want = 8 + n + end
    if size != want:
        what = "truncated" if size < want else "longer than declared"
        return f"{str(f)!r} is {what}: {size} bytes, the header declares {want}"
    return None


def check_checkpoint(path: str | Path) -> str | None:
    """None when the checkpoint at ``path`` is intact as far as can be checked, else the reason (naming the
    file). Recorded checksums are verified when present (native checkpoints)."""
    p = Path(path)
    if p.is_dir() and is_native_checkpoint(p):
        try:
            from infoplane.train.checkpoint import verify_checkpoint
        except ImportError:  # an infoplane without checksum support: structure checks only
            verify_checkpoint = None
        if verify_checkpoint is not None:
            try:
                verify_checkpoint(p)
            except (ValueError, FileNotFoundError) as exc:
                return str(exc)
    files = weight_files(p)
    if not files:
        return f"checkpoint {str(p)!r} has no weight files (expected one of {_WEIGHT_SUFFIXES})"
    for f in files:
        if f.suffix == ".safetensors":
            why = check_safetensors(f)
            if why:
                return why
        elif f.suffix == ".gguf":
            with open(f, "rb") as fh:
                if fh.read(4) != b"GGUF":
                    return f"{str(f)!r} is not a GGUF file (bad magic) or is truncated"
        elif f.stat().st_size == 0:
            return f"{str(f)!r} is empty"
    return None
