"""``valor-data synth make|serve``: synthetic learnable clips and a loopback server."""

from __future__ import annotations

import time
from collections import Counter

import click

from valor_data.commands.common import csv_list
from valor_data.synth.defects import DEFECTS


def parse_defects(value: str) -> dict[str, int]:
    """``all`` | ``all=3`` | ``black=2,frozen`` | ``none`` -> {defect: count}."""
    counts: dict[str, int] = {}
    for part in csv_list(value):
        name, _, n = part.partition("=")
        count = int(n) if n else 1
        for defect in (DEFECTS if name == "all" else () if name == "none" else (name,)):
            counts[defect] = count
    return counts


def parse_range(value: str) -> tuple[float, float]:
    """``30-60`` -> (30, 60); ``10`` -> (10, 10)."""
    lo, _, hi = value.partition("-")
    return float(lo), float(hi or lo)


@click.group()
def synth() -> None:
    """Synthetic clips whose captions describe them (and defective ones), served on loopback."""


@synth.command("make")
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--clips", default=50, show_default=True, help="Clean clips.")
@click.option("--defects", default="none", show_default=True,
              help=f"'all', 'all=N', or NAME[=N],... from: {', '.join(DEFECTS)}.")
@click.option("--seed", default=0, show_default=True)
@click.option("--lang", type=click.Choice(["en", "zh"]), default="en", show_default=True,
              help="en: AudioSet layout (segments of longer sources); zh: Youku-mPLUG layout (whole clips).")
@click.option("--source-seconds", default=None, help="Source length range MIN-MAX [en: 30-60, zh: 10-20].")
@click.option("--segment-seconds", default=10.0, show_default=True)
@click.option("--formats", type=click.Choice(["mp4", "varied"]), default="mp4", show_default=True)
@click.option("--subsets", default=None,
              help="Subsets and their shares, e.g. unbalanced_train=6,balanced_train=3,eval=1 "
                   "[en: balanced_train; zh: every Youku-mPLUG CSV].")
@click.option("--workers", default=0, help="Parallel ffmpeg processes (0: one per CPU).")
def make(out, clips, defects, seed, lang, source_seconds, segment_seconds, formats, subsets, workers):
    """Render a labelled corpus into OUT with truth.jsonl and AudioSet- or Youku-layout manifests."""
    from valor_data.synth.corpus import SynthConfig, make_corpus

    shares = {name: float(share or 1) for name, _, share in (s.partition("=") for s in csv_list(subsets))}
    cfg = SynthConfig(clips=clips, defects=parse_defects(defects), seed=seed, lang=lang,
                      source_seconds=parse_range(source_seconds or ("10-20" if lang == "zh" else "30-60")),
                      segment_seconds=segment_seconds, formats=formats, subsets=shares or None,
                      workers=workers)
    started = time.monotonic()
    made = make_corpus(out, cfg)
    click.echo(f"made {len(made)} clips in {out} ({time.monotonic() - started:.1f} s)")
    for kind, n in sorted(Counter(c.kind for c in made).items()):
        click.echo(f"  {kind}: {n}")


@synth.command("serve")
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@click.option("--port", default=0, help="Port on 127.0.0.1 (0: any free port).")
@click.option("--faults", type=click.Path(exists=True, dir_okay=False), help="Fault rules (JSON list).")
@click.option("--write-urls", type=click.Path(dir_okay=False), help="Also write a URL list of the corpus.")
def serve(folder, port, faults, write_urls):
    """Serve FOLDER on 127.0.0.1 with Range support until interrupted."""
    from valor_data.synth.corpus import write_url_list
    from valor_data.synth.server import LoopbackServer

    server = LoopbackServer(folder, port)
    if faults:
        server.load_faults(faults)
    if write_urls:
        write_url_list(folder, server.url, write_urls)
    click.echo(f"serving {folder} at {server.url} (Ctrl-C to stop)")
    server.start()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()
