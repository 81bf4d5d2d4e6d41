"""The fetch stage: every manifest clip -> ``W/media/<2 hex>/<clip_id>.mp4`` and ``.flac``.

One ffmpeg pass per clip seeks into the remote streams (YouTube via yt-dlp's
``extract_info``, or a direct URL) and writes both outputs, which are checked and then
renamed into place together. Work is cut into tasks (``W/fetch/tasks/task-*.parquet``),
run on a local process pool or Ray, and merged into ``W/fetch.parquet``.

``fetch.parquet`` columns (one row per clip, the latest attempt wins):

- ``clip_id``, ``status`` (ok | unavailable | rate_limited | failed_transient | failed_permanent)
- ``error_class`` (short: HTTP404, HtmlPage, EmptyFile, ShortOutput, Network, Timeout, Unavailable, ...)
  and ``error`` (one line), null when ok
- ``attempts``, ``seconds`` (wall time, all attempts), ``bytes`` (mp4 + flac written)
- ``method`` (cut: one pass over the remote streams; section: yt-dlp section download;
  download: whole file over http then normalised; file: a local file URL)
- ``formats`` (chosen yt-dlp format ids such as ``134+140``; ``url``/``file`` for direct media)
- ``duration_s`` (measured output duration), ``source_duration_s`` (what the source declares)
- ``has_video``, ``has_audio`` (a source without audio gives an MP4 without audio and no FLAC),
  ``width``, ``height`` (of the MP4)
- ``source_bits_per_pixel`` (the source video's bitrate over its pixels per second, when ffmpeg
  reports all three) and ``source_decode_errors`` (decoder errors while reading the segment):
  what the re-encode hides, judged by the filter

Media paths are derived: ``Workdir.media_path(clip_id, "mp4" | "flac")``.
"""

from valor_data.fetch.config import FetchConfig, HttpConfig, YouTubeConfig, load_fetch_config
from valor_data.fetch.outcome import FETCH_SCHEMA, STATUSES, DiskFullError
from valor_data.fetch.run import FetchSummary, fetch_status, run_fetch

__all__ = ["FETCH_SCHEMA", "STATUSES", "DiskFullError", "FetchConfig", "FetchSummary", "HttpConfig",
           "YouTubeConfig", "fetch_status", "load_fetch_config", "run_fetch"]
