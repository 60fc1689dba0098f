"""lm-evaluation-harness adapter for native infoplane checkpoints (the ``downstream`` extra, lm-eval 0.4).

:class:`NativeLM` is an ``lm_eval.api.model.TemplateLM`` (a subclass of ``lm_eval.api.model.LM``) that scores
an infoplane :class:`~infoplane.train.model.GPT` (or its :class:`~infoplane.train.model.NativeCausalLM` view)
with any tokenizer of :mod:`infoplane.data.tokenizer` or the arithmetic
:class:`~infoplane.data.tasks.CharTokenizer`:

* ``loglikelihood``: sum of log p(continuation | context) in nats and whether greedy decoding reproduces it
  (lm-eval's contract, ``lm_eval/api/model.py``);
* ``loglikelihood_rolling``: log-likelihood of a whole document in disjoint windows of the model's context
  length, each window conditioned on as much preceding text as fits
  (``lm_eval.utils.get_rolling_token_windows`` with ``context_len=1``, as lm-eval's ``HFLM`` does);
* ``generate_until``: greedy decoding until a stop string, the end-of-text id or ``max_gen_toks``.

Hugging Face models need no adapter: use ``lm_eval.models.huggingface.HFLM(pretrained=model_object,
tokenizer=hf_tokenizer)`` (see :func:`infoplane.downstream.evaluate.hf_lm`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from lm_eval.api.model import TemplateLM
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

from infoplane.data.tasks import CharTokenizer
from infoplane.data.tokenizer import eos_id
from infoplane.train.model import GPT, NativeCausalLM

__all__ = ["NativeLM", "TokenizerView"]


class TokenizerView:
    """One interface over the package's tokenizers: ``encode(text) -> ids``, ``decode(ids) -> text``, the
    end-of-text id ``eot`` and the id ``prefix`` that conditions the first token.

    The arithmetic :class:`CharTokenizer` trains on ``<bos> ... <eos>`` sequences, so every encoded context
    starts with ``<bos>`` (``add_bos``); the LM tokenizers separate documents with their end-of-text id and
    lm-eval's convention (that id as the prefix of an empty context) applies.
    """

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.is_char = isinstance(tokenizer, CharTokenizer)
        if self.is_char:
            self.eot, self.prefix, self.add_bos = tokenizer.eos_id, tokenizer.bos_id, True
        elif hasattr(tokenizer, "encode") and hasattr(tokenizer, "decode"):
            self.eot = eos_id(tokenizer)
            self.prefix, self.add_bos = self.eot, False
        else:
            raise ValueError(f"expected an infoplane tokenizer (tokenizers.Tokenizer, ByteTokenizer or the "
                             f"arithmetic CharTokenizer), got {type(tokenizer).__name__}")

    def encode(self, text: str) -> list[int]:
        if self.is_char:
            return self.tokenizer.encode(text, add_special=False)
        return list(self.tokenizer.encode(text).ids)

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode([int(i) for i in ids])


def _as_gpt(model: Any) -> GPT:
    if isinstance(model, NativeCausalLM):
        return model.model
    if isinstance(model, GPT):
        return model
    raise ValueError(f"NativeLM scores an infoplane GPT or NativeCausalLM, got {type(model).__name__}; "
                     "wrap Hugging Face models in lm_eval's HFLM(pretrained=model) instead")


class NativeLM(TemplateLM):
    """lm-eval model over a native infoplane GPT.

    Args:
        model: :class:`GPT` or :class:`NativeCausalLM` (put in eval mode; never trained here).
        tokenizer: the tokenizer the model was trained with (see :class:`TokenizerView`).
        batch_size: sequences per forward pass.
        max_length: context length in tokens (default: the model's ``block_size``).
        device: where to run (default: the model's device).
    """

    backend = "causal"

    def __init__(self, model: Any, tokenizer: Any, *, batch_size: int = 16, max_length: int | None = None,
                 device: str | torch.device | None = None) -> None:
        super().__init__()
        self.gpt = _as_gpt(model).eval()
        if device is not None:
            self.gpt.to(device)
        self._device = next(self.gpt.parameters()).device
        self.view = TokenizerView(tokenizer)
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        self.batch_size = batch_size
        block = int(self.gpt.config.block_size)
        self.max_length = block if max_length is None else int(max_length)
        if not 2 <= self.max_length <= block:
            raise ValueError(f"max_length must be in [2, block_size={block}], got {max_length!r}")
        vocab = int(self.gpt.config.vocab_size)
        if not 0 <= self.view.eot < vocab:
            raise ValueError(f"the tokenizer's end-of-text id {self.view.eot} is outside the model's "
                             f"vocabulary [0, {vocab})")

    # ------------------------------------------------------------------ TemplateLM hooks
    @property
    def eot_token_id(self) -> int:
        return self.view.eot

    @property
    def prefix_token_id(self) -> int:
        return self.view.prefix

    @property
    def device(self) -> torch.device:
        return self._device

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **_: Any) -> list[int]:
        ids = self.view.encode(string)
        if self.view.add_bos and add_special_tokens is not False:
            return [self.view.prefix, *ids]
        return ids

    def tok_decode(self, tokens: Sequence[int], **_: Any) -> str:
        return self.view.decode(tokens)

    @torch.no_grad()
    def _logprobs(self, seqs: list[list[int]]) -> list[torch.Tensor]:
        """log-softmax ``[T_i, V]`` (float64) of each sequence; right padding (causal: never seen)."""
        out: list[torch.Tensor] = []
        for i in range(0, len(seqs), self.batch_size):
            chunk = seqs[i:i + self.batch_size]
            t = max(len(s) for s in chunk)
            ids = torch.full((len(chunk), t), self.view.eot, dtype=torch.long)
            for j, s in enumerate(chunk):
                ids[j, :len(s)] = torch.tensor(s, dtype=torch.long)
            logits = self.gpt(ids.to(self._device)).logits.double()
            lp = torch.log_softmax(logits, dim=-1).cpu()
            out.extend(lp[j, :len(s)] for j, s in enumerate(chunk))
        return out

    def _loglikelihood_tokens(self, requests: list[tuple[Any, list[int], list[int]]],
                              disable_tqdm: bool = False, **_: Any) -> list[tuple[float, bool]]:
        """``(key, context ids, continuation ids)`` -> (sum log p(continuation), greedy) in nats."""
        seqs, conts = [], []
        for _, ctx, cont in requests:
            if not cont:
                raise ValueError("empty continuation: nothing to score")
            whole = (list(ctx) + list(cont))[-(self.max_length + 1):]
            seqs.append(whole[:-1])  # inputs: position t predicts whole[t + 1]
            conts.append(list(cont)[-min(len(cont), len(whole) - 1):])  # truncated from the left if too long
        results = []
        for (key, _, _), lp, cont in zip(requests, self._logprobs(seqs), conts):
            tail = lp[-len(cont):]  # the last len(cont) predictions are the continuation's
            target = torch.tensor(cont, dtype=torch.long)
            logp = float(tail.gather(1, target[:, None]).sum())
            greedy = bool((tail.argmax(-1) == target).all())
            results.append((logp, greedy))
            if key is not None:
                self.cache_hook.add_partial("loglikelihood", key, (logp, greedy))
        return results

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
        """Document log-likelihood (nats), every token predicted once (lm-eval's rolling windows)."""
        out = []
        for req in requests:
            (text,) = req.args
            tokens = self.view.encode(text)
            windows = [make_disjoint_window(w) for w in get_rolling_token_windows(
                token_list=tokens, prefix_token=self.prefix_token_id, max_seq_len=self.max_length,
                context_len=1)]
            scored = self._loglikelihood_tokens([(None, ctx, cont) for ctx, cont in windows])
            total = float(sum(s for s, _ in scored))
            out.append(total)
            self.cache_hook.add_partial("loglikelihood_rolling", (text,), total)
        return out

    @torch.no_grad()
    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        """Greedy continuation of each context until a stop string, end-of-text or ``max_gen_toks``."""
        out = []
        for req in requests:
            context, kwargs = req.args
            kwargs = dict(kwargs or {})
            until = kwargs.pop("until", None) or []
            until = [until] if isinstance(until, str) else list(until)
            max_new = int(kwargs.pop("max_gen_toks", 64))
            ids = self.tok_encode(context) if context else [self.prefix_token_id]
            new: list[int] = []
            text = ""
            for _ in range(max_new):
                window = (ids + new)[-self.max_length:]
                logits = self.gpt(torch.tensor([window], dtype=torch.long, device=self._device)).logits
                nxt = int(logits[0, -1].argmax())
                if nxt == self.eot_token_id:
                    break
                new.append(nxt)
                text = self.view.decode(new)
                if any(s and s in text for s in until):
                    break
            for s in until:
                if s:
                    text = text.split(s)[0]
            out.append(text)
            self.cache_hook.add_partial("generate_until", (context, req.args[1]), text)
        return out

