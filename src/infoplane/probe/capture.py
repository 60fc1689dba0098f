"""Forward hooks that stream every hidden state of a causal LM into a sink, then drop it.

The hidden states are exactly those of Hugging Face ``output_hidden_states=True`` (``L + 1`` tensors):

* index 0: the input of the first decoder layer (embedding output, after any embedding scaling);
* index ``l`` (1..L-1): the output of decoder layer ``l - 1``;
* index ``L``: the final norm applied to the last layer's output (HF replaces ``hidden_states[-1]`` by
  ``last_hidden_state``), or the last layer's output for models without a final norm.

Each hook selects the valid positions of the batch (``[B, T, d] -> [N, d]``) and hands them to a sink, e.g.
``acc.update(z, prepared_labels, layer=l)``; nothing is kept, so memory stays bounded by one activation.
After the last site fires the forward is stopped (:class:`StopForward`), so the LM head (logits over the
vocabulary) is never computed.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

__all__ = ["HiddenSite", "find_hidden_sites", "HiddenStateCapture", "StopForward", "forward_batch",
           "hidden_dims"]

_LAYER_LIST_NAMES = ("layers", "h", "blocks", "layer", "decoder_layers")
_FINAL_NORM_NAMES = ("norm", "final_layernorm", "final_layer_norm", "ln_f", "final_norm", "norm_f")


class StopForward(Exception):
    """Raised by the last hook to skip the rest of the forward pass (the LM head)."""


@dataclass(frozen=True)
class HiddenSite:
    """Where hidden state ``index`` comes from: the input (``"pre"``) or output (``"post"``) of ``module``."""

    module: nn.Module
    mode: str  # "pre" | "post"
    name: str = ""


def _n_layers(model: nn.Module) -> int | None:
    cfg = getattr(model, "config", None)
    for key in ("num_hidden_layers", "n_layer", "num_layers", "n_layers"):
        v = getattr(cfg, key, None)
        if isinstance(v, int):
            return v
    return None


def find_hidden_sites(model: nn.Module) -> list[HiddenSite]:
    """The ``L + 1`` hook sites reproducing HF ``output_hidden_states`` for ``model``.

    Models exposing ``hidden_modules()`` (infoplane native models) are used as they declare: a list of modules
    (outputs) or of ``(module, "pre"|"post")`` pairs. Otherwise the decoder-layer ``ModuleList`` (length
    ``config.num_hidden_layers``) and the final norm are found on the base model.
    """
    if hasattr(model, "hidden_modules"):
        sites = []
        for i, item in enumerate(model.hidden_modules()):
            if isinstance(item, tuple):
                module, mode = item
            else:
                module, mode = item, "post"
            if mode not in ("pre", "post"):
                raise ValueError(f"hidden_modules() item {i}: mode must be 'pre' or 'post', got {mode!r}")
            sites.append(HiddenSite(module, mode, f"hidden_modules[{i}]"))
        if not sites:
            raise ValueError(f"{type(model).__name__}.hidden_modules() returned no modules")
        return sites
    base = getattr(model, "base_model", None) or model
    n = _n_layers(model)
    layers: nn.ModuleList | None = None
    layers_name = ""
    for name, mod in base.named_modules():
        if isinstance(mod, nn.ModuleList) and len(mod) > 0 and (n is None or len(mod) == n):
            short = name.rsplit(".", 1)[-1]
            if short in _LAYER_LIST_NAMES and (layers is None or name.count(".") < layers_name.count(".")):
                layers, layers_name = mod, name
    if layers is None:
        raise ValueError(f"cannot find the decoder layers of {type(model).__name__}: expected an "
                         f"nn.ModuleList named one of {_LAYER_LIST_NAMES} with config.num_hidden_layers={n} "
                         "entries, "
                         "or a hidden_modules() method")
    norm = None
    norm_name = ""
    # HF replaces hidden_states[-1] by the final-norm output unless config.tie_last_hidden_states is False
    tie_last = getattr(getattr(model, "config", None), "tie_last_hidden_states", True)
    for attr in _FINAL_NORM_NAMES if tie_last is not False else ():
        mod = getattr(base, attr, None)
        if isinstance(mod, nn.Module):
            norm, norm_name = mod, attr
            break
    sites = [HiddenSite(layers[0], "pre", f"{layers_name}.0:input")]
    sites += [HiddenSite(layers[i], "post", f"{layers_name}.{i}") for i in range(len(layers) - 1)]
    if norm is not None:
        sites.append(HiddenSite(norm, "post", norm_name))
    else:
        sites.append(HiddenSite(layers[-1], "post", f"{layers_name}.{len(layers) - 1}"))
    return sites


def _first_tensor(x: Any) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, (tuple, list)) and x and isinstance(x[0], torch.Tensor):
        return x[0]
    if hasattr(x, "last_hidden_state"):
        return x.last_hidden_state
    raise ValueError(f"hook site produced {type(x).__name__}, expected a hidden-state tensor [B, T, d]")


class HiddenStateCapture:
    """Context manager installing one hook per hidden state; each call ``sink(layer, z)`` gets ``z: [N, d]``.

    ``set_positions(mask)`` selects the positions (``mask: [B, T]`` bool) of the next forward pass. With
    ``stop_after_last=True`` the last hook raises :class:`StopForward` (catch it, or use
    :func:`forward_batch`).
    """

    def __init__(self, model: nn.Module, sink: Callable[[int, torch.Tensor], None],
                 sites: Sequence[HiddenSite] | None = None, stop_after_last: bool = True) -> None:
        self.model = model
        self.sink = sink
        self.sites = list(sites) if sites is not None else find_hidden_sites(model)
        self.stop_after_last = stop_after_last
        self._handles: list[Any] = []
        self._flat_index: torch.Tensor | None = None
        self.fired: list[int] = []

    @property
    def n_hidden(self) -> int:
        return len(self.sites)

    def set_positions(self, mask: torch.Tensor | None) -> None:
        """Positions to keep in the next forward: bool ``[B, T]`` (None keeps all)."""
        self._flat_index = None if mask is None else torch.nonzero(mask.flatten(), as_tuple=False).squeeze(1)
        self.fired = []

    def _emit(self, layer: int, hidden: torch.Tensor) -> None:
        if hidden.ndim != 3:
            raise ValueError(f"hidden state {layer} has shape {tuple(hidden.shape)}, expected [B, T, d]")
        flat = hidden.detach().reshape(-1, hidden.shape[-1])
        if self._flat_index is not None:
            idx = self._flat_index.to(flat.device)
            flat = flat.index_select(0, idx)
        self.fired.append(layer)
        self.sink(layer, flat)
        if self.stop_after_last and layer == len(self.sites) - 1:
            raise StopForward

    def __enter__(self) -> HiddenStateCapture:
        for layer, site in enumerate(self.sites):
            if site.mode == "pre":
                def pre_hook(module, args, kwargs, _l=layer):
                    h = args[0] if args else kwargs.get("hidden_states", kwargs.get("x"))
                    self._emit(_l, _first_tensor(h))

                self._handles.append(site.module.register_forward_pre_hook(pre_hook, with_kwargs=True))
            else:
                def post_hook(module, args, output, _l=layer):
                    self._emit(_l, _first_tensor(output))

                self._handles.append(site.module.register_forward_hook(post_hook))
        return self

    def __exit__(self, *exc: Any) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []


def _accepts(fn: Callable, name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind == p.VAR_KEYWORD for p in params.values())


def forward_batch(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                  position_ids: torch.Tensor | None = None) -> None:
    """One ``torch.no_grad`` forward of ``model`` for its hooks' sake; :class:`StopForward` ends it quietly.

    ``attention_mask``/``position_ids`` are passed only if ``model.forward`` accepts them (infoplane GPTs take
    ids only: they must be right-padded, which a causal model never sees). Without explicit ``position_ids``
    and with padding, positions are ``cumsum(mask) - 1`` so left padding gives the same states as right.
    """
    kwargs: dict[str, Any] = {}
    fwd = model.forward
    if attention_mask is not None and _accepts(fwd, "attention_mask"):
        kwargs["attention_mask"] = attention_mask
        if position_ids is None and _accepts(fwd, "position_ids"):
            position_ids = (attention_mask.long().cumsum(-1) - 1).clamp_min(0)
    if position_ids is not None and _accepts(fwd, "position_ids"):
        kwargs["position_ids"] = position_ids
    if _accepts(fwd, "use_cache"):
        kwargs["use_cache"] = False
    with torch.no_grad():  # not inference_mode: accumulator state created here must stay mutable later
        try:
            if _accepts(fwd, "input_ids"):
                model(input_ids=input_ids, **kwargs)
            else:
                model(input_ids, **kwargs)
        except StopForward:
            pass


def hidden_dims(model: nn.Module, sites: Sequence[HiddenSite] | None = None,
                device: str | torch.device = "cpu") -> list[int]:
    """Width ``d`` of every hidden state, found by a one-token dry run (also checks that every site fires)."""
    dims: dict[int, int] = {}

    def sink(layer: int, z: torch.Tensor) -> None:
        dims[layer] = int(z.shape[-1])

    cap = HiddenStateCapture(model, sink, sites)
    with cap:
        cap.set_positions(None)
        ids = torch.zeros((1, 1), dtype=torch.long, device=device)
        forward_batch(model, ids, torch.ones_like(ids))
    missing = [i for i in range(cap.n_hidden) if i not in dims]
    if missing:
        raise ValueError(f"hidden states {missing} of {type(model).__name__} were never produced by a "
                         "forward pass: the hook sites do not match the model")
    return [dims[i] for i in range(cap.n_hidden)]
