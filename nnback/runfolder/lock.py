"""One writer per run folder: the ``lock`` file and the kernel lock behind it.

``folder/lock`` holds ``{"pid", "host", "started"}`` for people and messages. The process
that owns it also holds an exclusive ``fcntl.flock`` on it for as long as it runs. The
kernel drops that lock when the process dies in any way (``kill -9`` included) and never
hands it to a later process that happens to reuse the pid, so on this host "nobody holds
the flock" is an exact test for a stale lock file. The rule that makes take-over safe:
only a process holding the flock of the file currently named ``lock`` may remove that
name, so two processes that both find a stale lock cannot both win.

A lock file written on another host is always respected (its flock may not be visible
from here); remove it by hand once that job is known to be gone.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
from datetime import datetime
from pathlib import Path
from typing import Any

from nnback.errors import LockedError
from nnback.runfolder.atomic import io_error

LOCK_NAME = "lock"
# Each attempt either takes the lock, finds it held, or lost a race and looks again.
_ATTEMPTS = 5
# flock fails with these where the file system does not support it; pids decide then.
_NO_FLOCK = {errno.ENOLCK, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EINVAL}


class RunLock:
    """Exclusive ownership of a run folder, as a context manager.

    Args:
        folder: the run folder (created if missing).
        command: what writes there, for the message (``"nnback sweep"``).

    Raises (on enter):
        LockedError: ``"runs/x: locked by pid 1234 on host h since 2026-...; another
            nnback train is writing here"``.
        RunIOError: the folder or the lock file cannot be written.
    """

    def __init__(self, folder: str | os.PathLike, command: str = "nnback train"):
        self.folder = Path(folder)
        self.command = command
        self.path = self.folder / LOCK_NAME
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock, taking over a stale one left by a dead process on this host."""
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this RunLock")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise io_error(self.folder, exc) from exc
        for _ in range(_ATTEMPTS):
            self._fd = self._attempt()
            if self._fd is not None:
                return
        raise LockedError(f"{self.folder}: could not take the lock: other processes keep taking it")

    def release(self) -> None:
        """Remove the lock file if it is still ours, and drop the kernel lock."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            if _is_same_file(fd, self.path):
                os.unlink(self.path)
        except OSError:
            pass  # a leftover file is harmless: with no flock held, the next run takes it over
        finally:
            os.close(fd)

    def _attempt(self) -> int | None:
        """One try: our open, flocked, written lock fd, or ``None`` to look again."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            created = True
        except FileExistsError:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_NOFOLLOW)
            except FileNotFoundError:
                return None  # released meanwhile
            except OSError as exc:
                raise io_error(self.path, exc) from exc
            created = False
        except OSError as exc:
            raise io_error(self.path, exc) from exc
        try:
            if self._claim(fd, created):
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
        return None

    def _claim(self, fd: int, created: bool) -> bool:
        """Decide about the lock file open at ``fd``; True when it is now ours."""
        flocked = _try_flock(fd)
        if flocked is False:
            if created:
                return False  # another starter is inspecting our new, still empty file
            raise LockedError(self._message(_read_holder(fd)))
        if not _is_same_file(fd, self.path):
            return False  # replaced before we got its flock
        if created:
            try:
                _write_holder(fd, self.path)
            except BaseException:
                os.unlink(self.path)
                raise
            return True
        holder = _read_holder(fd)
        if holder is not None and _holder_alive(holder, flocked):
            raise LockedError(self._message(holder))
        try:
            os.unlink(self.path)  # stale, and we hold its flock: nobody else can be replacing it
        except OSError as exc:
            raise io_error(self.path, exc) from exc
        return False

    def _message(self, holder: dict[str, Any] | None) -> str:
        if holder is None:
            return f"{self.folder}: locked by another process; another {self.command} is writing here"
        message = (
            f"{self.folder}: locked by pid {holder['pid']} on host {holder.get('host', '?')}"
            f" since {holder.get('started', '?')}; another {self.command} is writing here"
        )
        if holder.get("host") != socket.gethostname():
            message += f" (delete {self.path} if that job is gone)"
        return message


def _try_flock(fd: int) -> bool | None:
    """Exclusive non-blocking flock: True taken, False held elsewhere, None unsupported."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as exc:
        if exc.errno in _NO_FLOCK:
            return None
        raise
    return True


def _is_same_file(fd: int, path: Path) -> bool:
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (opened.st_dev, opened.st_ino) == (named.st_dev, named.st_ino)


def _write_holder(fd: int, path: Path) -> None:
    holder = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    try:
        os.write(fd, json.dumps(holder).encode() + b"\n")
        os.fsync(fd)
    except OSError as exc:
        raise io_error(path, exc) from exc


def _read_holder(fd: int) -> dict[str, Any] | None:
    """The lock file's holder record, or ``None`` if it is empty or garbled."""
    try:
        holder = json.loads(os.pread(fd, 65536, 0))
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(holder, dict) or type(holder.get("pid")) is not int or holder["pid"] <= 0:
        return None
    return holder


def _holder_alive(holder: dict[str, Any], flocked: bool | None) -> bool:
    """Whether the process named by ``holder`` may still be writing.

    Args:
        flocked: True if we took the file's flock (so no process on this host holds
            it), None if the file system has no flock.
    """
    if holder.get("host") != socket.gethostname():
        return True
    if flocked:
        return False
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
