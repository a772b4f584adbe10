"""The declarative CNN's shapes and size, computed on the control side without TensorFlow.

The same arithmetic as `workers/model.py` (which raises the same errors when it builds): a
kernel larger than the image with `valid` padding, more pooling than the image allows, or a
random crop that could cut out the whole image fails at `ablate validate`, naming the block,
before anything is queued or written, instead of in a worker after the study was stored. The
parameter count is bounded too: a model that cannot fit a worker's memory is a spec error.
"""

from __future__ import annotations

from service.spec.models import TrainConfig
from service.spec.network import ConvBlock

MAX_PARAMETERS = 100_000_000
"""Parameters of one model at most (400 MB of float32 weights, three times that with Adam)."""


class ShapeError(ValueError):
    """The model cannot be built for this input; `field` is the spec field at fault."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(message)


def check_model(config: TrainConfig, input_shape: tuple[int, int, int], num_classes: int) -> int:
    """The model's parameter count; raises `ShapeError` where the builder would fail.
    A model built by a factory is the factory's business (its shapes are unknown here)."""
    spec = config.model
    height, width, channels = input_shape
    crop = config.augmentation.random_crop
    if crop > 0 and crop >= min(height, width):
        raise ShapeError(
            "augmentation.random_crop",
            f"{crop} pixels of padding on a {height}x{width} input could crop out the whole "
            f"image — use less than {min(height, width)}",
        )
    if spec.factory is not None:
        return 0
    size, parameters = (height, width), 0
    for index, block in enumerate(spec.conv_blocks):
        size, added = _block(block, index, size, channels)
        parameters, channels = parameters + added, block.filters
    features = size[0] * size[1] * channels if spec.global_pool == "flatten" else channels
    for units in spec.dense:
        parameters += features * units + units
        features = units
    parameters += features * num_classes + num_classes
    if parameters > MAX_PARAMETERS:
        raise ShapeError(
            "model",
            f"the model has {parameters:,} parameters for a {height}x{width}x{input_shape[2]} "
            f"input, more than {MAX_PARAMETERS:,}; use fewer filters or units, more pooling, or "
            "global_pool: avg",
        )
    return parameters


def _block(block: ConvBlock, index: int, size: tuple[int, int], channels: int) -> tuple[tuple[int, int], int]:
    field = f"model.conv_blocks[{index}]"
    parameters = 0
    for conv in range(block.convs):
        stride = block.stride if conv == 0 else 1
        if block.padding == "same":
            size = (-(-size[0] // stride), -(-size[1] // stride))
        else:
            kernel = block.kernel_size
            if min(size) < kernel:
                raise ShapeError(
                    field,
                    f"input is {_hw(size)} at this block; a {kernel}x{kernel} 'valid' "
                    f"convolution needs at least {kernel}x{kernel} — set padding: same or remove a block",
                )
            size = ((size[0] - kernel) // stride + 1, (size[1] - kernel) // stride + 1)
        weights = block.kernel_size * block.kernel_size * channels * block.filters
        parameters += weights + (4 * block.filters if block.batch_norm else block.filters)
        channels = block.filters
    if block.pooling != "none":
        after = (size[0] // block.pool_size, size[1] // block.pool_size)
        if min(after) < 1:
            raise ShapeError(
                field,
                f"input is {_hw(size)} at this block; pooling {block.pool_size} would make it "
                f"{_hw(after)} — remove a block or set pooling: none",
            )
        size = after
    return size, parameters


def _hw(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"
