"""Third-party start-up noise off, so a command's output is the project's own lines.

Imported first by the package: MediaPipe/TFLite and absl log through glog to stderr (read at their import, hence
environment defaults set before anything imports them), bitsandbytes warns through logging that an optional CPU
kernel is missing, and face_recognition_models imports the deprecated pkg_resources. A variable the user set
stays as it is. MediaPipe's native graphs ignore those variables, so its calls run inside `native_stderr_off`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings

for name, value in (("GLOG_minloglevel", "2"), ("TF_CPP_MIN_LOG_LEVEL", "3"), ("ABSL_MIN_LOG_LEVEL", "3")):
    os.environ.setdefault(name, value)
for logger in ("bitsandbytes", "absl"):
    logging.getLogger(logger).setLevel(logging.ERROR)
warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)


@contextlib.contextmanager
def native_stderr_off():
    """Drop what native code (MediaPipe's graphs: absl/glog lines, TFLite's delegate banner) writes to fd 2 inside
    the block; Python exceptions still propagate and are printed as usual after it."""
    import sys

    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # no real stderr (some notebook kernels): nothing to silence
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, fd)
        os.close(saved)
        os.close(devnull)
