"""`DataOptions`: the operator's settings that decide which dataset files may be read and how.

Read once from the settings where a process starts (the CLI, the client, a worker's task, the
reporter) and passed down; the dataset modules never read the environment themselves. The
defaults are the settings' own, so a caller without settings (a test, a script) gets what an
unconfigured machine gets.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.settings import Settings


def _default(name: str):
    return Settings.model_fields[name].default


@dataclass(frozen=True)
class DataOptions:
    data_roots: str | None = _default("data_roots")
    """ABLATE_DATA_ROOTS: folders (separated by ':') that local dataset paths must stay inside."""
    max_dataset_bytes: int = _default("max_dataset_bytes")
    """ABLATE_MAX_DATASET_BYTES: largest dataset accepted, checked before anything is loaded."""
    dataset_cache: str = _default("dataset_cache")
    """ABLATE_DATASET_CACHE: where s3:// datasets are downloaded."""
    store_outage_seconds: float = _default("store_outage_seconds")
    """ABLATE_STORE_OUTAGE_SECONDS: how long downloads of s3:// datasets outlast an outage."""

    @classmethod
    def from_settings(cls, settings: Settings) -> DataOptions:
        return cls(
            data_roots=settings.data_roots,
            max_dataset_bytes=settings.max_dataset_bytes,
            dataset_cache=settings.dataset_cache,
            store_outage_seconds=settings.store_outage_seconds,
        )


DEFAULT_DATA_OPTIONS = DataOptions()
"""The settings' defaults: what a caller that passes no options gets."""
