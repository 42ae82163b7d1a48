"""Output a user can read: shearc's own lines on the console, the libraries' in a log file of the run.

    with run_output(run_dir, console) as say:   # RUN_DIR/run.log: shearc's lines; RUN_DIR/libraries.log: the rest
        say("stage prune ...")

Inside the block, the libraries a run drives (transformers, lm-eval, torch, peft, datasets, ...) log to
RUN_DIR/libraries.log instead of the console: their loggers propagate to the root logger, which writes the
file; Python warnings are captured into the same file; transformers' and huggingface_hub's progress bars are
off, and a library that writes to stderr itself (lm-eval's request bars) does so inside `into_log`. shearc's
own warnings (loggers under `shearc`) stay on the console as `warning: ...` lines. Everything is put back as
it was when the block ends, so a process (a test, a notebook) that runs a plan keeps its own logging.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from rich.console import Console

LIBRARIES_LOG = "libraries.log"
RUN_LOG = "run.log"
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class _Tee:
    """The console's stream and the run's own log (without terminal colours), the log opened at its first line:
    a run refused before it says anything leaves no file behind."""

    def __init__(self, stream: IO[str], path: Path) -> None:
        self.stream, self.path = stream, path
        self.log: IO[str] | None = None

    def write(self, text: str) -> int:
        if self.log is None:
            self.log = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (closed by run_output)
        self.log.write(_ANSI.sub("", text))
        self.log.flush()
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()

    def close(self) -> None:
        if self.log is not None:
            self.log.close()


class _ShearcWarnings(logging.Handler):
    def __init__(self, say: Callable[[str], None]) -> None:
        super().__init__(logging.WARNING)
        self.say = say

    def emit(self, record: logging.LogRecord) -> None:
        self.say(f"{record.levelname.lower()}: {record.getMessage()}")


@contextlib.contextmanager
def run_output(run_dir: Path, console: Console) -> Iterator[Callable[[str], None]]:
    """`say(text)` prints a line of shearc's own; see the module's docstring for the rest."""
    tee = _Tee(console.file, run_dir / RUN_LOG)
    with contextlib.closing(tee), _libraries_logged_to(run_dir / LIBRARIES_LOG):
        mine = Console(file=tee, soft_wrap=True, quiet=console.quiet, highlight=False)

        def say(text: str) -> None:
            mine.print(text, markup=False)

        shearc_logger = logging.getLogger("shearc")
        handler, propagate = _ShearcWarnings(say), shearc_logger.propagate
        shearc_logger.addHandler(handler)
        shearc_logger.propagate = False
        try:
            yield say
        finally:
            shearc_logger.removeHandler(handler)
            shearc_logger.propagate = propagate


@contextlib.contextmanager
def _libraries_logged_to(path: Path) -> Iterator[None]:
    handler = logging.FileHandler(path, encoding="utf-8", delay=True)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    saved_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    capturing = getattr(logging, "_warnings_showwarning", None) is not None  # a caller's own captureWarnings
    logging.captureWarnings(True)
    restore = [_progress_bars_off()]  # first: importing transformers sets up the stderr handler routed next
    restore.extend(_route_library(name) for name in ("transformers", "lm_eval"))
    try:
        yield
    finally:
        for undo in reversed(restore):
            undo()
        logging.captureWarnings(capturing)
        root.removeHandler(handler)
        root.setLevel(saved_level)
        handler.close()


def _route_library(name: str) -> Callable[[], None]:
    """A library logger with handlers of its own (transformers' stderr handler; lm-eval's, once it set one up)
    sends its records to the root logger instead, for the block."""
    logger = logging.getLogger(name)
    saved: tuple[list[logging.Handler], bool] = (logger.handlers[:], logger.propagate)
    logger.handlers = [h for h in logger.handlers if not isinstance(h, logging.StreamHandler)]
    logger.propagate = True

    def undo() -> None:
        logger.handlers, logger.propagate = saved

    return undo


def _progress_bars_off() -> Callable[[], None]:
    import huggingface_hub.utils
    import transformers.utils.logging as transformers_logging

    transformers_on = transformers_logging.is_progress_bar_enabled()
    hub_on = not huggingface_hub.utils.are_progress_bars_disabled()
    transformers_logging.disable_progress_bar()
    huggingface_hub.utils.disable_progress_bars()

    def undo() -> None:
        if transformers_on:
            transformers_logging.enable_progress_bar()
        if hub_on:
            huggingface_hub.utils.enable_progress_bars()

    return undo


@contextlib.contextmanager
def into_log(run_dir: Path) -> Iterator[None]:
    """What a library writes to stderr itself goes to RUN_DIR/libraries.log: its progress bars (tqdm, on
    sys.stderr) and what the programs it starts print (lm-eval asks `git` for a commit, which says "fatal: not a
    git repository" outside one), so file descriptor 2 too."""
    with open(run_dir / LIBRARIES_LOG, "a", encoding="utf-8") as log:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(log.fileno(), 2)
        try:
            with contextlib.redirect_stderr(log):
                yield
        finally:
            log.flush()
            os.dup2(saved, 2)
            os.close(saved)
