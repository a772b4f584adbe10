"""The baseline of bench/overhead.py: the Keras script a user would write by hand.

Trains the baseline of SPEC once per seed with plain Keras: the same data split
(`service.datasets.load`), the same model written out layer by layer (checked against
`workers.model.build_model` by parameter count), Adam at the spec's learning rate, a seeded
tf.data pipeline, `fit` then `evaluate`. No checkpoints, status files or model saving.

    .venv/bin/python -m bench.bare_keras SPEC   # from the repository root; prints one JSON
                                                # line of per-seed timings

Only written for the demo baseline's shape (two conv blocks, one dense layer, horizontal flip,
Adam, constant learning rate); it refuses other specs rather than measure something else.
"""

from __future__ import annotations

import json
import sys
import time

import keras
import tensorflow as tf

from service import datasets
from service.spec import load_spec
from workers.model import build_model


def build_by_hand(input_shape, num_classes: int, dropout: float) -> keras.Model:
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input(shape=input_shape),
            layers.RandomFlip("horizontal"),
            layers.Conv2D(32, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(64, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dropout(dropout),
            layers.Dense(128, activation="relu"),
            layers.Dropout(dropout),
            layers.Dense(num_classes, activation="softmax"),
        ]
    )


def pipeline(x, y, batch_size: int, seed: int | None = None) -> tf.data.Dataset:
    data = tf.data.Dataset.from_tensor_slices((x, y)).cache()
    if seed is not None:
        data = data.shuffle(len(x), seed=seed)
    return data.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def main(spec_path: str) -> None:
    started = time.perf_counter()
    spec = load_spec(spec_path)
    config = spec.baseline()
    assert spec.optimizer.name == "adam" and spec.schedule.name == "constant", "demo baseline only"
    training = config.training
    data = datasets.load(config.dataset)  # identical split and scaling; not what is measured
    shape, classes = data.info.input_shape, data.info.num_classes
    reference = build_model(config, shape, classes).count_params()
    val = pipeline(data.x_val, data.y_val, training.batch_size)
    test = pipeline(data.x_test, data.y_test, training.batch_size)

    runs = []
    for seed in spec.ablation.seed_list:
        run_started = time.perf_counter()
        keras.backend.clear_session()  # as a loop over seeds should; the runner does too
        keras.utils.set_random_seed(seed)
        model = build_by_hand(shape, classes, config.model.dropout)
        assert model.count_params() == reference, (model.count_params(), reference)
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate=config.optimizer.learning_rate),
            loss=keras.losses.SparseCategoricalCrossentropy(),
            metrics=["accuracy"],
            jit_compile=training.jit_compile,  # Keras' "auto" would differ on a GPU
        )
        train = pipeline(data.x_train, data.y_train, training.batch_size, seed=seed)
        fit_started = time.perf_counter()
        model.fit(train, validation_data=val, epochs=training.epochs, verbose=0)
        eval_started = time.perf_counter()
        _, accuracy = model.evaluate(test, verbose=0)
        done = time.perf_counter()
        runs.append(
            {
                "seed": seed,
                "test_accuracy": round(float(accuracy), 4),
                "fit_seconds": round(eval_started - fit_started, 4),
                "eval_seconds": round(done - eval_started, 4),
                "total_seconds": round(done - run_started, 4),
            }
        )
    print(json.dumps({"runs": runs, "script_seconds": round(time.perf_counter() - started, 4)}))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m bench.bare_keras SPEC")
    main(sys.argv[1])
