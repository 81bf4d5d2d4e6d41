"""The ``valor-data`` command: a click group whose subcommands load lazily.

Each subcommand lives in ``valor_data/commands/<stage>.py`` as a thin shell over a
library function; heavy modules (torch, ray) are imported only when a command runs.
"""

from __future__ import annotations

import importlib
import logging
import sys

import click

from valor_data import __version__
from valor_data.errors import ValorError

# name -> "module:attribute" of the click command
COMMANDS = {
    "fetch": "valor_data.commands.fetch:fetch",
    "filter": "valor_data.commands.filter:filter_",
    "manifest": "valor_data.commands.manifest:manifest",
    "report": "valor_data.commands.report:report",
    "synth": "valor_data.commands.synth:synth",
    "split": "valor_data.commands.split:split",
    "build-shards": "valor_data.commands.shards:build_shards",
    "verify-splits": "valor_data.commands.shards:verify_splits",
    "train": "valor_data.commands.train:train",
    "demo": "valor_data.commands.demo:demo",
    "doctor": "valor_data.commands.doctor:doctor",
    "merge": "valor_data.commands.merge:merge",
    "score": "valor_data.commands.score:score",
    "caption": "valor_data.commands.caption:caption",
}


class LazyGroup(click.Group):
    """Import a subcommand's module only when that subcommand is used or listed."""

    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        target = COMMANDS.get(name)
        if target is None:
            return None
        module, attr = target.split(":")
        return getattr(importlib.import_module(module), attr)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="valor-data")
@click.option("-v", "--verbose", count=True, help="-v: progress logs; -vv: debug logs and tracebacks.")
@click.pass_context
def cli(ctx: click.Context, verbose: int) -> None:
    """Build leak-free vision-audio-language datasets (VALOR-1M/32K, Youku-mPLUG) as WebDataset shards.

    Stages read and write tables in a work directory (--workdir), keyed by clip_id.
    """
    ctx.ensure_object(dict)
    ctx.obj["verbose"] = verbose
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turning errors into one line and a non-zero exit."""
    verbose = any(a in ("-v", "-vv", "--verbose") for a in (argv if argv is not None else sys.argv[1:]))
    try:
        status = cli.main(args=argv, prog_name="valor-data", standalone_mode=False)
    except click.exceptions.Exit as exc:
        status = exc.exit_code
    except click.ClickException as exc:
        exc.show()
        status = exc.exit_code
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        status = 130
    except (ValorError, OSError, ValueError) as exc:
        if verbose:
            raise
        click.echo(f"error: {exc}", err=True)
        status = 1
    # without standalone mode, ctx.exit(n) makes cli.main return n
    sys.exit(status if isinstance(status, int) else 0)


if __name__ == "__main__":
    main()
