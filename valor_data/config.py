"""Stage configs: small dataclasses filled from a section of a pipeline YAML.

A pipeline file (``pipelines/*.yaml``) has one mapping per stage (``fetch:``,
``filter:``, ``split:``, ...). Each stage owns a dataclass; ``load_section`` builds
it from the file and then applies CLI overrides (flags left unset are ``None`` and
do not override).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from valor_data.errors import ConfigError

T = TypeVar("T")


def load_pipeline(path: str | os.PathLike | None) -> dict[str, Any]:
    """Read a pipeline YAML (``None`` gives an empty pipeline: all defaults)."""
    if path is None:
        return {}
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"pipeline file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a pipeline must be a mapping of stage sections")
    return data


def load_section(cls: type[T], pipeline: Mapping[str, Any], section: str,
                 overrides: Mapping[str, Any] | None = None) -> T:
    """Build dataclass ``cls`` from ``pipeline[section]`` plus non-None ``overrides``."""
    values = dict(pipeline.get(section) or {})
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown key(s) in '{section}': {', '.join(unknown)} "
                          f"(known: {', '.join(sorted(known))})")
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"bad '{section}' settings: {exc}") from None


def as_dict(config: Any) -> dict[str, Any]:
    """A config dataclass as a plain dict (for logs, dataset cards, reports)."""
    return dataclasses.asdict(config)
