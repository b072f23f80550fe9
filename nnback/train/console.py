"""What training shows while it runs: one line per evaluation, an optional progress bar.

``text`` prints greppable lines that start with the local time, such as
``2026-11-30 15:54:24 epoch 3/30 train_loss 0.4132 val_loss 0.3907 val_acc 0.9410 lr 9.1e-02 1.2s``;
``json`` prints each line as one JSON object with an ISO 8601 ``"time"``; ``quiet``
prints only warnings.
A live progress bar is drawn only when stdout is a terminal. If the stream is closed
under a running job (a pipe whose reader exits), training goes on without it: one
warning on stderr, and the log stays in ``metrics.jsonl``.
"""

from __future__ import annotations

import datetime
import json
import os
import sys

from nnback.errors import one_line

FIELDS = (("train_loss", "train_loss", ".4f"), ("val_loss", "val_loss", ".4f"),
          ("val_accuracy", "val_acc", ".4f"))


class Console:
    """Training output for one run.

    Args:
        mode: ``"text"``, ``"json"`` or ``"quiet"``.
        stream: where lines go (stdout by default).
    """

    def __init__(self, mode: str = "text", stream=None):
        self.mode = mode
        self.stream = stream or sys.stdout
        self.live = mode == "text" and self.stream.isatty()
        self._bar_shown = False
        self._closed = False

    def _emit(self, line: str) -> None:
        if self._bar_shown:
            self._bar_shown = False
            line = "\r\033[K" + line
        self._write(line + "\n")

    def _write(self, text: str) -> None:
        """Write and flush; a closed stream is dropped for the rest of the run."""
        if self._closed:
            return
        try:
            self.stream.write(text)
            self.stream.flush()
        except BrokenPipeError:
            self._closed = True
            self.live = False
            _discard_further_output(self.stream)
            sys.stderr.write("warning: output stream closed; training goes on, "
                             "its log is in metrics.jsonl\n")
            sys.stderr.flush()

    def info(self, text: str, **fields) -> None:
        """A one-off message (start, resume, final summary)."""
        if self.mode == "json":
            self._emit(json_line("info", message=text, **fields))
        elif self.mode == "text":
            self._emit(f"{local_time()} {one_line(text)}")

    def warn(self, text: str) -> None:
        """A warning: shown in every mode, on stderr for text and quiet."""
        if self.mode == "json":
            self._emit(json_line("warning", message=text))
        else:
            sys.stderr.write(f"{local_time()} warning: {one_line(text)}\n")
            sys.stderr.flush()

    def record(self, record: dict, epochs: int, per_epoch: bool) -> None:
        """One evaluation: a metrics record from ``metrics.jsonl``."""
        if self.mode == "json":
            self._emit(json_line("eval", **record))
            return
        if self.mode != "text":
            return
        parts = [local_time(), f"epoch {record['epoch']}/{epochs}"]
        if not per_epoch:
            parts.append(f"step {record['step']}")
        parts += [f"{label} {record[key]:{fmt}}" for key, label, fmt in FIELDS if key in record]
        parts.append(f"lr {record['lr']:.1e}")
        parts.append(f"{record['seconds']:.1f}s")
        self._emit(" ".join(parts))

    def progress(self, epoch: int, epochs: int, batch: int, batches: int, loss: float) -> None:
        """Redraw the in-epoch progress bar (terminals only)."""
        if not self.live:
            return
        width = 24
        filled = width * batch // batches
        bar = "#" * filled + "-" * (width - filled)
        self._write(f"\repoch {epoch}/{epochs} [{bar}] {batch}/{batches} loss {loss:.4f}")
        self._bar_shown = True


def local_time() -> str:
    """The local time to the second, as text log lines start: ``2026-11-30 15:54:24``."""
    return datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")


def json_line(event: str, **fields) -> str:
    """One JSON log line: ``{"time": "2026-11-30T15:54:24+01:00", "event": ..., **fields}``."""
    now = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    return json.dumps({"time": now, "event": event, **fields})


def _discard_further_output(stream) -> None:
    """Point a closed stream's file descriptor at /dev/null, so that the flush at
    interpreter exit does not fail again (what the Python docs advise for SIGPIPE)."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)
