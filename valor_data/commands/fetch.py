"""``valor-data fetch audioset|youku|urls`` and ``valor-data fetch --status WORKDIR``."""

from __future__ import annotations

import functools

import click

from valor_data.commands.common import csv_list, pipeline_option, split_spec, workdir_option
from valor_data.commands.manifest import YOUKU_BASE_HELP
from valor_data.sources.audioset import YOUTUBE_URL


def _run_options(fn):
    """Options every fetch subcommand shares (flags override the pipeline's ``fetch:`` section)."""
    options = [
        workdir_option, pipeline_option,
        click.option("--manifest", "manifest_file", type=click.Path(exists=True, dir_okay=False),
                     help="Use this clip table (copied to WORKDIR/manifest.parquet)."),
        click.option("--limit", type=int, help="Fetch at most N clips this run (a trial run)."),
        click.option("--retry-failed", is_flag=False, flag_value="default", metavar="[NAMES]",
                     help="Also rerun failed clips: alone, the retryable statuses (failed_transient, rate_limited, "
                          "blocked); with names, exactly the statuses and error classes named, e.g. "
                          "blocked,rate_limited or NoFormats,HTTP403."),
        click.option("--distributor", type=click.Choice(["local", "ray"]), default="local", show_default=True),
        click.option("--ray-address", help="Ray cluster address (--distributor ray)."),
        click.option("--workers", type=int, help="Worker processes (0: one per CPU)."),
        click.option("--threads", type=int, help="Clips in flight per worker."),
        click.option("--task-size", type=int, help="Clips per task (one result table each)."),
        click.option("--max-short-side", type=int, help="Scale video so its short side is at most this."),
        click.option("--max-fps", type=float, help="Cap the video frame rate."),
        click.option("--audio-rate", type=int, help="FLAC sample rate (Hz)."),
        click.option("--media-url", help="fsspec URL for the media (default WORKDIR/media)."),
        click.option("--allow-file-urls", is_flag=True, default=None, help="Accept file:// URLs."),
        click.option("--cookies", type=click.Path(exists=True, dir_okay=False), help="cookies.txt for yt-dlp."),
        click.option("--proxy", help="Proxy URL for yt-dlp and ffmpeg."),
        click.option("--rate-limit", help="Download rate limit for yt-dlp section downloads, e.g. 2M."),
        click.option("--sleep", type=float, help="Seconds each thread pauses before resolving a YouTube clip."),
        click.option("--no-progress", is_flag=True, help="No progress bar."),
        click.option("--js-runtimes", help="JS runtimes yt-dlp may use for YouTube's challenges, comma-separated, "
                     "each NAME or NAME:PATH (deno, node, quickjs, bun; \"\" for none)."),
        click.option("--remote-components", help="What yt-dlp may download to solve challenges, comma-separated "
                     "(ejs:github, ejs:npm); not needed with yt-dlp-ejs installed."),
        click.option("--player-clients", help="YouTube player clients to try in turn on a 403 or no formats, "
                     "comma-separated (e.g. tv,web_embedded,web_safari)."),
        click.option("--identities", "identities_file", type=click.Path(exists=True, dir_okay=False),
                     help="YAML list of YouTube identities (name, proxy, cookies_file, source_address, "
                          "videos_per_hour, min_gap_s); replaces fetch.youtube.identities."),
        click.option("--videos-per-hour", type=float,
                     help="Resolve budget per identity (default 1,500 with cookies, 250 without)."),
        click.option("--min-gap", type=float, help="Seconds between two resolves of one identity (default 1)."),
        click.option("--plan", is_flag=True, help="Print what the run would fetch and how long the budgets "
                     "make it take, then exit without fetching."),
        click.option("--partition", metavar="I/N", help="Only the clips whose video id hashes to I of N (one "
                     "machine of N sharing the manifest; join the work dirs with valor-data merge)."),
        click.option("--skip-archive", type=click.Path(exists=True, dir_okay=False),
                     help="Leave out the YouTube videos listed in this yt-dlp download archive."),
        click.option("--archive-export", type=click.Path(dir_okay=False),
                     help="Afterwards, write the YouTube videos whose every clip is ok as a yt-dlp download archive."),
        click.option("--skip-doctor", is_flag=True,
                     help="Fetch YouTube clips even when yt-dlp's JS challenge solver does not run."),
    ]
    return functools.reduce(lambda f, option: option(f), reversed(options), fn)


def _fetch(workdir, pipeline, opts: dict) -> None:
    """Load the config, run the fetch, print the summary table."""
    from valor_data.config import load_pipeline
    from valor_data.fetch import load_fetch_config, run_fetch
    from valor_data.fetch.archive import export_archive, read_archive
    from valor_data.fetch.identity import load_identities
    from valor_data.fetch.run import plan_fetch
    from valor_data.fetch.scope import Partition, Scope

    overrides = {k: opts[k] for k in ("workers", "threads", "task_size", "max_short_side", "max_fps", "audio_rate",
                                      "media_url", "allow_file_urls")}
    youtube = {"cookies_file": opts["cookies"], "proxy": opts["proxy"], "rate_limit": opts["rate_limit"],
               **{key: csv_list(opts[key]) for key in ("js_runtimes", "remote_components", "player_clients")
                  if opts[key] is not None},
               "sleep_s": opts["sleep"], "videos_per_hour": opts["videos_per_hour"], "min_gap_s": opts["min_gap"],
               "identities": load_identities(opts["identities_file"]) if opts["identities_file"] else None}
    cfg = load_fetch_config(load_pipeline(pipeline), overrides, youtube)
    scope = Scope(Partition.parse(opts["partition"]) if opts["partition"] else None,
                  read_archive(opts["skip_archive"]) if opts["skip_archive"] else frozenset())
    if opts["plan"]:
        click.echo("\n".join(plan_fetch(workdir, cfg, opts["limit"], opts["retry_failed"], scope)))
        return
    summary = run_fetch(workdir, cfg, opts["limit"], opts["retry_failed"], opts["distributor"], opts["ray_address"],
                        progress=not opts["no_progress"], scope=scope, preflight=not opts["skip_doctor"])
    click.echo("\n".join(summary.lines()))
    click.echo(f"table: {workdir.path('fetch.parquet')}")
    if opts["archive_export"]:
        count = export_archive(workdir, opts["archive_export"])
        click.echo(f"download archive: {count:,} video(s) in {opts['archive_export']}")


@click.group(invoke_without_command=True)
@click.option("--status", "status_dir", type=click.Path(exists=True, file_okay=False),
              help="Print the progress of a fetch in WORKDIR (running or finished) and exit.")
@click.pass_context
def fetch(ctx, status_dir) -> None:
    """Fetch every manifest clip into WORKDIR/media as MP4 (H.264/AAC) + FLAC, resumably."""
    if ctx.invoked_subcommand is None:
        if not status_dir:
            click.echo(ctx.get_help())
            return
        from valor_data.fetch import fetch_status
        from valor_data.workdir import Workdir

        click.echo("\n".join(fetch_status(Workdir.create(status_dir))))


@fetch.command("audioset")
@click.option("--subset", "subsets", default="balanced_train,eval", show_default=True,
              help="Subsets whose official metadata to download when WORKDIR has no manifest.")
@click.option("--metadata-base-url", help="Mirror of the official AudioSet metadata files.")
@click.option("--url-template", default=YOUTUBE_URL, show_default=True, help="Media URL per video id.")
@_run_options
def audioset(subsets, metadata_base_url, url_template, workdir, pipeline, manifest_file, **opts):
    """AudioSet clips via yt-dlp (builds the manifest from the official metadata if needed)."""
    from valor_data.fetch import prepare

    if manifest_file:
        prepare.use_manifest(workdir, manifest_file)
    prepare.audioset_manifest(workdir, csv_list(subsets), metadata_base_url, url_template)
    _fetch(workdir, pipeline, opts)


@fetch.command("youku")
@click.argument("csvs", nargs=-1)
@click.option("--base-url", help=YOUKU_BASE_HELP)
@click.option("--modelscope", "use_modelscope", is_flag=True,
              help="Download the files with the ModelScope SDK (the 'modelscope' extra, logged in) into "
                   "WORKDIR/raw/youku first; a rerun downloads only what is missing.")
@_run_options
def youku(csvs, base_url, use_modelscope, workdir, pipeline, manifest_file, **opts):
    """Youku-mPLUG files (CSVs + --base-url or --modelscope when WORKDIR has no manifest)."""
    from valor_data.fetch import prepare

    if manifest_file:
        prepare.use_manifest(workdir, manifest_file)
    specs = [split_spec(c) for c in csvs]
    if use_modelscope:
        click.echo(prepare.youku_modelscope(workdir, specs, base_url, opts["limit"]).line())
    else:
        prepare.youku_manifest(workdir, specs, base_url)
    _fetch(workdir, pipeline, opts)


@fetch.command("urls")
@click.argument("files", nargs=-1)
@_run_options
def urls(files, workdir, pipeline, manifest_file, **opts):
    """Media from URL lists (csv, tsv, jsonl, parquet) when WORKDIR has no manifest."""
    from valor_data.fetch import prepare

    if manifest_file:
        prepare.use_manifest(workdir, manifest_file)
    prepare.urls_manifest(workdir, [split_spec(f) for f in files])
    _fetch(workdir, pipeline, opts)
