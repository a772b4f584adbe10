"""The control side's shape arithmetic (service/spec/shapes.py) agrees with the Keras builder:
the same parameter count for models that build, an error for exactly those that do not."""

from __future__ import annotations

import itertools

import pytest

from service.spec import spec_from_data
from service.spec.shapes import ShapeError, check_model
from tests.conftest import TINY

BLOCKS = [
    {"filters": 4},
    {"filters": 6, "kernel_size": 5, "padding": "valid", "pooling": "none"},
    {"filters": 5, "convs": 2, "stride": 2, "batch_norm": True, "pooling": "avg", "pool_size": 3},
    {"filters": 3, "kernel_size": 7, "padding": "valid", "stride": 3},
]


def _configs():
    for blocks, pool, dense in itertools.product(
        [BLOCKS[:1], BLOCKS[1:2], BLOCKS[:3], BLOCKS[2:], BLOCKS, BLOCKS[3:] * 2],
        ["flatten", "avg"],
        [[], [7, 3]],
    ):
        model = {"conv_blocks": blocks, "global_pool": pool, "dense": dense}
        yield spec_from_data({**TINY, "model": model}).baseline()


@pytest.mark.parametrize("input_shape", [(8, 8, 1), (21, 13, 3), (32, 32, 3)])
def test_shapes_and_parameters_agree_with_the_keras_builder(input_shape):
    from workers.model import ModelConfigError, build_model

    checked = built = 0
    for config in _configs():
        try:
            expected = build_model(config, input_shape, 5).count_params()
        except ModelConfigError as exc:
            with pytest.raises(ShapeError) as refused:
                check_model(config, input_shape, 5)
            assert str(exc).startswith(refused.value.field)
            checked += 1
            continue
        assert check_model(config, input_shape, 5) == expected
        built += 1
    assert built and checked  # both kinds were compared


def test_a_crop_as_large_as_the_image_is_refused():
    config = spec_from_data({**TINY, "augmentation": {"random_crop": 8}}).baseline()
    with pytest.raises(ShapeError, match="could crop out the whole image") as refused:
        check_model(config, (8, 8, 1), 10)
    assert refused.value.field == "augmentation.random_crop"
