"""Find and run ffmpeg. Arguments are always a list: never a shell."""

from __future__ import annotations

import functools
import logging
import os
import shutil
import subprocess
from collections.abc import Sequence

from valor_data.errors import ValorError

log = logging.getLogger(__name__)


class FFmpegError(ValorError):
    """ffmpeg exited non-zero; ``stderr_tail`` holds its last lines."""

    def __init__(self, message: str, returncode: int | None = None, stderr_tail: str = ""):
        super().__init__(message)
        self.returncode = returncode
        self.stderr_tail = stderr_tail


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


def run_ffmpeg(args: Sequence[str], timeout: float | None = None) -> subprocess.CompletedProcess:
    """Run ``ffmpeg -nostdin -hide_banner -loglevel error <args>``; raise FFmpegError on failure."""
    cmd = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", *map(str, args)]
    log.debug("ffmpeg %s", " ".join(cmd[1:]))
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise FFmpegError(f"ffmpeg timed out after {timeout} s", None) from None
    if proc.returncode != 0:
        tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-5:]
        raise FFmpegError(f"ffmpeg failed (exit {proc.returncode}): {' | '.join(tail)}",
                          proc.returncode, "\n".join(tail))
    return proc
