"""Datasets that ship with a library: scikit-learn's digits and the keras.datasets classics.

keras.datasets downloads on first use, so `inspect` never touches it: shapes, sizes and class
names come from the constant table below, and the fingerprint from the source files' names and
the hashes keras pins. Only `load` (on a worker) imports keras.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

from service.datasets.source import Source
from service.errors import DatasetError
from service.spec.datasets import DigitsDataset, KerasDataset

# Fine labels, in label order (keras loads label_mode="fine").
_CIFAR100_LABELS = """apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy
bridge bus butterfly camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach
couch crab crocodile cup dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo
keyboard lamp lawn_mower leopard lion lizard lobster man maple_tree motorcycle mountain mouse
mushroom oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree plain plate poppy
porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk skyscraper snail
snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television tiger
tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm"""

KERAS_DATASETS: dict[str, dict] = {
    "mnist": {
        "files": {"mnist.npz": "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"},
        "shape": (28, 28, 1),
        "sizes": (60_000, 10_000),
        "class_names": [str(d) for d in range(10)],
    },
    "fashion_mnist": {
        # keras pins no hashes for these four files.
        "files": {
            "train-labels-idx1-ubyte.gz": None,
            "train-images-idx3-ubyte.gz": None,
            "t10k-labels-idx1-ubyte.gz": None,
            "t10k-images-idx3-ubyte.gz": None,
        },
        "shape": (28, 28, 1),
        "sizes": (60_000, 10_000),
        "class_names": [
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ],
    },
    "cifar10": {
        "files": {
            "cifar-10-python.tar.gz": "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"
        },
        "shape": (32, 32, 3),
        "sizes": (50_000, 10_000),
        "class_names": [
            "airplane",
            "automobile",
            "bird",
            "cat",
            "deer",
            "dog",
            "frog",
            "horse",
            "ship",
            "truck",
        ],
    },
    "cifar100": {
        "files": {
            "cifar-100-python.tar.gz": "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7"
        },
        "shape": (32, 32, 3),
        "sizes": (50_000, 10_000),
        "class_names": _CIFAR100_LABELS.split(),
    },
}


def read_digits(spec: DigitsDataset, field: str, arrays: bool) -> Source:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.ascontiguousarray(digits.images, dtype=np.float64)
    y = np.asarray(digits.target, dtype=np.int64)
    digest = hashlib.sha256(images.tobytes())
    digest.update(y.tobytes())
    return Source(
        fingerprint=digest.hexdigest(),
        input_shape=(8, 8, 1),
        class_names=[str(d) for d in range(10)],
        n_train=len(y),
        y_train=y,
        x_train=images[..., None] if arrays else None,
    )


def keras_fingerprint(kind: str) -> str:
    text = json.dumps({"kind": kind, "files": KERAS_DATASETS[kind]["files"]}, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def read_keras(spec: KerasDataset, field: str, arrays: bool) -> Source:
    known = KERAS_DATASETS[spec.kind]
    n_train, n_test = known["sizes"]
    source = Source(
        fingerprint=keras_fingerprint(spec.kind),
        input_shape=known["shape"],
        class_names=list(known["class_names"]),
        n_train=n_train,
        y_train=None,
        n_test=n_test,
    )
    if not arrays:
        return source
    (x_train, y_train), (x_test, y_test) = _download(spec.kind, f"{field}.kind")
    source.x_train, source.x_test = _with_channels(x_train), _with_channels(x_test)
    source.y_train = np.asarray(y_train, dtype=np.int64).reshape(-1)
    source.y_test = np.asarray(y_test, dtype=np.int64).reshape(-1)
    source.n_train, source.n_test = len(source.y_train), len(source.y_test)
    return source


def _download(kind: str, field: str) -> tuple:
    try:
        import keras
    except ImportError as exc:
        raise DatasetError(
            field,
            f"loading {kind} needs keras, which is not installed here (the worker extra): {exc}",
        ) from None
    try:
        return getattr(keras.datasets, kind).load_data()
    except Exception as exc:  # network, cache or archive errors all mean the same to the user
        raise DatasetError(
            field,
            f"could not download {kind} (keras.datasets needs internet on first use; "
            f"cached under ~/.keras/datasets): {type(exc).__name__}: {exc}",
        ) from None


def _with_channels(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    return x[..., None] if x.ndim == 3 else x
