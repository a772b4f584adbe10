"""The model of a run: the augmentation stack, the declarative CNN, or a user factory.

`build_model` turns `config.model` and `config.augmentation` into an uncompiled functional
keras.Model. Mixed precision is the caller's business: it sets the global dtype policy before
building, and the output layer stays float32 whatever the policy.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

import keras

from service import factories
from service.errors import AblateError
from service.spec.models import TrainConfig
from service.spec.network import AugmentationSpec, ConvBlock

AUGMENTATION_DTYPE = "float32"
"""Augmentation computes in float32 whatever the policy: under mixed_bfloat16 Keras would cast
its input to bfloat16, and TensorFlow has no bfloat16 GPU kernel for the image transform of
rotation, zoom, translation and crop (ImageProjectiveTransformV3): they would run on the CPU
with a copy every batch, or fail placement. The first layer after them casts to the policy."""


class ModelConfigError(AblateError):
    """The model section cannot be built for this input (the message names the field)."""


def build_model(
    config: TrainConfig,
    input_shape: tuple[int, int, int],
    num_classes: int,
    factory_modules: Sequence[str] | None = None,
) -> keras.Model:
    """An uncompiled model mapping `input_shape` images to `num_classes` softmax probabilities.
    A `model.factory` runs only from a module `factory_modules` allows (None: any; see
    `service.factories.allowed_prefixes`)."""
    spec = config.model
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = inputs

    # Augmentation (identity at inference)
    for layer in build_augmentation(config.augmentation, input_shape, _value_range(config)):
        x = layer(x)

    if spec.factory is not None:
        user_model = _call_factory(spec.factory, config, input_shape, num_classes, factory_modules)
        return keras.Model(inputs, _float32_outputs(user_model(x)), name="factory_model")

    # Feature extractor
    height, width = input_shape[0], input_shape[1]
    for index, block in enumerate(spec.conv_blocks):
        x, (height, width) = _conv_block(x, block, index, (height, width), spec.l2)
        if spec.conv_dropout > 0:
            x = keras.layers.Dropout(spec.conv_dropout, name=f"block{index + 1}_dropout")(x)

    # Head: dropout goes before every dense layer, the output layer included, so
    # `dense: []` with `dropout: 0.5` still drops features before the classifier.
    pools = {
        "flatten": keras.layers.Flatten,
        "avg": keras.layers.GlobalAveragePooling2D,
        "max": keras.layers.GlobalMaxPooling2D,
    }
    x = pools[spec.global_pool](name=f"head_{spec.global_pool}")(x)
    for index, units in enumerate(spec.dense, start=1):
        if spec.dropout > 0:
            x = keras.layers.Dropout(spec.dropout, name=f"head_dropout{index}")(x)
        x = keras.layers.Dense(units, kernel_regularizer=_l2(spec.l2), name=f"head_dense{index}")(x)
        x = _activation(spec.dense_activation, f"head_act{index}")(x)
    if spec.dropout > 0:
        x = keras.layers.Dropout(spec.dropout, name="predictions_dropout")(x)
    # float32 output: softmax and the loss stay stable under mixed_float16.
    outputs = keras.layers.Dense(
        num_classes,
        activation="softmax",
        kernel_regularizer=_l2(spec.l2),
        dtype="float32",
        name="predictions",
    )(x)
    return keras.Model(inputs, outputs, name="cnn")


def build_augmentation(
    spec: AugmentationSpec,
    input_shape: tuple[int, int, int],
    value_range: tuple[float, float] | None = None,
) -> list[keras.layers.Layer]:
    """Keras preprocessing layers for `spec`, in order; empty when nothing is enabled.

    The layers transform only when called with training=True. `value_range` is the range
    RandomContrast clips to; None (standardized or unknown scaling) leaves values unclipped.
    """
    height, width = input_shape[0], input_shape[1]
    layers: list[keras.layers.Layer] = []
    flip = {
        (True, False): "horizontal",
        (False, True): "vertical",
        (True, True): "horizontal_and_vertical",
    }.get((spec.horizontal_flip, spec.vertical_flip))
    if flip is not None:
        layers.append(keras.layers.RandomFlip(flip, dtype=AUGMENTATION_DTYPE, name="augment_flip"))
    if spec.rotation > 0:
        layers.append(
            keras.layers.RandomRotation(
                spec.rotation, fill_mode="constant", dtype=AUGMENTATION_DTYPE, name="augment_rotation"
            )
        )
    if spec.zoom > 0:
        layers.append(
            keras.layers.RandomZoom(spec.zoom, fill_mode="constant", dtype=AUGMENTATION_DTYPE, name="augment_zoom")
        )
    if spec.translation > 0:
        layers.append(
            keras.layers.RandomTranslation(
                spec.translation,
                spec.translation,
                fill_mode="constant",
                dtype=AUGMENTATION_DTYPE,
                name="augment_translation",
            )
        )
    if spec.contrast > 0:
        low, high = value_range if value_range is not None else (float("-inf"), float("inf"))
        layers.append(
            keras.layers.RandomContrast(
                spec.contrast, value_range=(low, high), dtype=AUGMENTATION_DTYPE, name="augment_contrast"
            )
        )
    if spec.random_crop > 0:
        layers.append(_pad_and_crop(spec.random_crop, height, width))
    return layers


def _pad_and_crop(padding: int, height: int, width: int) -> keras.layers.Layer:
    """Zero-pad by `padding` pixels and crop a random height x width window back.

    Built as an integer shift of up to `padding` pixels with zero fill, which is the same
    transformation. Not ZeroPadding2D + RandomCrop: in Keras 3 RandomCrop returns its input
    unchanged at inference, so the padded (H+2p)x(W+2p) image would reach the network; it
    also crops every image of a batch at the same place, where this shifts each image.
    """
    if padding >= min(height, width):
        raise ModelConfigError(
            f"augmentation.random_crop: {padding} pixels of padding on a {height}x{width} "
            f"input could crop out the whole image — use less than {min(height, width)}"
        )
    return keras.layers.RandomTranslation(
        padding / height,
        padding / width,
        fill_mode="constant",
        fill_value=0.0,
        # Nearest sampling keeps the shift a whole number of pixels, as a crop would.
        interpolation="nearest",
        dtype=AUGMENTATION_DTYPE,
        name="augment_crop",
    )


def _conv_block(
    x, block: ConvBlock, index: int, size: tuple[int, int], l2: float
) -> tuple[keras.KerasTensor, tuple[int, int]]:
    """Block `index`: `convs` x (Conv2D -> BatchNorm? -> activation), then pooling."""
    field = f"model.conv_blocks[{index}]"
    name = f"block{index + 1}"
    for conv in range(1, block.convs + 1):
        stride = block.stride if conv == 1 else 1
        size = _conv_output_size(size, block.kernel_size, stride, block.padding, field)
        x = keras.layers.Conv2D(
            block.filters,
            block.kernel_size,
            strides=stride,
            padding=block.padding,
            # Batch norm's beta makes the conv bias redundant.
            use_bias=not block.batch_norm,
            kernel_regularizer=_l2(l2),
            name=f"{name}_conv{conv}",
        )(x)
        if block.batch_norm:
            x = keras.layers.BatchNormalization(name=f"{name}_bn{conv}")(x)
        x = _activation(block.activation, f"{name}_act{conv}")(x)
    if block.pooling != "none":
        pool = block.pool_size
        after = (size[0] // pool, size[1] // pool)
        if min(after) < 1:
            raise ModelConfigError(
                f"{field}: input is {_hw(size)} at this block; pooling {pool} would make it "
                f"{_hw(after)} — remove a block or set pooling: none"
            )
        layer = (
            keras.layers.MaxPooling2D if block.pooling == "max" else keras.layers.AveragePooling2D
        )
        x = layer(pool, name=f"{name}_pool")(x)
        size = after
    return x, size


def _conv_output_size(
    size: tuple[int, int], kernel: int, stride: int, padding: str, field: str
) -> tuple[int, int]:
    if padding == "same":
        return (-(-size[0] // stride), -(-size[1] // stride))
    after = ((size[0] - kernel) // stride + 1, (size[1] - kernel) // stride + 1)
    if min(after) < 1 or min(size) < kernel:
        raise ModelConfigError(
            f"{field}: input is {_hw(size)} at this block; a {kernel}x{kernel} 'valid' "
            f"convolution needs at least {kernel}x{kernel} — set padding: same or remove a block"
        )
    return after


def _call_factory(
    path: str,
    config: TrainConfig,
    input_shape: tuple[int, int, int],
    num_classes: int,
    factory_modules: Sequence[str] | None,
) -> keras.Model:
    module_name, _, function_name = path.partition(":")
    try:
        # Before anything of the module runs: is it allowed here, and is it the planned code?
        factories.check_allowed(path, factory_modules)
        digest = factories.source_digest(path)
    except factories.FactoryError as error:
        raise ModelConfigError(str(error)) from None
    planned = config.model.factory_sha256
    if planned is not None and digest != planned:
        raise ModelConfigError(
            f"model.factory: this worker's {module_name} (source sha256 {digest[:12]}) is not the "
            f"code the run was planned with ({planned[:12]}); install the same version on the "
            "workers, or submit the spec again to plan runs of this one"
        )
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # any import-time failure is the factory's
        raise ModelConfigError(
            f"model.factory: cannot import {module_name!r} ({type(error).__name__}: {error})"
        ) from error
    function = getattr(module, function_name, None)
    if not callable(function):
        raise ModelConfigError(f"model.factory: {module_name!r} has no function {function_name!r}")
    model = function(config, tuple(input_shape), num_classes)
    if not isinstance(model, keras.Model):
        raise ModelConfigError(
            f"model.factory: {path!r} returned {type(model).__name__}, not a keras.Model"
        )
    return model


def _float32_outputs(outputs):
    # A user's builder may end in float16/bfloat16 under mixed precision: the loss and the
    # probabilities stay float32 (a cast, as Keras' mixed precision guide does it).
    flat = keras.tree.flatten(outputs)
    cast = [
        output
        if output.dtype == "float32"
        else keras.layers.Activation(
            "linear",
            dtype="float32",
            name="predictions_float32" if len(flat) == 1 else f"predictions_float32_{index}",
        )(output)
        for index, output in enumerate(flat)
    ]
    return keras.tree.pack_sequence_as(outputs, cast)


def _activation(name: str, layer_name: str) -> keras.layers.Layer:
    if name == "leaky_relu":
        return keras.layers.LeakyReLU(name=layer_name)
    return keras.layers.Activation(name, name=layer_name)


def _l2(l2: float) -> keras.regularizers.Regularizer | None:
    return keras.regularizers.L2(l2) if l2 > 0 else None


def _value_range(config: TrainConfig) -> tuple[float, float] | None:
    # Only "unit" scaling guarantees [0, 1]; "auto" may leave negative values as stored.
    return (0.0, 1.0) if config.dataset.scale == "unit" else None


def _hw(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"
