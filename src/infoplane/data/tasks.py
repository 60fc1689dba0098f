"""Synthetic tasks of the GAPT paper (Yu 2025, arXiv:2505.08727; reference code fangyuan-ksgk/mod_gpt).

* **Arithmetic multiplication** (Yu 2025; mod_gpt arithmetic data): ``<bos>a x b = c<eos>`` with a
  per-character tokenizer (vocabulary 15: ``<bos>`` 0, ``<eos>`` 1, ``x`` 2, ``=`` 3, space 4, digits 5-14).
  Each operand draws a digit count uniformly in ``[min_digits, max_digits]`` and then a uniform number of
  that length. In-distribution (ID) and out-of-distribution (OOD, longer operands) splits; the answer mask
  marks the digits of ``c`` (strictly between ``"= "`` and ``<eos>``). Optionally the answer digits are
  written least significant first (``reverse_answer``; the reference does not reverse): a small transformer
  then emits each digit after the lower-order digits its carry depends on (Lee et al. 2023, "Teaching
  Arithmetic to Small Transformers", arXiv:2307.03381, section 4: reversed output). ``operand_width``
  zero-pads the operands to a fixed width (a deviation from the reference, for CPU-sized models).
* **Conflicting experience** (mod_gpt forget.py): x in R^10 drawn from p1 (first 5 dims ~ N(1, 0.25^2), last 5
  ~ N(0, 0.25^2)) or p2 (mirrored); a teacher MLP with parameters theta0 +/- delta where delta is a random
  rank-3 shift per weight matrix; "positive" targets f_{theta0+delta}(x ~ p1),
  "negative" f_{theta0-delta}(x ~ p2).

Every random choice takes a seed; generators are deterministic given it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "ARITH_VOCAB",
    "BOS",
    "EOS",
    "CharTokenizer",
    "ArithmeticBatch",
    "ArithmeticSplits",
    "sample_operands",
    "make_arithmetic_examples",
    "encode_arithmetic",
    "make_arithmetic_splits",
    "ConflictTeacher",
    "make_conflict_teacher",
    "sample_conflict_inputs",
    "make_conflict_task",
]

# vocabulary of the arithmetic data (mod_gpt arithmetic runs): <bos> 0, <eos> 1, x, =, space, digits 5-14
ARITH_VOCAB: tuple[str, ...] = ("<bos>", "<eos>", "x", "=", " ", *"0123456789")
BOS, EOS = 0, 1


class CharTokenizer:
    """Per-character tokenizer for ``a x b = c`` strings (vocabulary :data:`ARITH_VOCAB`, size 15)."""

    def __init__(self) -> None:
        self.vocab = ARITH_VOCAB
        self.stoi = {s: i for i, s in enumerate(ARITH_VOCAB)}
        self.vocab_size = len(ARITH_VOCAB)
        self.bos_id, self.eos_id = BOS, EOS

    def encode(self, text: str, add_special: bool = True) -> list[int]:
        """Characters -> ids; with ``add_special`` the result is ``[<bos>, ..., <eos>]``."""
        ids = []
        for ch in text:
            if ch not in self.stoi or len(ch) != 1:
                raise ValueError(f"character {ch!r} not in the arithmetic vocabulary "
                                 "(digits, 'x', '=', space)")
            ids.append(self.stoi[ch])
        return [BOS, *ids, EOS] if add_special else ids

    def decode(self, ids) -> str:
        """Ids -> text (special tokens dropped)."""
        out = []
        for i in ids:
            i = int(i)
            if not 0 <= i < self.vocab_size:
                raise ValueError(f"token id {i} outside [0, {self.vocab_size})")
            if i > EOS:
                out.append(self.vocab[i])
        return "".join(out)


def _check_digits(min_digits: int, max_digits: int) -> None:
    if not (isinstance(min_digits, int) and isinstance(max_digits, int)) or not 1 <= min_digits <= max_digits:
        raise ValueError(f"expected integers 1 <= min_digits <= max_digits, got {min_digits}, {max_digits}")
    if max_digits > 9:
        raise ValueError(f"max_digits must be <= 9 (int64 products), got {max_digits}")


def sample_operands(n: int, min_digits: int, max_digits: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` operands: digit count uniform in [min_digits, max_digits], then uniform of that length.

    Returns int64 ``[n]``. One-digit numbers include 0 (0-9), longer ones have no leading zero.
    """
    _check_digits(min_digits, max_digits)
    k = rng.integers(min_digits, max_digits + 1, size=n)
    lo = np.where(k == 1, 0, 10 ** (k - 1))
    hi = 10**k
    return (lo + np.floor(rng.random(n) * (hi - lo))).astype(np.int64)


def _count_numbers(min_digits: int, max_digits: int) -> int:
    return 10**max_digits - (10 ** (min_digits - 1) if min_digits > 1 else 0)


def make_arithmetic_examples(n: int, min_digits: int, max_digits: int, seed: int,
                             exclude: set[tuple[int, int]] | None = None,
                             b_digits: tuple[int, int] | None = None) -> list[tuple[int, int]]:
    """``n`` distinct (a, b) pairs, none in ``exclude``.

    ``a`` has ``min_digits``-``max_digits`` digits, ``b`` the digit range ``b_digits`` (default: the same as
    ``a``). Raises ValueError when the ranges hold fewer than ``n`` admissible pairs.
    """
    _check_digits(min_digits, max_digits)
    b_lo, b_hi = (min_digits, max_digits) if b_digits is None else b_digits
    _check_digits(b_lo, b_hi)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    n_pairs = _count_numbers(min_digits, max_digits) * _count_numbers(b_lo, b_hi)
    exclude = exclude or set()
    if n > n_pairs - len(exclude):
        raise ValueError(f"asked for {n} distinct pairs but digits {min_digits}-{max_digits} x {b_lo}-{b_hi} "
                         f"allow at most {n_pairs - len(exclude)}")
    rng = np.random.default_rng(seed)
    seen: set[tuple[int, int]] = set()
    out: list[tuple[int, int]] = []
    while len(out) < n:
        m = max(2 * (n - len(out)), 64)
        a = sample_operands(m, min_digits, max_digits, rng)
        b = sample_operands(m, b_lo, b_hi, rng)
        for pair in zip(a.tolist(), b.tolist()):
            if pair in seen or pair in exclude:
                continue
            seen.add(pair)
            out.append(pair)
            if len(out) == n:
                break
    return out


@dataclass
class ArithmeticBatch:
    """Padded token ids and masks for a list of ``a x b = c`` examples.

    Attributes:
        ids: ``[N, T]`` int64 token ids, right-padded with ``<eos>``.
        valid: ``[N, T]`` bool, True on real tokens (``<bos>`` ... ``<eos>``).
        answer_mask: ``[N, T]`` bool, True on the digits of ``c`` (strictly between ``"= "`` and ``<eos>``).
        eos_pos: ``[N]`` int64, position of the closing ``<eos>``.
        pairs: the (a, b) operands.
        reverse_answer: whether the answer digits are written least significant first.
    """

    ids: torch.Tensor
    valid: torch.Tensor
    answer_mask: torch.Tensor
    eos_pos: torch.Tensor
    pairs: list[tuple[int, int]]
    reverse_answer: bool = False

    def __len__(self) -> int:
        return len(self.pairs)

    def target_masks(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Shifted masks for next-token prediction on ``ids[:, :-1] -> ids[:, 1:]``.

        Returns ``(loss_mask, answer_mask, exact_mask)``, each ``[N, T-1]`` bool: real target tokens, answer
        digit targets, and answer digits plus the closing ``<eos>`` (all must be right for an exact match).
        """
        loss = self.valid[:, 1:]
        ans = self.answer_mask[:, 1:]
        eos = torch.zeros_like(ans)
        eos[torch.arange(len(self)), self.eos_pos - 1] = True
        return loss, ans, ans | eos


def encode_arithmetic(pairs: list[tuple[int, int]], tokenizer: CharTokenizer | None = None,
                      length: int | None = None, reverse_answer: bool = False,
                      operand_width: int = 0) -> ArithmeticBatch:
    """Encode (a, b) pairs as ``<bos>a x b = c<eos>`` (c = a*b), right-padded with ``<eos>`` to ``length``.

    With ``reverse_answer`` the digits of ``c`` are written least significant first (``12 x 3 = 63``); with
    ``operand_width`` > 0 the operands are zero-padded to that many digits (``07 x 12 = 84``), so each digit
    of a training operand sits at a fixed position.
    """
    if isinstance(operand_width, bool) or not isinstance(operand_width, int) or operand_width < 0:
        raise ValueError(f"operand_width must be an int >= 0, got {operand_width!r}")
    tok = tokenizer or CharTokenizer()
    seqs, answers = [], []
    for a, b in pairs:
        if a < 0 or b < 0:
            raise ValueError(f"operands must be non-negative, got {a}, {b}")
        w = operand_width
        prefix = tok.encode(f"{a:0{w}d} x {b:0{w}d} = " if w else f"{a} x {b} = ", add_special=False)
        c = str(a * b)
        ans = tok.encode(c[::-1] if reverse_answer else c, add_special=False)
        seqs.append([BOS, *prefix, *ans, EOS])
        answers.append((1 + len(prefix), 1 + len(prefix) + len(ans)))
    t_max = max((len(s) for s in seqs), default=1)
    T = t_max if length is None else length
    if T < t_max:
        raise ValueError(f"length {T} is shorter than the longest example ({t_max} tokens)")
    n = len(seqs)
    ids = torch.full((n, T), EOS, dtype=torch.long)
    valid = torch.zeros((n, T), dtype=torch.bool)
    amask = torch.zeros((n, T), dtype=torch.bool)
    eos_pos = torch.zeros(n, dtype=torch.long)
    for i, (s, (lo, hi)) in enumerate(zip(seqs, answers)):
        ids[i, : len(s)] = torch.tensor(s)
        valid[i, : len(s)] = True
        amask[i, lo:hi] = True
        eos_pos[i] = len(s) - 1
    return ArithmeticBatch(ids, valid, amask, eos_pos, list(pairs), bool(reverse_answer))


@dataclass
class ArithmeticSplits:
    """Train / ID-validation / ID-test / OOD-test pair lists (pairwise disjoint)."""

    train: list[tuple[int, int]]
    val_id: list[tuple[int, int]]
    test_id: list[tuple[int, int]]
    test_ood: list[tuple[int, int]]
    train_digits: tuple[int, int]
    ood_digits: tuple[int, int]


def make_arithmetic_splits(n_train: int, n_val: int, n_test: int, train_digits: tuple[int, int] = (1, 2),
                           ood_digits: tuple[int, int] = (3, 3), seed: int = 0,
                           n_test_ood: int | None = None,
                           b_digits: tuple[int, int] | None = None) -> ArithmeticSplits:
    """Disjoint splits: ID train/val/test share ``train_digits``; OOD test uses ``ood_digits``.

    ``train_digits`` / ``ood_digits`` are the first operand's digit range; the second operand has ``b_digits``
    in every split (default: the split's own range, so both operands grow in the OOD split).

    When the ID range has fewer than ``n_train + n_val + n_test`` pairs (e.g. 1-2 digits: 100x100 = 10,000
    pairs), ValueError. OOD pairs cannot collide with ID pairs when ``ood_digits[0] > train_digits[1]``;
    overlapping ranges are excluded explicitly.
    """
    n_ood = n_test if n_test_ood is None else n_test_ood
    held = make_arithmetic_examples(n_val + n_test, *train_digits, seed=seed + 1, b_digits=b_digits)
    val, test = held[:n_val], held[n_val:]
    train = make_arithmetic_examples(n_train, *train_digits, seed=seed, exclude=set(held), b_digits=b_digits)
    ood = make_arithmetic_examples(n_ood, *ood_digits, seed=seed + 2, exclude=set(held) | set(train),
                                   b_digits=b_digits)
    return ArithmeticSplits(train, val, test, ood, tuple(train_digits), tuple(ood_digits))


# ----------------------------------------------------------------------------------------------------------
# conflicting experience (mod_gpt ``forget.py``)


@dataclass
class ConflictTeacher:
    """Teacher MLP ``f(x) = W2 relu(W1 x + b1) + b2`` and its opposite rank-3 shifts.

    Attributes hold float32 tensors: ``W1 [H, D]``, ``b1 [H]``, ``W2 [O, H]``, ``b2 [O]`` (theta0) and
    ``dW1``, ``dW2`` (rank-3 shifts; biases are not shifted).
    """

    W1: torch.Tensor
    b1: torch.Tensor
    W2: torch.Tensor
    b2: torch.Tensor
    dW1: torch.Tensor
    dW2: torch.Tensor

    def __call__(self, x: torch.Tensor, sign: int) -> torch.Tensor:
        """Targets ``f_{theta0 + sign*delta}(x)``: x ``[N, D]`` -> ``[N, O]``; sign is +1 or -1."""
        if sign not in (1, -1):
            raise ValueError(f"sign must be +1 or -1, got {sign}")
        h = torch.relu(x @ (self.W1 + sign * self.dW1).T + self.b1)
        return h @ (self.W2 + sign * self.dW2).T + self.b2


def _rank_k(shape: tuple[int, int], k: int, rng: np.random.Generator) -> np.ndarray:
    u = rng.standard_normal((shape[0], k))
    v = rng.standard_normal((k, shape[1]))
    m = u @ v
    return m / np.linalg.norm(m)


def make_conflict_teacher(dim: int = 10, hidden: int = 20, out: int = 10, rank: int = 3,
                          scale_range: tuple[float, float] = (0.5, 5.0), seed: int = 0) -> ConflictTeacher:
    """Random teacher theta0 and a rank-``rank`` shift per weight matrix with norm ``||W|| * U(scale_range)``.

    mod_gpt ``forget.py``: "delta theta per matrix random rank-3 scaled to ||theta|| * U(0.5, 5)".
    """
    if min(dim, hidden, out) < 1 or not 1 <= rank <= min(dim, hidden, out):
        raise ValueError(f"expected positive sizes and 1 <= rank <= min sizes, got {dim, hidden, out, rank}")
    if not 0 < scale_range[0] <= scale_range[1]:
        raise ValueError(f"scale_range must satisfy 0 < lo <= hi, got {scale_range}")
    rng = np.random.default_rng(seed)
    W1 = rng.standard_normal((hidden, dim)) / np.sqrt(dim)
    b1 = 0.1 * rng.standard_normal(hidden)
    W2 = rng.standard_normal((out, hidden)) / np.sqrt(hidden)
    b2 = 0.1 * rng.standard_normal(out)
    dW1 = _rank_k(W1.shape, rank, rng) * np.linalg.norm(W1) * rng.uniform(*scale_range)
    dW2 = _rank_k(W2.shape, rank, rng) * np.linalg.norm(W2) * rng.uniform(*scale_range)

    def t(a):
        return torch.tensor(a, dtype=torch.float32)

    return ConflictTeacher(t(W1), t(b1), t(W2), t(b2), t(dW1), t(dW2))


def sample_conflict_inputs(n: int, which: int, dim: int = 10, std: float = 0.25,
                           rng: np.random.Generator | int = 0) -> torch.Tensor:
    """``n`` inputs from p1 (``which=1``: first half ~ N(1, std^2), rest ~ N(0, std^2)) or p2 (mirrored).

    Returns float32 ``[n, dim]``.
    """
    if which not in (1, 2):
        raise ValueError(f"which must be 1 (p1) or 2 (p2), got {which}")
    if dim < 2:
        raise ValueError(f"dim must be >= 2, got {dim}")
    rng = np.random.default_rng(rng) if isinstance(rng, (int, np.integer)) else rng
    half = dim // 2
    mean = np.zeros(dim)
    if which == 1:
        mean[:half] = 1.0
    else:
        mean[half:] = 1.0
    x = mean + std * rng.standard_normal((n, dim))
    return torch.tensor(x, dtype=torch.float32)


def make_conflict_task(n: int, task: str, teacher: ConflictTeacher, seed: int = 0,
                       std: float = 0.25) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x [n, D], y [n, O])``: ``task="positive"`` (x ~ p1, theta0+delta) or ``"negative"`` (p2, -delta)."""
    if task not in ("positive", "negative"):
        raise ValueError(f"task must be 'positive' or 'negative', got {task!r}")
    which, sign = (1, 1) if task == "positive" else (2, -1)
    x = sample_conflict_inputs(n, which, dim=teacher.W1.shape[1], std=std, rng=seed)
    with torch.no_grad():
        y = teacher(x, sign)
    return x, y
