"""A seeded k-th order Markov chain over a small vocabulary: a text source with a known answer.

The next token depends on the last ``order`` tokens only, so a perfect next-token model needs exactly the
last ``k = order`` tokens (Conklin et al. 2026, sec. 3, frame the plane's axes by this kind of n-gram
structure): for n >= k, ``I(Y_1; X_n) = I(Y_1; X_k)`` and ``H(Y_1 | X_n) = H(Y_1 | X_k)`` (the entropy rate).
Each context's next-token distribution is a Dirichlet(``concentration``) draw; a small concentration gives
peaked, learnable transitions. Every quantity of the source is exact (stationary distribution by power
iteration on the ``V^k`` contexts), so trained models can be placed relative to it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from infoplane.data.lm_data import TokenSplits

__all__ = ["MarkovSource"]


@dataclass
class MarkovSource:
    """k-th order Markov chain: ``P(x_t | x_{t-k..t-1}) = transitions[context]``.

    Args:
        vocab_size: V >= 2 tokens (ids 0..V-1).
        order: k >= 1, the context length the next token depends on.
        concentration: Dirichlet parameter of every context's next-token distribution (> 0; smaller =
            more predictable).
        seed: fixes the transition table.

    Attributes:
        transitions: ``[V^k, V]`` float64, row ``c`` the next-token distribution of context ``c`` (context
            ids in base V, oldest token most significant).
    """

    vocab_size: int = 8
    order: int = 2
    concentration: float = 0.3
    seed: int = 0
    transitions: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        for name, value, low in (("vocab_size", self.vocab_size, 2), ("order", self.order, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"MarkovSource.{name} must be an integer >= {low}, got {value!r}")
        if self.vocab_size ** self.order > 1 << 20:
            raise ValueError(f"MarkovSource: vocab_size ** order = {self.vocab_size ** self.order} contexts; "
                             "expected at most 2**20 (lower vocab_size or order)")
        c = self.concentration
        if isinstance(c, bool) or not isinstance(c, (int, float)) or not math.isfinite(c) or c <= 0:
            raise ValueError(f"MarkovSource.concentration must be a finite number > 0, got {c!r}")
        rng = np.random.default_rng(self.seed)
        self.transitions = rng.dirichlet(np.full(self.vocab_size, float(c)), size=self.n_contexts)

    @property
    def n_contexts(self) -> int:
        return self.vocab_size ** self.order

    def _next_context(self) -> np.ndarray:
        """``[V^k, V]`` int: the context after emitting token v from context c (drop the oldest token)."""
        V, k = self.vocab_size, self.order
        ctx = np.arange(V ** k)[:, None]
        return (ctx % V ** (k - 1)) * V + np.arange(V)[None, :]

    def stationary(self, iters: int = 10_000, tol: float = 1e-14) -> np.ndarray:
        """Stationary distribution over contexts ``[V^k]`` (power iteration from uniform)."""
        nxt = self._next_context()
        p = np.full(self.n_contexts, 1.0 / self.n_contexts)
        for _ in range(iters):
            q = np.zeros_like(p)
            np.add.at(q, nxt.ravel(), (p[:, None] * self.transitions).ravel())
            if np.abs(q - p).sum() < tol:
                return q
            p = q
        return p

    def entropy_rate(self) -> float:
        """``H(X_t | X_{t-k..t-1})`` under the stationary distribution, nats/token: the lowest CE any model
        can reach (Shannon; for a k-th order chain the conditional entropy given the last k tokens)."""
        pi = self.stationary()
        t = self.transitions
        h_rows = -(t * np.log(np.where(t > 0, t, 1.0))).sum(1)
        return float(pi @ h_rows)

    def marginal_entropy(self) -> float:
        """``H(X_t)`` under the stationary distribution, nats; ``marginal_entropy() - entropy_rate()`` is the
        information the last k tokens carry about the next one, I(Y_1; X_k)."""
        p = self.stationary() @ self.transitions
        return float(-(p * np.log(np.where(p > 0, p, 1.0))).sum())

    def block_entropy(self, n: int) -> float:
        """``H(X_{t-n+1..t})``, the entropy (nats) of ``n`` consecutive tokens under the stationary
        distribution, exact for ``1 <= n <= order + 1`` (marginals of the stationary (k+1)-block law
        ``pi(c) P(v | c)``); an upper bound of the complexity ``I(X_n; Z)`` of any representation."""
        k = self.order
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= k + 1:
            raise ValueError(f"block_entropy: n must be an integer in [1, order + 1 = {k + 1}], got {n!r}")
        joint = (self.stationary()[:, None] * self.transitions).reshape(-1)  # (k+1)-blocks, base V
        p = joint.reshape(self.vocab_size ** (k + 1 - n), self.vocab_size ** n).sum(0)  # keep the last n
        return float(-(p * np.log(np.where(p > 0, p, 1.0))).sum())

    def next_token_information(self, n: int) -> float:
        """``I(Y_1; X_n)`` (nats): what the last ``n`` tokens tell about the next one, exact for any n >= 1;
        ``I(Y_1; X_n) = H(X_1) + H(X_n) - H(X_{n+1})`` (chain rule over the stationary blocks) for n <= k, and
        ``I(Y_1; X_k)`` for n >= k (the chain is k-th order). By data processing no representation of the
        context expresses more about the next token: the expressivity ``I(Z; Y_1)`` is at most this."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"next_token_information: n must be an integer >= 1, got {n!r}")
        n = min(n, self.order)
        return self.block_entropy(1) + self.block_entropy(n) - self.block_entropy(n + 1)

    def sample(self, n_tokens: int, seed: int = 0, burn_in: int = 100) -> torch.Tensor:
        """One stationary stream of ``n_tokens`` token ids (int64 ``[n_tokens]``), after ``burn_in`` steps."""
        if isinstance(n_tokens, bool) or not isinstance(n_tokens, int) or n_tokens < 1:
            raise ValueError(f"n_tokens must be an integer >= 1, got {n_tokens!r}")
        rng = np.random.default_rng(seed)
        nxt = self._next_context()
        cdf = np.cumsum(self.transitions, axis=1)
        ctx = int(rng.integers(self.n_contexts))
        out = np.empty(n_tokens + burn_in, dtype=np.int64)
        for i, u in enumerate(rng.random(n_tokens + burn_in)):
            tok = min(int(np.searchsorted(cdf[ctx], u, side="right")), self.vocab_size - 1)
            out[i] = tok
            ctx = int(nxt[ctx, tok])
        return torch.from_numpy(out[burn_in:])

    def splits(self, n_train: int, n_val: int, seed: int = 0) -> TokenSplits:
        """Independent train / validation streams for the native trainer (no separator token)."""
        return TokenSplits(train=self.sample(n_train, seed=seed), val=self.sample(n_val, seed=seed + 1),
                           n_docs_train=1, n_docs_val=1, eos_id=-1,
                           fingerprint=f"markov:V{self.vocab_size}:k{self.order}:a{self.concentration}:"
                                       f"s{self.seed}:{seed}")
