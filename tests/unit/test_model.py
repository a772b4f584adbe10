"""workers.model: architecture, parameter counts, regularization, augmentation and factories."""

from __future__ import annotations

import sys
import uuid

import keras
import numpy as np
import pytest

from service.errors import AblateError
from service.spec.models import TrainConfig
from workers.model import ModelConfigError, build_augmentation, build_model


def make_config(**sections) -> TrainConfig:
    return TrainConfig.model_validate(sections)


def count_layers(model: keras.Model, kind: type) -> int:
    return sum(isinstance(layer, kind) for layer in model.layers)


def asymmetric_images(batch: int = 4, size: int = 8) -> np.ndarray:
    """Distinct values 1..size*size per image: every flip, shift or rotation shows."""
    image = np.arange(1, size * size + 1, dtype="float32").reshape(size, size, 1) / (size * size)
    return np.repeat(image[None], batch, axis=0)


def run_stack(layers: list[keras.layers.Layer], x: np.ndarray, training: bool) -> np.ndarray:
    for layer in layers:
        x = layer(x, training=training)
    return keras.ops.convert_to_numpy(x)


@pytest.fixture
def mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy("float32")


# Architecture


@pytest.mark.parametrize("input_shape", [(8, 8, 1), (28, 28, 3)])
def test_output_is_one_probability_per_class(input_shape):
    model = build_model(make_config(), input_shape, 10)
    assert model.output_shape == (None, 10)
    probabilities = keras.ops.convert_to_numpy(model(np.zeros((2, *input_shape), "float32")))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_default_cnn_parameter_count_matches_hand_count():
    # 8x8x1 -> conv 32 (3x3, bias) -> pool 4x4 -> conv 64 -> pool 2x2 -> flatten 256 -> 128 -> 10
    model = build_model(make_config(), (8, 8, 1), 10)
    expected = (
        (3 * 3 * 1 * 32 + 32) + (3 * 3 * 32 * 64 + 64) + (2 * 2 * 64 * 128 + 128) + (128 * 10 + 10)
    )
    assert model.count_params() == expected


def test_batch_norm_two_convs_global_avg_parameter_count_matches_hand_count():
    config = make_config(
        model={
            "conv_blocks": [
                {"filters": 16, "convs": 2, "batch_norm": True},
                {"filters": 32, "convs": 2, "batch_norm": True},
            ],
            "global_pool": "avg",
            "dense": [64, 32],
        }
    )
    model = build_model(config, (28, 28, 3), 5)
    # Convs before batch norm have no bias; each batch norm holds 4 values per filter,
    # of which the moving mean and variance (2 per filter) are not trained.
    convs = 3 * 3 * 3 * 16 + 3 * 3 * 16 * 16 + 3 * 3 * 16 * 32 + 3 * 3 * 32 * 32
    batch_norms = 4 * (16 + 16 + 32 + 32)
    head = (32 * 64 + 64) + (64 * 32 + 32) + (32 * 5 + 5)
    assert model.count_params() == convs + batch_norms + head
    non_trainable = sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)
    assert non_trainable == 2 * (16 + 16 + 32 + 32)
    assert count_layers(model, keras.layers.BatchNormalization) == 4
    assert not model.get_layer("block1_conv1").use_bias


def test_valid_padding_stride_and_no_dense_parameter_count_matches_hand_count():
    config = make_config(
        model={
            "conv_blocks": [
                {"filters": 8, "kernel_size": 5, "padding": "valid", "pooling": "none"},
                {"filters": 4, "kernel_size": 1, "stride": 2, "pooling": "avg"},
            ],
            "dense": [],
        }
    )
    model = build_model(config, (8, 8, 1), 3)
    # 8x8 -> valid 5x5 conv 4x4 -> stride 2 conv 2x2 -> avg pool 1x1 -> flatten 4 -> 3
    assert model.get_layer("head_flatten").output.shape == (None, 4)
    assert model.count_params() == (5 * 5 * 1 * 8 + 8) + (1 * 1 * 8 * 4 + 4) + (4 * 3 + 3)
    assert isinstance(model.get_layer("block2_pool"), keras.layers.AveragePooling2D)


def test_stride_applies_only_to_first_conv_of_block():
    config = make_config(model={"conv_blocks": [{"convs": 3, "stride": 2, "pooling": "none"}]})
    model = build_model(config, (8, 8, 1), 10)
    strides = [model.get_layer(f"block1_conv{i}").strides for i in (1, 2, 3)]
    assert strides == [(2, 2), (1, 1), (1, 1)]


def test_leaky_relu_activation_is_a_leaky_relu_layer():
    config = make_config(
        model={"conv_blocks": [{"activation": "leaky_relu"}], "dense_activation": "leaky_relu"}
    )
    model = build_model(config, (8, 8, 1), 10)
    assert isinstance(model.get_layer("block1_act1"), keras.layers.LeakyReLU)
    assert isinstance(model.get_layer("head_act1"), keras.layers.LeakyReLU)


# Regularization


def test_l2_regularizes_every_conv_and_dense_kernel():
    config = make_config(
        model={"conv_blocks": [{"convs": 2}, {"convs": 2}], "dense": [64, 32], "l2": 1e-3}
    )
    model = build_model(config, (8, 8, 1), 10)
    # 4 conv kernels + 2 hidden dense kernels + the output kernel
    assert len(model.losses) == 7
    assert all(float(keras.ops.convert_to_numpy(loss)) > 0 for loss in model.losses)


def test_zero_l2_adds_no_regularization_loss():
    model = build_model(make_config(model={"l2": 0.0}), (8, 8, 1), 10)
    assert model.losses == []


def test_dropout_layers_follow_the_config():
    plain = build_model(make_config(), (8, 8, 1), 10)
    assert count_layers(plain, keras.layers.Dropout) == 0

    both = build_model(
        make_config(model={"dropout": 0.5, "conv_dropout": 0.25, "dense": [128]}), (8, 8, 1), 10
    )
    names = {layer.name for layer in both.layers if isinstance(layer, keras.layers.Dropout)}
    assert names == {"block1_dropout", "block2_dropout", "head_dropout1", "predictions_dropout"}
    assert both.get_layer("block1_dropout").rate == 0.25
    assert both.get_layer("head_dropout1").rate == 0.5


def test_dropout_without_dense_layers_still_precedes_the_classifier():
    model = build_model(make_config(model={"dropout": 0.5, "dense": []}), (8, 8, 1), 10)
    assert count_layers(model, keras.layers.Dropout) == 1
    assert model.get_layer("predictions").input is model.get_layer("predictions_dropout").output


def test_output_stays_float32_under_mixed_precision(mixed_precision):
    config = make_config(augmentation={"horizontal_flip": True, "contrast": 0.2})
    model = build_model(config, (8, 8, 1), 10)
    assert model.get_layer("block1_conv1").compute_dtype == "float16"
    assert model.output.dtype == "float32"
    x = asymmetric_images()
    assert keras.ops.convert_to_numpy(model(x, training=True)).dtype == np.float32
    assert keras.ops.convert_to_numpy(model(x, training=False)).dtype == np.float32


# Spatial size checks


def test_too_many_pooling_blocks_name_the_block():
    config = make_config(model={"conv_blocks": [{"filters": 4}] * 4})
    # 8 -> 4 -> 2 -> 1, and the fourth pooling would make it 0x0
    with pytest.raises(ModelConfigError) as caught:
        build_model(config, (8, 8, 1), 10)
    message = str(caught.value)
    assert message.startswith("model.conv_blocks[3]: input is 1x1 at this block; pooling 2")
    assert "0x0" in message and "pooling: none" in message
    assert isinstance(caught.value, AblateError)


def test_valid_convolution_larger_than_input_names_the_block():
    config = make_config(
        model={
            "conv_blocks": [{"filters": 4}, {"filters": 4, "kernel_size": 5, "padding": "valid"}]
        }
    )
    with pytest.raises(ModelConfigError, match=r"model\.conv_blocks\[1\]: input is 4x4"):
        build_model(config, (8, 8, 1), 10)


def test_pooling_none_lets_deep_stacks_fit_small_inputs():
    blocks = [{"filters": 4, "pooling": "none"}] * 6
    model = build_model(make_config(model={"conv_blocks": blocks}), (8, 8, 1), 10)
    assert model.output_shape == (None, 10)


# Augmentation


def test_no_augmentation_builds_no_layers():
    assert build_augmentation(make_config().augmentation, (8, 8, 1)) == []


@pytest.mark.parametrize(
    "augmentation",
    [
        {"horizontal_flip": True},
        {"vertical_flip": True},
        {"rotation": 0.1},
        {"zoom": 0.2},
        {"translation": 0.2},
        {"contrast": 0.5},
        {"random_crop": 2},
    ],
)
def test_augmentation_transforms_only_in_training(augmentation):
    keras.utils.set_random_seed(0)
    layers = build_augmentation(make_config(augmentation=augmentation).augmentation, (8, 8, 1))
    assert len(layers) == 1
    x = asymmetric_images()
    np.testing.assert_array_equal(run_stack(layers, x, training=False), x)
    trained = [run_stack(layers, x, training=True) for _ in range(5)]
    assert all(output.shape == x.shape for output in trained)
    assert any(not np.allclose(output, x) for output in trained)


def test_flip_modes():
    both = make_config(augmentation={"horizontal_flip": True, "vertical_flip": True})
    (layer,) = build_augmentation(both.augmentation, (8, 8, 1))
    assert layer.mode == "horizontal_and_vertical"


def test_random_crop_is_a_whole_pixel_shift_with_zero_fill():
    # What pad-by-p-then-crop does: each image moves by at most p pixels, zeros come in.
    keras.utils.set_random_seed(1)
    padding = 2
    layers = build_augmentation(
        make_config(augmentation={"random_crop": padding}).augmentation, (8, 8, 1)
    )
    x = asymmetric_images(batch=8)
    padded = np.pad(x[0, :, :, 0], padding)
    shifts = {
        (dy, dx): padded[padding + dy : padding + dy + 8, padding + dx : padding + dx + 8]
        for dy in range(-padding, padding + 1)
        for dx in range(-padding, padding + 1)
    }
    moved = 0
    for image in run_stack(layers, x, training=True)[..., 0]:
        matches = [shift for shift, crop in shifts.items() if np.allclose(image, crop)]
        assert matches, "not a whole-pixel shift of at most `padding` pixels"
        moved += matches != [(0, 0)]
    assert moved > 0


def test_random_crop_keeps_model_input_size_at_inference():
    # Keras 3's RandomCrop would hand the padded image on at inference; ours must not.
    config = make_config(augmentation={"random_crop": 4})
    model = build_model(config, (8, 8, 1), 10)
    features = keras.Model(model.input, model.get_layer("block1_conv1").input)
    x = asymmetric_images()
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(features(x, training=False)), x)
    assert model.predict(x, verbose=0).shape == (4, 10)


def test_random_crop_larger_than_the_image_is_refused():
    config = make_config(augmentation={"random_crop": 8})
    with pytest.raises(ModelConfigError, match=r"augmentation\.random_crop"):
        build_model(config, (8, 8, 1), 10)


def test_contrast_clips_to_unit_range_only_for_unit_scaled_data():
    unit = make_config(dataset={"kind": "digits", "scale": "unit"}, augmentation={"contrast": 0.5})
    model = build_model(unit, (8, 8, 1), 10)
    assert tuple(model.get_layer("augment_contrast").value_range) == (0.0, 1.0)

    keras.utils.set_random_seed(0)
    standardized = make_config(
        dataset={"kind": "digits", "scale": "standardize"}, augmentation={"contrast": 0.5}
    )
    layers = build_augmentation(standardized.augmentation, (8, 8, 1))
    x = asymmetric_images() * 4.0 - 2.0  # values in [-2, 2]
    outputs = [run_stack(layers, x, training=True) for _ in range(5)]
    # Unclipped: negative values and values above 1 survive the contrast change.
    assert all(np.isfinite(out).all() and out.min() < 0 and out.max() > 1 for out in outputs)


def test_augmentation_runs_before_the_feature_extractor():
    config = make_config(augmentation={"horizontal_flip": True, "rotation": 0.05})
    model = build_model(config, (8, 8, 1), 10)
    names = [layer.name for layer in model.layers]
    assert names[1:3] == ["augment_flip", "augment_rotation"]
    assert names.index("augment_rotation") < names.index("block1_conv1")


# Factory

FACTORY_SOURCE = """
import keras

calls = []


def make(config, input_shape, num_classes):
    calls.append((config, input_shape, num_classes))
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.GlobalAveragePooling2D()(inputs)
    outputs = keras.layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="user_model")


def not_a_model(config, input_shape, num_classes):
    return "a string"
"""


@pytest.fixture
def factory_module(tmp_path, monkeypatch) -> str:
    name = f"user_models_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(FACTORY_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_factory_is_called_and_wrapped_after_augmentation(factory_module):
    config = make_config(
        model={"factory": f"{factory_module}:make"}, augmentation={"horizontal_flip": True}
    )
    model = build_model(config, (8, 8, 1), 7)
    (call,) = sys.modules[factory_module].calls
    assert call == (config, (8, 8, 1), 7)

    user_model = model.get_layer("user_model")
    assert [layer.name for layer in model.layers][1:] == ["augment_flip", "user_model"]
    x = asymmetric_images()
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model(x, training=False)),
        keras.ops.convert_to_numpy(user_model(x)),
    )
    assert model.output_shape == (None, 7)


def test_a_factory_model_under_mixed_precision_still_outputs_float32(factory_module, mixed_precision):
    model = build_model(make_config(model={"factory": f"{factory_module}:make"}), (8, 8, 1), 7)
    assert model.get_layer("user_model").output.dtype == "float16"  # the user's softmax
    assert model.layers[-1].name == "predictions_float32" and model.output.dtype == "float32"
    assert keras.ops.convert_to_numpy(model(asymmetric_images())).dtype == np.float32


def test_factory_not_returning_a_model_is_refused(factory_module):
    config = make_config(model={"factory": f"{factory_module}:not_a_model"})
    with pytest.raises(
        ModelConfigError, match=r"model\.factory: .* returned str, not a keras\.Model"
    ):
        build_model(config, (8, 8, 1), 10)


def test_factory_missing_function_is_refused(factory_module):
    config = make_config(model={"factory": f"{factory_module}:missing"})
    with pytest.raises(ModelConfigError, match=r"model\.factory: .* has no function 'missing'"):
        build_model(config, (8, 8, 1), 10)


def test_factory_that_cannot_be_imported_names_model_factory():
    config = make_config(model={"factory": "no_such_package_abl.models:make"})
    with pytest.raises(
        ModelConfigError, match=r"^model\.factory: cannot find module 'no_such_package_abl' on this"
    ):
        build_model(config, (8, 8, 1), 10)
