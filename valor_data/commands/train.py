"""``valor-data train``: the reference VALOR trainer over a work dir's shards, and ``--validate``."""

from __future__ import annotations

import json

import click

from valor_data.commands.common import pipeline_option
from valor_data.config import load_pipeline, load_section
from valor_data.workdir import Workdir


def _config(pipeline, flags: dict, model_items: tuple[str, ...]):
    """TrainConfig from the pipeline's ``train:`` section, flags and ``--model KEY=VALUE`` items."""
    import yaml

    from valor_data.train.config import TrainConfig

    overrides = {**flags, "shards": list(flags["shards"]) or None, "eval_shards": list(flags["eval_shards"]) or None}
    cfg = load_section(TrainConfig, load_pipeline(pipeline), "train", overrides)
    for item in model_items:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--model")
        cfg.model = {**cfg.model, key.strip(): yaml.safe_load(value)}
    return cfg


def _echo_verdict(report: dict, root) -> None:
    """The validation checks; exit status 1 when the data fails. (Empty on torchrun ranks > 0.)"""
    if not report:
        return
    for line in report["reasons"]:
        click.echo(line)
    rates = report["rates"]
    click.echo(f"error rates of this verdict: a sound dataset fails with probability {rates['sound_fails']:.1e}, "
               f"a broken one passes with probability at most {rates['broken_passes']:.1e}")
    click.echo(f"{'PASSED' if report['passed'] else 'FAILED'}: {root / 'validation.json'}")
    if not report["passed"]:
        raise click.exceptions.Exit(1)


def _echo_result(result: dict, as_json: bool) -> None:
    if not result:
        return
    if as_json:
        click.echo(json.dumps(result, indent=1, ensure_ascii=False))
        return
    click.echo(f"checkpoint: {result['checkpoint']} (step {result['step']})")
    if "retrieval" not in result:
        return
    click.echo(f"evaluated on {result['split']}: {result['n']} clips, {result['frames']} frames each "
               f"({result['frame_resize']})")
    for direction, name in (("retrieval", "t2{}"), ("retrieval_c2t", "{}2t")):
        for group, scores in result[direction].items():
            click.echo(f"{name.format(group[1:])}: R@1 {scores['r1']:.3f} R@5 {scores['r5']:.3f} "
                       f"R@10 {scores['r10']:.3f} median rank {scores['median_rank']:.0f} "
                       f"(chance R@1 {result['chance']['r1']:.3f})")
    cap = result["captioning"]
    click.echo(f"captioning: BLEU-4 {cap['bleu4']:.3f} ROUGE-L {cap['rouge_l']:.3f} CIDEr {cap['cider']:.3f}")
    if "classification" in result:
        cls = result["classification"]
        click.echo(f"classification: top-1 {cls['top1']:.3f} top-5 {cls['top5']:.3f} ({cls['classes']} classes; "
                   f"chance {cls['chance']['top1']:.3f} / {cls['chance']['top5']:.3f})")


@click.command()
@click.argument("workdir_arg", metavar="[WORKDIR]", required=False, type=click.Path(file_okay=False))
@click.option("-w", "--workdir", envvar="VALOR_WORKDIR", type=click.Path(file_okay=False),
              help="Work directory with shards/ (env VALOR_WORKDIR); may also be given as WORKDIR.")
@pipeline_option
@click.option("--validate", is_flag=True, help="Train briefly, evaluate every modality and the captions, audio "
              "and video controls; write WORKDIR/validation.json; exit 1 if the data fails.")
@click.option("--eval-only", is_flag=True, help="Only evaluate --checkpoint (default WORKDIR/train/ckpt.pt).")
@click.option("--checkpoint", type=click.Path(dir_okay=False), help="Checkpoint for --eval-only.")
@click.option("--preset", type=click.Choice(["tiny", "base"]))
@click.option("--steps", type=int)
@click.option("--batch-size", type=int, help="Per process and micro-step.")
@click.option("--grad-accum", type=int)
@click.option("--recipe", type=click.Choice(["tiny", "pretrain", "finetune"]),
              help="Optimisation as VALOR's pretraining or VALOR-32K fine-tuning (default: tiny for tiny, "
              "pretrain for base).")
@click.option("--lr", type=float, help="Learning rate (default: the recipe's).")
@click.option("--warmup-ratio", type=float, help="Share of the steps with a linear warmup (VALOR: 0.1).")
@click.option("--warmup-steps", type=int, help="An explicit warmup length instead of the ratio.")
@click.option("--frames", type=int, help="Frames per training clip (VALOR: 4; default: the recipe's, tiny: the "
              "model's).")
@click.option("--eval-frames", type=int, help="Frames per evaluation clip (VALOR-32K test: 8; default: the recipe's, "
              "tiny: the model's).")
@click.option("--frame-resize", type=click.Choice(["squash", "crop"]),
              help="squash: each frame scaled to the model's size, aspect ratio not kept (VALOR's); crop: short "
              "side to the size, centre crop (default: squash for pretrain/finetune, crop for tiny).")
@click.option("--workers", type=int, help="DataLoader workers per process.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--seed", type=int)
@click.option("--train-split")
@click.option("--eval-split")
@click.option("--shards", multiple=True, help="Training tars, globs or shard lists (repeatable).")
@click.option("--eval-shards", multiple=True, help="Evaluation tars, globs or shard lists (repeatable).")
@click.option("--text-init", help="Local Hugging Face BERT checkpoint folder (base).")
@click.option("--vision-init", help="Local Hugging Face CLIP checkpoint folder (base).")
@click.option("--audio-init", help="Local Hugging Face AST checkpoint folder (base).")
@click.option("--vocab", help="Local BERT vocab.txt (e.g. a Chinese one); default: built from the captions.")
@click.option("--eval-max-samples", type=int, help="Evaluate on at most this many clips (0: all).")
@click.option("--caption-samples", type=int, help="Clips captioned for BLEU/ROUGE/CIDEr (0: all).")
@click.option("--beam-size", type=int, help="Beam width for captioning (1: greedy; VALOR: 3).")
@click.option("--max-caption-tokens", type=int, help="Most tokens a generated caption has (VALOR: 30).")
@click.option("--length-penalty", type=float, help="Rank beams by log-prob / length**this (VALOR: 0, the sum).")
@click.option("--log-every", type=int)
@click.option("--save-every", type=int)
@click.option("--resume/--no-resume", default=None, help="Continue from the run's checkpoint (default on).")
@click.option("--model", "model_items", multiple=True, metavar="KEY=VALUE",
              help="Model shape override (repeatable), e.g. --model frames=8 --model fine_grained=false.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def train(workdir_arg, workdir, pipeline, validate, eval_only, checkpoint, model_items, as_json, **flags):
    """Train the VALOR reference model (MGA + MGC) on WORKDIR/shards and evaluate it."""
    if not (workdir_arg or workdir):
        raise click.UsageError("give the work directory as WORKDIR or -w/--workdir")
    root = Workdir.create(workdir_arg or workdir).root
    cfg = _config(pipeline, flags, model_items)
    from valor_data.train import api

    if validate:
        _echo_verdict(api.validate(root, cfg), root)
    elif eval_only:
        _echo_result(api.evaluate_checkpoint(root, cfg, checkpoint), as_json)
    else:
        _echo_result(api.train_and_evaluate(root, cfg), as_json)
