"""`RunOptions`: the operator's settings a training run obeys, read once where training starts
(the Celery task's module, `ablate run`'s training process) and handed to `workers.runner.run`,
which passes each part to the module that needs it (datasets, model factories, GPU memory)."""

from __future__ import annotations

from dataclasses import dataclass

from service.datasets.options import DEFAULT_DATA_OPTIONS, DataOptions
from service.factories import allowed_prefixes
from service.settings import Settings


@dataclass(frozen=True)
class RunOptions:
    data: DataOptions = DEFAULT_DATA_OPTIONS
    """Allowed dataset folders, size limit, S3 dataset cache."""
    factory_modules: tuple[str, ...] | None = None
    """Module prefixes whose model factories may run here (ABLATE_FACTORY_MODULES); None: any."""
    gpu_memory_mb: int | None = None
    """ABLATE_GPU_MEMORY_MB: this process's GPU memory cap; None: memory growth."""

    @classmethod
    def from_settings(cls, settings: Settings, *, worker: bool) -> RunOptions:
        """A Celery worker (`worker`) runs studies of whoever reaches the broker: with
        ABLATE_FACTORY_MODULES unset it runs no model factory; `ablate run` runs any."""
        prefixes = allowed_prefixes(settings.factory_modules, allow_when_unset=not worker)
        return cls(
            data=DataOptions.from_settings(settings),
            factory_modules=None if prefixes is None else tuple(prefixes),
            gpu_memory_mb=settings.gpu_memory_mb,
        )


DEFAULT_RUN_OPTIONS = RunOptions()
"""The settings' defaults, any model factory allowed (a run trained in a test or a script)."""
