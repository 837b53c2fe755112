"""What the processes of one run share: the run directory, its liveness lock, run-once setup.

A run directory lives under :func:`tmp_root` and is named after the test-run id.
The process that starts the run (the xdist controller, or the only process
without xdist) holds an exclusive ``flock`` on ``<run dir>.lock`` for the whole
run. The kernel drops that lock when the process dies, however it dies, so a
directory whose lock can be taken belongs to a dead run: :func:`reap_dead_runs`
finishes that run's recorded teardowns and removes the directory.
"""

from __future__ import annotations

import contextlib
import getpass
import importlib
import importlib.util
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

from worker_utils._worker import get_testrun_uid, get_worker_id
from worker_utils.errors import WorkerUtilsError

if TYPE_CHECKING:
    import filelock

__all__ = [
    "RunLock",
    "RunOnceError",
    "TeardownRecord",
    "current_run_dir",
    "reap_dead_runs",
    "run_dir_for",
    "run_once",
    "run_teardowns",
    "tmp_root",
]

RUN_DIR_VAR = "WORKER_UTILS_RUN_DIR"
_RUN_PREFIX = "run-"
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
_ONCE = "once"

T = TypeVar("T")


class RunOnceError(WorkerUtilsError, RuntimeError):
    """``run_once`` was called with a value or teardown that cannot be shared."""


def tmp_root() -> Path:
    """Return the per-user directory that holds every run directory on this host."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (containers)
        user = str(os.getuid()) if hasattr(os, "getuid") else "user"
    user = re.sub(r"[^A-Za-z0-9_.-]", "_", user)
    return Path(tempfile.gettempdir()) / f"worker-utils-of-{user}"


def run_dir_for(uid: str) -> Path:
    """Return the directory of the run ``uid``: the same path in every process of the run."""
    return tmp_root() / f"{_RUN_PREFIX}{uid}"


class RunLock:
    """The liveness lock of one run directory, held by the process that owns the run."""

    def __init__(self, uid: str) -> None:
        import filelock  # here, not at the top: an xdist worker that shares nothing never needs it

        self.path = run_dir_for(uid)
        self._lock = filelock.FileLock(f"{self.path}.lock")

    def acquire(self) -> Path:
        """Take the lock, then create the run directory: a reaper never sees it unlocked.

        Raises:
            WorkerUtilsError: Another live process of this host holds the lock.
        """
        import filelock

        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            self._lock.acquire(timeout=0)
        except filelock.Timeout:
            raise WorkerUtilsError(
                f"--testrunuid {self.path.name.removeprefix(_RUN_PREFIX)}: a run with this id "
                f"is live on this host; give each concurrent run its own --testrunuid"
            ) from None
        self.path.mkdir(mode=0o700, exist_ok=True)
        return self.path

    def release(self, *, remove: bool = True) -> None:
        """Remove the run directory (by default), then drop the lock and its file."""
        if remove:
            shutil.rmtree(self.path, ignore_errors=True)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._lock.lock_file)
        self._lock.release()


def current_run_dir(env: Mapping[str, str] | None = None) -> Path:
    """Return the current run's directory, creating it.

    Inside pytest the plugin creates it when the run starts and removes it when
    the run ends. Outside pytest it is one directory per process, removed by the
    next run's reaper once the process has exited.
    """
    mapping = os.environ if env is None else env
    given = mapping.get(RUN_DIR_VAR)
    path = Path(given) if given else _process_run_dir(get_testrun_uid(mapping))
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


_process_locks: dict[str, RunLock] = {}


def _process_run_dir(uid: str) -> Path:
    import filelock

    lock = _process_locks.get(uid)
    if lock is None:
        lock = RunLock(uid)
        with contextlib.suppress(filelock.Timeout):  # held already: the run is alive
            lock.acquire()
        _process_locks[uid] = lock
    return lock.path


@dataclass(frozen=True)
class TeardownRecord:
    """A teardown that ``run_once`` registered, to run once when the run ends."""

    key: str
    function: str
    value: Any
    created: float
    file: str | None = None

    def run(self) -> None:
        """Import the teardown function and call it with the shared value."""
        _resolve(self.function, self.file)(self.value)


def run_once(
    key: str,
    compute: Callable[[], T],
    *,
    teardown: Callable[[Any], object] | None = None,
    run_dir: Path | None = None,
    timeout: float = 600.0,
) -> T:
    """Compute a value once per run and return it to every worker.

    The first worker to arrive calls ``compute`` while holding a file lock; the
    others wait, then read the stored value. The value travels as JSON, so every
    worker, the first included, gets the same decoded value.

    Args:
        key: The name the value is shared under: letters, digits, ``_.-``.
        compute: Makes the value; called at most once per run unless it raises.
        teardown: A module-level function called with the value once, after the
            last worker of the run has finished (by the controller).
        run_dir: The run directory; :func:`current_run_dir` by default.
        timeout: Seconds to wait for another worker's ``compute``.

    Raises:
        RunOnceError: A bad key, a value that is not JSON-serialisable, a
            teardown that cannot be imported by name, or a wait that timed out.
    """
    import filelock

    if not _KEY.fullmatch(key):
        raise RunOnceError(
            f"run_once: key {key!r} is not a valid name; use 1-100 letters, digits, '_', '.' or '-'"
        )
    function = None if teardown is None else _qualified_name(key, teardown)
    directory = (run_dir or current_run_dir()) / _ONCE
    directory.mkdir(mode=0o700, exist_ok=True)
    record = directory / f"{key}.json"
    try:
        with filelock.FileLock(directory / f"{key}.lock", timeout=timeout):
            if record.exists():
                stored: T = json.loads(record.read_text())["value"]
                return stored
            value = compute()
            try:
                text = json.dumps(
                    {
                        "value": value,
                        "teardown": function,
                        "file": None if teardown is None else _source_file(teardown),
                        "created": time.time(),
                        "worker": get_worker_id(),
                        "pid": os.getpid(),
                        "host": socket.gethostname(),
                    }
                )
            except (TypeError, ValueError) as exc:
                if teardown is not None:
                    teardown(value)  # the only chance to undo what compute made
                raise RunOnceError(
                    f"run_once({key!r}): the value returned by {_name(compute)} is not "
                    f"JSON-serialisable ({exc}); return plain data (dict, list, str, int, "
                    f"float, bool, None) and rebuild objects from it in each worker"
                ) from None
            tmp = record.with_suffix(".tmp")
            tmp.write_text(text)
            tmp.replace(record)  # readers never see half a record
            shared: T = json.loads(text)["value"]
            return shared
    except filelock.Timeout:
        raise RunOnceError(
            f"run_once({key!r}): waited {timeout:g}s for another worker's setup; "
            f"raise the timeout= argument if the setup is that slow"
        ) from None


def discard(key: str, *, run_dir: Path | None = None) -> None:
    """Forget the value of ``key`` and its teardown: its maker undid it already.

    For a teardown that frees what a worker leaves if it dies: the worker that
    ends cleanly frees it itself, and the run's end then has nothing to do.
    """
    import filelock

    directory = (run_dir or current_run_dir()) / _ONCE
    with filelock.FileLock(directory / f"{key}.lock"), contextlib.suppress(FileNotFoundError):
        os.unlink(directory / f"{key}.json")


def _name(function: Callable[..., object]) -> str:
    return getattr(function, "__qualname__", repr(function))


def _qualified_name(key: str, function: Callable[..., object]) -> str:
    module = getattr(function, "__module__", None)
    qualname = getattr(function, "__qualname__", "")
    if not module or not qualname or "<" in qualname:
        raise RunOnceError(
            f"run_once({key!r}): teardown {_name(function)} must be a module-level function, "
            f"because it runs in the controller after the last worker ends; "
            f"move it to the top level of a conftest or module"
        )
    return f"{module}:{qualname}"


def _source_file(function: Callable[..., object]) -> str | None:
    # The function's own file: sys.modules["conftest"] is whichever conftest.py
    # (outside a package) pytest imported last.
    code = getattr(function, "__code__", None)
    if code is not None:
        return str(code.co_filename)
    module = sys.modules.get(getattr(function, "__module__", ""))
    return getattr(module, "__file__", None)


def _same_file(module: object, file: str) -> bool:
    found = getattr(module, "__file__", None)
    return found is not None and os.path.realpath(found) == os.path.realpath(file)


def _resolve(name: str, file: str | None = None) -> Callable[[Any], object]:
    module_name, _, qualname = name.partition(":")
    module = sys.modules.get(module_name)
    if module is not None and file is not None and not _same_file(module, file):
        # Another module by that name (another conftest.py): the one imported from file.
        module = next((m for m in list(sys.modules.values()) if _same_file(m, file)), None)
        if module is None:
            module = _load(module_name, file)
    if module is None:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            # A test module: the xdist controller never imports those.
            if file is None:
                raise
            module = _load(module_name, file)
    target: Any = module
    for part in qualname.split("."):
        target = getattr(target, part)
    if not callable(target):
        raise TypeError(f"{name} is not callable")
    return target  # type: ignore[no-any-return]


def _load(module_name: str, file: str) -> ModuleType:
    """Import ``file`` as a module of its own, apart from any module named ``module_name``."""
    spec = importlib.util.spec_from_file_location(f"_worker_utils_{module_name}", file)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {module_name} from {file}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def teardown_records(run_dir: Path) -> list[TeardownRecord]:
    """Return the teardowns registered in ``run_dir``, newest first."""
    records = []
    for path in (run_dir / _ONCE).glob("*.json"):
        with contextlib.suppress(OSError, ValueError, KeyError):
            data = json.loads(path.read_text())
            if data["teardown"]:
                records.append(
                    TeardownRecord(
                        path.stem, data["teardown"], data["value"], data["created"], data["file"]
                    )
                )
    return sorted(records, key=lambda record: record.created, reverse=True)


def run_teardowns(run_dir: Path, *, only: str | None = None) -> list[str]:
    """Run every teardown registered in ``run_dir``, newest first; return the failures.

    Each record is removed before its teardown runs, so a teardown never runs twice.

    Args:
        run_dir: The run directory.
        only: Run only teardowns whose module name starts with this prefix; the
            others are reported as failures, not run.
    """
    failures = []
    for record in teardown_records(run_dir):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(run_dir / _ONCE / f"{record.key}.json")
        if only is not None and not record.function.startswith(only):
            failures.append(
                f"run_once({record.key!r}) teardown {record.function}: not run, because "
                f"the run that registered it is gone and its code may have changed"
            )
            continue
        try:
            record.run()
        except Exception as exc:  # one failing teardown must not skip the others
            failures.append(f"run_once({record.key!r}) teardown {record.function}: {exc!r}")
    return failures


def _dead_run_dirs(root: Path) -> Iterator[tuple[Path, filelock.FileLock]]:
    import filelock

    for path in root.glob(f"{_RUN_PREFIX}*"):
        if not path.is_dir():
            continue
        lock = filelock.FileLock(f"{path}.lock")
        try:
            lock.acquire(timeout=0)
        except filelock.Timeout:
            continue  # its run is alive
        yield path, lock


def reap_dead_runs(root: Path | None = None) -> list[Path]:
    """Finish and remove run directories whose owning process has died.

    Returns:
        The directories removed.
    """
    removed = []
    for path, lock in _dead_run_dirs(root or tmp_root()):
        try:
            # Code of a dead run may be gone or changed: run only our own teardowns.
            for failure in run_teardowns(path, only="worker_utils."):
                warnings.warn(f"worker_utils: reaping {path}: {failure}", stacklevel=2)
            shutil.rmtree(path, ignore_errors=True)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(lock.lock_file)
            removed.append(path)
        finally:
            lock.release()
    return removed
