"""What a run's metrics.json reports beside its history: the test split's metrics, from one
pass of the trained model, and the timings of the epochs this attempt trained."""

from __future__ import annotations

import keras
import numpy as np

from service.lifecycle.documents import EpochRecord, TestMetrics


def epoch_timings(trained: list[EpochRecord]) -> dict[str, float]:
    """The first epoch this attempt trained apart from the steady ones: the first traces the
    training function and, with XLA, compiles it. `compile_seconds` is the first epoch's time
    beyond the steady (median) epoch's; both need two epochs trained in this attempt."""
    if len(trained) < 2:
        return {}
    steady = float(np.median([record.epoch_seconds for record in trained[1:]]))
    first = trained[0].epoch_seconds
    return {
        "first_epoch_seconds": round(first, 4),
        "steady_epoch_seconds": round(steady, 4),
        "compile_seconds": round(max(0.0, first - steady), 4),
    }


def evaluate(
    model: keras.Model, data, batch_size: int, num_classes: int, one_hot: bool, loss
) -> TestMetrics:
    """One pass over the test split: predictions give accuracy, per-class accuracy, the
    confusion matrix and the loss (cross-entropy on the data, without the L2 penalty)."""
    # Called eagerly in large batches: `predict` would trace a function for this one pass
    # (0.2 s, 3% of a small run).
    step = 4 * batch_size  # no gradients kept: inference fits where training did
    probabilities = np.concatenate(
        [
            keras.ops.convert_to_numpy(model(data.x_test[i : i + step], training=False))
            for i in range(0, len(data.x_test), step)
        ]
    ).astype(np.float32)
    truth = data.y_test.astype(np.int64)
    targets = np.eye(num_classes, dtype=np.float32)[truth] if one_hot else truth
    test_loss = float(keras.ops.convert_to_numpy(loss(targets, probabilities)))
    predicted = np.argmax(probabilities, axis=1)
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (truth, predicted), 1)
    totals = matrix.sum(axis=1)
    per_class = [float(matrix[k, k] / totals[k]) if totals[k] else None for k in range(num_classes)]
    return TestMetrics(
        accuracy=float(np.trace(matrix) / max(1, len(truth))),
        loss=test_loss,
        per_class_accuracy=per_class,
        confusion_matrix=matrix.tolist(),
        samples=int(len(truth)),
    )
