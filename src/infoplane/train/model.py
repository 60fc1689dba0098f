"""A compact GPT (nanoGPT-style) that returns the residual stream after every block.

Architecture (one readable file, plain torch):

    idx [B, T] -> GPTEmbedding (token + learned position embedding, or token only with RoPE)
               -> Block_0 ... Block_{L-1}      (pre-norm: x += Attn(RMSNorm(x)); x += MLP(RMSNorm(x)))
               -> final RMSNorm -> LM head (tied to the token embedding by default) -> logits [B, T, V]

``GPT.forward(idx, targets)`` returns :class:`GPTOutput` with the logits, the mean next-token cross-entropy
(nats/token) and ``hidden_states``: the residual stream after each block, *before* the final norm, which is
where matrix-based entropy is measured (mod_gpt ``src/mbe.py``: "residual stream after each block, before the
final RMSNorm"). They are the tensors of the forward pass itself (no extra pass), so a penalty on them
back-propagates into the model.

Sized for CPUs: 4 layers, d_model 128, 4 heads, context 128 and a 1-4k vocabulary train at a few thousand
tokens/s on two cores (the vocabulary head dominates the cost).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from infoplane.io import strict_from_dict

__all__ = ["GPTConfig", "GPT", "GPTOutput", "GPTEmbedding", "Block", "NativeCausalLM", "NativeOutput"]


@dataclass
class GPTConfig:
    """Model hyper-parameters.

    vocab_size: number of token ids V. n_layer: blocks L. n_head: attention heads (must divide d_model).
    d_model: residual width D. block_size: maximum context T. mlp_ratio: MLP hidden width / D.
    pos_encoding: "learned" (absolute position table) or "rope" (rotary, no table).
    tie_weights: LM head shares the token-embedding matrix. dropout: on attention/MLP outputs (0 = off).
    init_std: std of the normal init (residual projections scaled by 1/sqrt(2L), GPT-2 convention).
    seed: seed of the parameter initialisation (independent of the global torch RNG).
    """

    vocab_size: int = 1024
    n_layer: int = 4
    n_head: int = 4
    d_model: int = 128
    block_size: int = 128
    mlp_ratio: float = 4.0
    pos_encoding: str = "learned"
    tie_weights: bool = True
    dropout: float = 0.0
    bias: bool = False
    norm_eps: float = 1e-6
    init_std: float = 0.02
    rope_theta: float = 10000.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("vocab_size", "n_layer", "n_head", "d_model", "block_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"GPTConfig.{name} must be a positive int, got {v!r}")
        if self.d_model % self.n_head:
            raise ValueError(f"GPTConfig.d_model ({self.d_model}) must be divisible by "
                             f"n_head ({self.n_head})")
        if self.pos_encoding not in ("learned", "rope"):
            raise ValueError(f"GPTConfig.pos_encoding must be 'learned' or 'rope', got {self.pos_encoding!r}")
        if self.pos_encoding == "rope" and (self.d_model // self.n_head) % 2:
            raise ValueError("GPTConfig: rope needs an even head dimension d_model / n_head")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"GPTConfig.dropout must be in [0, 1), got {self.dropout}")
        if self.mlp_ratio <= 0:
            raise ValueError(f"GPTConfig.mlp_ratio must be > 0, got {self.mlp_ratio}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GPTConfig:
        """Build from a dict; unknown keys raise ValueError (so typos do not pass silently)."""
        return strict_from_dict(cls, d)

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head


@dataclass
class GPTOutput:
    """logits [B, T, V]; loss: 0-d mean CE in nats/token (None without targets);
    hidden_states: L tensors [B, T, D], residual stream after each block (before the final norm);
    embeddings: [B, T, D], the input of block 0."""

    logits: torch.Tensor
    loss: torch.Tensor | None
    hidden_states: list[torch.Tensor]
    embeddings: torch.Tensor


def _rope_cache(T: int, head_dim: int, theta: float, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    # RoPE (Su et al. 2021, eq. 34): angle_{t,i} = t * theta^(-2i/d)
    inv = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim))
    ang = torch.outer(torch.arange(T, device=device, dtype=torch.float32), inv)  # [T, hd/2]
    return ang.cos().to(dtype), ang.sin().to(dtype)


def _apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [B, H, T, hd]; rotate (even, odd) pairs (Su et al. 2021, eq. 34)."""
    x1, x2 = x[..., 0::2], x[..., 1::2]
    out = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
    return out.flatten(-2)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.n_head, self.head_dim = cfg.n_head, cfg.head_dim
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=cfg.bias)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model, bias=cfg.bias)
        self.dropout = cfg.dropout
        self.rope = cfg.pos_encoding == "rope"
        self.rope_theta = cfg.rope_theta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        q, k, v = self.qkv(x).split(D, dim=2)
        q, k, v = (t.view(B, T, self.n_head, self.head_dim).transpose(1, 2) for t in (q, k, v))  # [B,H,T,hd]
        if self.rope:
            cos, sin = _rope_cache(T, self.head_dim, self.rope_theta, x.device, x.dtype)
            q, k = _apply_rope(q, cos, sin), _apply_rope(k, cos, sin)
        # softmax(q k^T / sqrt(hd) + causal mask) v  (Vaswani et al. 2017, eq. 1)
        y = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0
        )
        y = y.transpose(1, 2).reshape(B, T, D)
        return F.dropout(self.proj(y), self.dropout, self.training)


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        hidden = int(round(cfg.mlp_ratio * cfg.d_model))
        self.fc = nn.Linear(cfg.d_model, hidden, bias=cfg.bias)
        self.proj = nn.Linear(hidden, cfg.d_model, bias=cfg.bias)
        self.dropout = cfg.dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(self.proj(F.gelu(self.fc(x))), self.dropout, self.training)


class Block(nn.Module):
    """Pre-norm transformer block; its output is the residual stream after the block."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.norm1 = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.attn = CausalSelfAttention(cfg)
        self.norm2 = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class GPTEmbedding(nn.Module):
    """Token embedding (+ learned absolute position embedding). Output [B, T, D] = input of block 0,
    a module of its own so probes can hook "the embedding output" (HF ``hidden_states[0]``)."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.tok = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos = nn.Embedding(cfg.block_size, cfg.d_model) if cfg.pos_encoding == "learned" else None
        self.dropout = cfg.dropout

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.tok(idx)
        if self.pos is not None:
            x = x + self.pos(torch.arange(idx.shape[1], device=idx.device))
        return F.dropout(x, self.dropout, self.training)


class GPT(nn.Module):
    """Decoder-only transformer; see the module docstring. ``GPT(config)`` initialises deterministically
    from ``config.seed`` (the global RNG is neither used nor advanced)."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise ValueError(f"GPT expects a GPTConfig, got {type(config).__name__}")
        self.config = config
        with torch.random.fork_rng(devices=[]):  # torch's default module init draws from the global RNG
            self.embed = GPTEmbedding(config)
            self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
            self.norm_f = nn.RMSNorm(config.d_model, eps=config.norm_eps)
            self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        if config.tie_weights:
            self.lm_head.weight = self.embed.tok.weight
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """N(0, init_std) weights, zero biases, unit norms; residual projections N(0, init_std/sqrt(2L))
        (GPT-2 paper §2.3 scaling). Uses a private generator seeded with ``config.seed``."""
        g = torch.Generator().manual_seed(int(self.config.seed))
        std = self.config.init_std
        for name, p in self.named_parameters():  # tied head appears once (named_parameters dedups)
            if name.endswith("proj.weight"):
                p.copy_(torch.randn(p.shape, generator=g) * (std / math.sqrt(2 * self.config.n_layer)))
            elif p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=g) * std)
            elif "norm" in name:
                p.fill_(1.0)
            else:
                p.zero_()

    def num_parameters(self, exclude_embeddings: bool = False) -> int:
        n = sum(p.numel() for p in self.parameters())
        if exclude_embeddings:
            n -= self.embed.tok.weight.numel()
            if self.embed.pos is not None:
                n -= self.embed.pos.weight.numel()
        return n

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None) -> GPTOutput:
        """idx [B, T] int64 token ids (T <= block_size); targets [B, T] int64 next-token ids
        (-100 = ignore). Returns :class:`GPTOutput`; loss = mean CE over non-ignored targets (nats)."""
        if idx.dim() != 2:
            raise ValueError(f"idx must be [B, T], got shape {tuple(idx.shape)}")
        if idx.shape[1] > self.config.block_size:
            raise ValueError(f"sequence length {idx.shape[1]} exceeds block_size {self.config.block_size}")
        x = self.embed(idx)
        emb = x
        hidden: list[torch.Tensor] = []
        for block in self.blocks:
            x = block(x)
            hidden.append(x)
        logits = self.lm_head(self.norm_f(x))
        loss = None
        if targets is not None:
            if targets.shape != idx.shape:
                raise ValueError(f"targets must have the shape of idx {tuple(idx.shape)}, "
                                 f"got {tuple(targets.shape)}")
            # next-token cross-entropy, mean over tokens (nats/token)
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1),
                                   ignore_index=-100)
        return GPTOutput(logits=logits, loss=loss, hidden_states=hidden, embeddings=emb)

    def hidden_modules(self) -> list[nn.Module]:
        """[embedding module, block_0, ..., block_{L-1}]: hooking their outputs gives HF-style
        ``hidden_states`` (embedding output + each block output; L+1 tensors)."""
        return [self.embed, *self.blocks]

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Sample ``max_new_tokens`` continuations of idx [B, T] (temperature 0 = greedy)."""
        for _ in range(max_new_tokens):
            logits = self(idx[:, -self.config.block_size:]).logits[:, -1, :]
            if temperature <= 0:
                nxt = logits.argmax(-1, keepdim=True)
            else:
                probs = F.softmax(logits / temperature, dim=-1)
                nxt = torch.multinomial(probs, 1, generator=generator)
            idx = torch.cat([idx, nxt], dim=1)
        return idx


@dataclass
class NativeOutput:
    """logits [B, T, V]; loss (mean shifted CE over non-masked labels, or None);
    hidden_states: tuple of L+1 [B, T, D] (None unless requested)."""

    logits: torch.Tensor
    loss: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)


class NativeCausalLM(nn.Module):
    """HF-style view of a native :class:`GPT`, so probes read native checkpoints like an HF causal LM.

    An exact export to a ``transformers`` architecture is not possible: learned absolute positions (or
    RoPE), a non-gated GELU MLP and RMSNorm with a weight match neither ``LlamaForCausalLM`` nor
    ``GPT2LMHeadModel``::

        lm, tok = load_causal_lm("runs/x/checkpoints/step_00001000")   # infoplane.train.checkpoint
        out = lm(input_ids, attention_mask=mask, output_hidden_states=True)
        out.logits            # [B, T, V]
        out.hidden_states     # tuple of L+1 tensors [B, T, D]: embedding output, then each block output
        lm.hidden_modules()   # [embedding module, block_0, ..., block_{L-1}]: hook these for the same tensors

    Difference from HF: the last hidden state is the raw residual stream of the last block (before the final
    norm). ``attention_mask`` must be right-padded (ones then zeros per row): attention is causal, so real
    tokens never see the padding that follows them.
    """

    def __init__(self, model: GPT) -> None:
        super().__init__()
        if not isinstance(model, GPT):
            raise ValueError(f"NativeCausalLM wraps an infoplane GPT, got {type(model).__name__}")
        self.model = model
        c = model.config
        self.config = SimpleNamespace(
            model_type="infoplane-gpt", vocab_size=c.vocab_size, hidden_size=c.d_model,
            num_hidden_layers=c.n_layer, num_attention_heads=c.n_head, max_position_embeddings=c.block_size,
            native=c,
        )

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def hidden_modules(self) -> list[nn.Module]:
        """[embedding module, block_0, ..., block_{L-1}]; their forward outputs are ``hidden_states``."""
        return self.model.hidden_modules()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, output_hidden_states: bool = False,
                return_dict: bool = True, **_: Any) -> NativeOutput:
        """input_ids [B, T]; attention_mask [B, T] right-padded 0/1 (optional); labels [B, T] (HF
        convention: shifted inside, -100 ignored; masked positions ignored too)."""
        if attention_mask is not None:
            m = attention_mask.to(torch.int64)
            if m.shape != input_ids.shape:
                raise ValueError(f"attention_mask shape {tuple(m.shape)} != input_ids "
                                 f"{tuple(input_ids.shape)}")
            # right padding: the mask never rises again after a zero (non-increasing along T)
            if bool((m[:, 1:] > m[:, :-1]).any()):
                raise ValueError("attention_mask must be right-padded (ones then zeros in each row)")
        out = self.model(input_ids)
        loss = None
        if labels is not None:
            lab = labels.clone()
            if attention_mask is not None:
                lab[attention_mask == 0] = -100
            # HF causal-LM convention: position t predicts labels[t+1]
            loss = nn.functional.cross_entropy(out.logits[:, :-1].reshape(-1, out.logits.size(-1)).float(),
                                               lab[:, 1:].reshape(-1), ignore_index=-100)
        hidden = (out.embeddings, *out.hidden_states) if output_hidden_states else None
        return NativeOutput(logits=out.logits, loss=loss, hidden_states=hidden)
