"""How long `valor-data synth` takes for a 50-clip set with every defect, against the floor.

The floor is bare ffmpeg encoding the same total seconds of a plain lavfi test pattern
and tone with the same codecs, in the same run, with the same parallelism.

    .venv/bin/python bench/synth.py
"""

from __future__ import annotations

import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from valor_data.media.ffmpeg import run_ffmpeg
from valor_data.synth.corpus import SynthConfig, make_corpus
from valor_data.synth.defects import DEFECTS


def floor(seconds: list[float], out: Path) -> float:
    def encode(item):
        i, duration = item
        run_ffmpeg(["-y", "-f", "lavfi", "-i", f"testsrc2=s=426x240:r=25:d={duration}", "-f", "lavfi",
                    "-i", f"sine=f=440:r=44100:d={duration}", "-threads", "1", "-c:v", "libx264",
                    "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-aac_coder", "fast",
                    str(out / f"{i}.mp4")])

    started = time.monotonic()
    with ThreadPoolExecutor(os.cpu_count()) as pool:
        list(pool.map(encode, enumerate(seconds)))
    return time.monotonic() - started


def main() -> None:
    cfg = SynthConfig(clips=50 - len(DEFECTS), defects={d: 1 for d in DEFECTS}, seed=1)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.monotonic()
        clips = make_corpus(Path(tmp) / "corpus", cfg)
        synth_s = time.monotonic() - started
        total = [c.source_seconds for c in clips]
        (Path(tmp) / "floor").mkdir()
        floor_s = floor(total, Path(tmp) / "floor")
    print(f"synth: {len(clips)} clips, {sum(total):.0f} s of source video, {os.cpu_count()} cores")
    print(f"  valor-data synth      {synth_s:7.1f} s")
    print(f"  bare ffmpeg (floor)   {floor_s:7.1f} s")
    print(f"  ratio synth/floor     {synth_s / floor_s:7.2f}x")


if __name__ == "__main__":
    main()
