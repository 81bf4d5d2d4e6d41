"""Exceptions that the CLI reports as one clear line."""


class ValorError(Exception):
    """Base class for errors a user can act on (bad input, bad config, missing file)."""


class ConfigError(ValorError):
    """A pipeline YAML or a flag holds a value that cannot be used."""


class ManifestError(ValorError):
    """A metadata file cannot be read as a whole (truncated, wrong layout, strict mode)."""


class UnsafePathError(ValorError):
    """A path or id would escape the work directory or is not a safe name."""
