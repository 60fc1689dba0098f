"""Atomic writes, safe loading, output checks, locks and run metadata shared by probe, train, experiments
and report.

Every results file and checkpoint goes through :func:`atomic_write_bytes` (write a temporary file in the
same directory, fsync it, ``os.replace`` it over the target, fsync the directory), so an interrupted write
leaves the previous version intact and never a half-written file. :func:`read_json` names the file in every
error. :func:`check_output_dir` refuses an output path that is a file or not writable before any work
starts. :func:`dir_lock` keeps two processes out of one run / output directory (see there).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import platform
import socket
import sys
import tempfile
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "strict_from_dict",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "atomic_write_csv",
    "atomic_open",
    "read_json",
    "read_csv",
    "file_sha256",
    "bytes_sha256",
    "versions",
    "check_output_dir",
    "LOCK_NAME",
    "LockHeldError",
    "dir_lock",
    "acquire_lock",
    "release_lock",
    "lock_holder",
]


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem allows opening a directory
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[Any]:
    """Open a temporary file next to ``path``; on clean exit fsync and rename it over ``path``.

    On an exception the temporary file is removed and ``path`` is left untouched.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_open supports mode 'wb' or 'w', got {mode!r}")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8", "newline": ""})) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file, fsync, rename)."""
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def _json_default(obj: Any) -> Any:
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serialisable")


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON atomically (numpy scalars/arrays and paths are converted)."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def atomic_write_csv(path: str | os.PathLike, rows: Iterable[Mapping[str, Any]],
                     columns: list[str] | None = None) -> None:
    """Write a tidy table (an iterable of dicts) as CSV atomically; columns default to first-seen order."""
    rows = list(rows)
    if columns is None:
        columns = []
        for row in rows:
            for key in row:
                if key not in columns:
                    columns.append(key)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="raise", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row.get(k, "") for k in columns})
    atomic_write_text(path, buf.getvalue())


def read_json(path: str | os.PathLike) -> Any:
    """Parse the JSON file ``path``; a file that is not UTF-8 JSON is a ValueError naming the file and the
    position of the first error (a missing file stays FileNotFoundError)."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{str(path)!r}: not valid JSON ({exc.msg} at line {exc.lineno} column "
                         f"{exc.colno}); expected a JSON document (truncated or corrupt file)") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"{str(path)!r}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset "
                         f"{exc.start}); expected a JSON document") from None


def read_csv(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read a CSV written by :func:`atomic_write_csv`; numeric-looking cells become floats/ints."""

    def conv(v: str) -> Any:
        if v == "":
            return None
        for cast in (int, float):
            try:
                return cast(v)
            except ValueError:
                pass
        return v

    with open(path, encoding="utf-8", newline="") as fh:
        return [{k: conv(v) for k, v in row.items()} for row in csv.DictReader(fh)]


def bytes_sha256(data: bytes) -> str:
    """SHA-256 hex digest of ``data``."""
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """SHA-256 hex digest of the file ``path`` (read in ``chunk``-byte blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def versions() -> dict[str, str]:
    """Versions of Python, infoplane and the numerical stack, for results metadata."""
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for name in ("infoplane", "torch", "numpy", "scipy", "transformers", "tokenizers"):
        try:
            mod = __import__(name)
            out[name] = getattr(mod, "__version__", "unknown")
        except ImportError:
            out[name] = "absent"
    return out


def strict_from_dict(cls: Any, d: Mapping[str, Any]) -> Any:
    """``cls(**d)`` for a settings dataclass, raising ValueError on unknown keys (a typo in a config file is a
    clear error at load time, not a TypeError mid-run)."""
    import dataclasses

    if not isinstance(d, Mapping):
        raise ValueError(f"{cls.__name__}: expected a mapping of settings, got {type(d).__name__}")
    known = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = set(d) - known
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys {sorted(unknown)}; "
                         f"expected a subset of {sorted(known)}")
    return cls(**d)


# ----------------------------------------------------------------------------- output directories
def check_output_dir(path: str | os.PathLike, flag: str = "out") -> Path:
    """Validate an output directory before any work starts; returns it as a Path (not created).

    Raises NotADirectoryError when ``path`` (or a parent of it) is an existing file, PermissionError when
    the directory (or, if it does not exist yet, its nearest existing parent) does not accept a new file.
    ``flag`` names the setting in the message (e.g. ``"--out"``).
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise NotADirectoryError(f"{flag}: {str(p)!r} is a file; expected a directory (or a path to create)")
    probe = p
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise NotADirectoryError(f"{flag}: {str(p)!r} cannot be created: {str(probe)!r} is a file")
    try:  # try to create a file: os.access says yes to root even on a read-only mount
        with tempfile.TemporaryFile(dir=probe, prefix=".infoplane-write-test-"):
            pass
    except OSError as exc:
        raise PermissionError(f"{flag}: {str(p)!r} is not writable ({exc.strerror or exc}); "
                              "expected a directory this user can write to") from None
    return p


# ----------------------------------------------------------------------------- locks
LOCK_NAME = ".infoplane.lock"


class LockHeldError(FileExistsError):
    """Another live process holds the lock of a run or output directory."""


_HELD: dict[str, tuple[Any, int]] = {}  # resolved lock path -> (open file holding the lock, nesting depth)


def _proc_start(pid: int) -> str | None:
    """Start time of process ``pid`` in clock ticks since boot (Linux ``/proc/<pid>/stat`` field 22), so a
    recycled pid is not mistaken for the lock holder; None where /proc is unavailable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] == "Z" else fields[19]  # a zombie has exited: no start time


def _pid_alive(pid: int, start: str | None) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    except OSError:
        return False
    if Path("/proc/self/stat").exists():
        now = _proc_start(pid)
        return now is not None and (start is None or now == start)
    return True


def lock_holder(directory: str | os.PathLike) -> dict[str, Any] | None:
    """The holder recorded in ``directory``'s lock file (pid, host, since, command) while another live
    process holds it, else None (no lock file, a stale one left by a process that died, or held by this
    process)."""
    path = Path(directory) / LOCK_NAME
    if str(path.resolve()) in _HELD or not path.exists() or _flock_free(path):
        return None
    try:
        info = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        info = {}
    return info or {"pid": "?", "host": "?"}


def _fcntl() -> Any:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: pid/host liveness only
        return None
    return fcntl


def _flock_free(path: Path) -> bool:
    """Whether nobody holds the kernel lock on ``path`` (POSIX flock, released when its holder dies);
    without fcntl: whether the recorded holder is dead."""
    fcntl = _fcntl()
    if fcntl is None:  # pragma: no cover
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return True
        same_host = info.get("host") == socket.gethostname()
        return same_host and not _pid_alive(int(info.get("pid", -1)), info.get("proc_start"))
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return False
    finally:
        os.close(fd)
    return True


def _describe(info: Mapping[str, Any]) -> str:
    return (f"pid {info.get('pid', '?')} on host {info.get('host', '?')} since {info.get('since', '?')}"
            + (f" ({info['command']})" if info.get("command") else ""))


def acquire_lock(directory: str | os.PathLike, purpose: str = "run") -> Path:
    """Lock ``directory`` for this process (re-entrant within it); returns the lock file's path.

    The lock file ``directory/.infoplane.lock`` records ``{"pid", "host", "since", "command", "purpose"}``
    and carries a POSIX ``flock`` that the kernel releases when the process dies, however it dies; a lock
    file left behind by a dead process is stale: it is taken over with a warning naming the old holder.
    Another live process holding it raises :class:`LockHeldError` naming that process.
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    path = d / LOCK_NAME
    key = str(path.resolve())
    if key in _HELD:
        fh, depth = _HELD[key]
        _HELD[key] = (fh, depth + 1)
        return path
    fcntl = _fcntl()
    for _ in range(5):
        try:
            old = json.loads(path.read_text(encoding="utf-8") or "{}")
        except (OSError, ValueError):
            old = {}
        if fcntl is None:  # pragma: no cover - Windows: create exclusively, stale by pid liveness
            if path.exists() and not _flock_free(path):
                raise LockHeldError(f"{str(d)!r} is in use by {_describe(old)} "
                                    f"({purpose} lock {str(path)!r})")
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            try:
                fh = open(path, "x", encoding="utf-8")
            except FileExistsError:
                continue
        else:
            fh = open(path, "a+", encoding="utf-8")
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                fh.close()
                raise LockHeldError(
                    f"{str(d)!r} is in use by {_describe(old)}: wait for it to finish or stop it "
                    f"({purpose} lock {str(path)!r})") from None
            try:  # the file we locked may have been removed and replaced by its releasing holder
                same = os.fstat(fh.fileno()).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                fh.close()
                continue
        if old.get("pid") not in (None, os.getpid()):
            warnings.warn(f"took over the stale lock {str(path)!r} of {_describe(old)}, which is no longer "
                          "running", RuntimeWarning, stacklevel=2)
        info = {"pid": os.getpid(), "host": socket.gethostname(), "proc_start": _proc_start(os.getpid()),
                "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "command": " ".join(sys.argv)[:300], "purpose": purpose}
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps(info) + "\n")
        fh.flush()
        _HELD[key] = (fh, 1)
        return path
    raise LockHeldError(f"could not take the {purpose} lock {str(path)!r}: it keeps changing hands")


def release_lock(path: str | os.PathLike) -> None:
    """Release a lock taken by :func:`acquire_lock` (the outermost release removes the lock file)."""
    key = str(Path(path).resolve())
    if key not in _HELD:
        return
    fh, depth = _HELD[key]
    if depth > 1:
        _HELD[key] = (fh, depth - 1)
        return
    del _HELD[key]
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # unlink before unlocking: a waiting locker re-checks the inode (see acquire_lock)
    fh.close()


@contextlib.contextmanager
def dir_lock(directory: str | os.PathLike, purpose: str = "run") -> Iterator[Path]:
    """``with dir_lock(out):`` hold :func:`acquire_lock` on ``out`` for the block."""
    path = acquire_lock(directory, purpose)
    try:
        yield path
    finally:
        release_lock(path)
