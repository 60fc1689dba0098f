"""Helpers of the fault tests: a tiny corpus file, a tiny training config, the CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from infoplane.data.corpus import embedded_corpus
from infoplane.train.config import TrainConfig

TINY = dict(model={"n_layer": 2, "n_head": 2, "d_model": 32, "block_size": 32}, steps=12, batch_size=4,
            warmup_steps=2, eval_every=0, eval_batches=2, checkpoint_steps="every:4", progress=False,
            tokenizer="byte", num_threads=1)
CLI_TINY = ["--tokenizer", "byte", "--n-layer", "2", "--n-head", "2", "--d-model", "32", "--block-size", "32",
            "--batch-size", "4", "--eval-every", "0", "--threads", "1", "--quiet"]


def corpus_file(tmp: Path, n: int = 300) -> Path:
    path = tmp / "corpus.txt"
    if not path.exists():
        path.write_text("\n".join(embedded_corpus("kjv").texts[:n]), encoding="utf-8")
    return path


def tiny_config(out: Path, corpus: Path, **kw: Any) -> TrainConfig:
    d = {**TINY, "corpus": str(corpus), "out_dir": str(out)}
    for k, v in kw.items():
        d[k] = {**d[k], **v} if isinstance(v, dict) and isinstance(d.get(k), dict) else v
    return TrainConfig.from_dict(d)


def cli(*args: str, cwd: Path | None = None, **popen: Any) -> subprocess.CompletedProcess:
    """``infoplane ARGS`` in a fresh interpreter (one torch thread), output captured."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "default"}
    return subprocess.run([sys.executable, "-c", MAIN, *args], cwd=cwd, capture_output=True, text=True,
                          env=env, timeout=120, **popen)


MAIN = "import sys; from infoplane.cli import main; sys.exit(main(sys.argv[1:]))"


def without_time(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Log records minus their wall-clock ``time`` (the only field a resumed run may change)."""
    return [{k: v for k, v in r.items() if k != "time"} for r in records]
