"""Distribute a stage's clips as resumable tasks over a local pool, Ray or torchrun's ranks."""

from valor_data.distribute.runner import DISTRIBUTORS, run_tasks, torchrun_rank
from valor_data.distribute.tasks import Task, collect, finished, plan, read_results, stage_lock

__all__ = ["DISTRIBUTORS", "Task", "collect", "finished", "plan", "read_results", "run_tasks", "stage_lock",
           "torchrun_rank"]
