"""``valor-data doctor``: a table of readiness checks; exit 1 on a blocker."""

from __future__ import annotations

import json

import click

from valor_data.commands.common import pipeline_option, workdir_option


@click.command("doctor")
@workdir_option
@pipeline_option
@click.option("--online", is_flag=True, help="Also resolve the canary videos and cut one second of each.")
@click.option("--canary", "canaries", multiple=True, help="A canary URL (repeatable; overrides doctor.canaries).")
@click.option("--cookies", type=click.Path(dir_okay=False), help="cookies.txt to check (overrides fetch.youtube).")
@click.option("--proxy", help="Proxy URL the run will use (overrides fetch.youtube).")
@click.option("--distributor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="ray: also check that Ray imports.")
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
@click.pass_context
def doctor(ctx, workdir, pipeline, online, canaries, cookies, proxy, distributor, as_json) -> None:
    """Check yt-dlp, its JS challenge solver, ffmpeg, cookies, disk, PyAV (and Ray) before a fetch."""
    from valor_data import doctor as lib
    from valor_data.config import load_pipeline, load_section
    from valor_data.fetch import load_fetch_config

    config = load_pipeline(pipeline)
    cfg = load_fetch_config(config, {}, {"cookies_file": cookies, "proxy": proxy})
    settings = load_section(lib.DoctorConfig, config, "doctor", {"canaries": list(canaries) or None})
    checks = lib.run_doctor(workdir, cfg, settings, online=online, ray=distributor == "ray")
    click.echo(json.dumps(lib.as_json(checks), indent=2) if as_json else "\n".join(lib.table(checks)))
    ctx.exit(1 if lib.failed(checks) else 0)
