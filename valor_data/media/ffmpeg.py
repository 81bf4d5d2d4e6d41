"""Find and run ffmpeg. Arguments are always a list: never a shell."""

from __future__ import annotations

import functools
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Sequence

from valor_data.errors import ValorError

log = logging.getLogger(__name__)


class FFmpegError(ValorError):
    """ffmpeg exited non-zero; ``stderr_tail`` holds its last lines."""

    def __init__(self, message: str, returncode: int | None = None, stderr_tail: str = "", stderr: str = ""):
        super().__init__(message)
        self.returncode = returncode
        self.stderr_tail = stderr_tail
        self.stderr = stderr or stderr_tail


@functools.lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    """The ffmpeg to use: ``$VALOR_FFMPEG``, else the system one, else imageio-ffmpeg's."""
    override = os.environ.get("VALOR_FFMPEG")
    if override:
        if not (os.path.isfile(override) and os.access(override, os.X_OK)):
            raise ValorError(f"VALOR_FFMPEG={override} is not an executable file")
        return override
    system = shutil.which("ffmpeg")
    if system:
        return system
    try:
        import imageio_ffmpeg
    except ImportError:  # pragma: no cover - imageio-ffmpeg is a dependency
        raise ValorError("no ffmpeg found: install ffmpeg or the imageio-ffmpeg wheel") from None
    return imageio_ffmpeg.get_ffmpeg_exe()


@functools.lru_cache(maxsize=8)
def protocol_options(protocol: str) -> frozenset[str]:
    """The options this ffmpeg's ``protocol`` takes (``ffmpeg -h protocol=http``): builds differ."""
    try:
        proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-h", f"protocol={protocol}"], capture_output=True,
                              timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return frozenset()
    return frozenset(re.findall(r"^\s+-(\w+)\s", proc.stdout.decode("utf-8", "replace"), re.M))


def _die_with_parent() -> None:  # pragma: no cover - runs in the forked child
    """preexec_fn: have Linux kill ffmpeg when the process that started it dies."""
    _libc().prctl(1, 9)   # PR_SET_PDEATHSIG, SIGKILL


@functools.lru_cache(maxsize=1)
def _libc():
    import ctypes

    return ctypes.CDLL("libc.so.6", use_errno=True)


def run_ffmpeg(args: Sequence[str], timeout: float | None = None, loglevel: str = "error",
               die_with_parent: bool = False) -> subprocess.CompletedProcess:
    """Run ``ffmpeg -nostdin -hide_banner -loglevel <loglevel> <args>``; raise FFmpegError on failure.

    ``die_with_parent`` (Linux) kills ffmpeg when its caller is killed, so a killed run
    leaves no ffmpeg behind still writing files.
    """
    cmd = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", loglevel, *map(str, args)]
    log.debug("ffmpeg %s", " ".join(cmd[1:]))
    preexec = None
    if die_with_parent:
        try:
            _libc()   # load before forking
            preexec = _die_with_parent
        except OSError:   # not Linux
            preexec = None
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False, preexec_fn=preexec)
    except subprocess.TimeoutExpired:
        raise FFmpegError(f"ffmpeg timed out after {timeout} s", None) from None
    if proc.returncode != 0:
        stderr = proc.stderr.decode("utf-8", "replace").strip()
        tail = [line for line in stderr.splitlines() if line.strip()][-5:]
        raise FFmpegError(f"ffmpeg failed (exit {proc.returncode}): {' | '.join(tail)}",
                          proc.returncode, "\n".join(tail), stderr)
    return proc
