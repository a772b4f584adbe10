"""TensorFlow's C++ start-up output, kept out of the terminal and out of the JSON log stream.

Loading TensorFlow writes straight to file descriptor 2, below Python's logging: absl's
"All log messages before absl::InitializeLog() is called are written to STDERR", oneDNN's
round-off notice, the CPU-feature note, "Could not find cuda drivers", and on a machine without
a GPU "failed call to cuInit". `TF_CPP_MIN_LOG_LEVEL` does not silence the lines written before
absl's log is initialised (TensorFlow 2.21: they show at every level), so they are captured at
the descriptor while TensorFlow and Keras load and the devices are first listed, then:

- logged as one `tensorflow start-up` event at debug level (`ABLATE_LOG_LEVEL=debug`), so a
  worker's log stays one JSON object a line and still has them when asked;
- or, with `echo` (`ablate run -v`), written back to stderr as they were.

Lines that are not TensorFlow's (a Python warning, another log line written meanwhile) are
written back to stderr at once. The text is kept (`startup_output`): when a process pinned to a
GPU finds none, `workers.process_setup` quotes TensorFlow's own load error from it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import sys
import tempfile
from collections.abc import Iterator

import structlog

log = structlog.get_logger(__name__)

# absl's record format: severity, MMDD, time, thread id, file:line] message
_ABSL_RECORD = re.compile(r"^[IWEF]\d{4} [\d:.]+ +\d+ [\w./-]+:\d+\] ")
_ABSL_PREAMBLE = "WARNING: All log messages before absl::InitializeLog() is called"
# Lines that start a record of someone else: a JSON log line, Celery's `[2026-...` format,
# structlog's console format, a Python warning (`path.py:12: UserWarning: ...`).
_OTHER_RECORD = re.compile(r"^(\{|\[\d{4}-|\d{4}-\d\d-\d\d[T ]|\S+\.py:\d+: \w+)")

_output: list[str] = []
_loaded = False


def startup_output() -> str:
    """TensorFlow's start-up lines captured in this process so far (empty when none)."""
    return "".join(_output)


def load_tensorflow(echo: bool = False) -> None:
    """Import TensorFlow and Keras and list the GPUs with their start-up output captured (see
    the module's docstring); once per process, before anything else imports TensorFlow. A
    process that already imported it pays nothing and captures nothing."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    if "tensorflow" in sys.modules:
        return
    with captured(echo):
        import keras  # noqa: F401  (imports TensorFlow)
        import tensorflow as tf

        tf.config.list_physical_devices("GPU")  # loads CUDA: its own burst of lines


@contextlib.contextmanager
def captured(echo: bool = False) -> Iterator[None]:
    """Descriptor 2 into a temporary file for the block; TensorFlow's lines then go to the log
    (or back to stderr with `echo`), every other line back to stderr."""
    sys.stderr.flush()
    with tempfile.TemporaryFile() as sink:
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            _flush_c_stdio()  # the C++ log may sit in the C library's buffer
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text = sink.read().decode(errors="replace")
            _dispatch(text, echo)


def split_output(text: str) -> tuple[list[str], list[str]]:
    """(TensorFlow's lines, everyone else's), each with its line ending. A line that follows a
    TensorFlow record and starts no record of its own continues it (the CPU-feature note's
    second line)."""
    ours, theirs = [], []
    in_record = False
    for line in text.splitlines(keepends=True):
        if _ABSL_RECORD.match(line) or line.startswith(_ABSL_PREAMBLE):
            in_record = True
        elif not line.strip() or _OTHER_RECORD.match(line):
            in_record = False
        (ours if in_record else theirs).append(line)
    return ours, theirs


def _dispatch(text: str, echo: bool) -> None:
    ours, theirs = split_output(text)
    _output.extend(ours)
    if echo:  # as it was written, in its order
        if text:
            os.write(2, text.encode())
        return
    if theirs:
        os.write(2, "".join(theirs).encode())
    if ours:
        log.debug("tensorflow start-up", output="".join(ours).rstrip("\n"))


def _flush_c_stdio() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).fflush(None)
