"""Handwritten digits: a small CNN on scikit-learn's 8x8 digits (1797 images, 10 classes).

Run it as a script (``python examples/digits.py runs/digits``) or through the CLI
(``tinydeploy train digits --out runs/digits``); both write ``model.keras`` and ``data.npz``.
"""

from __future__ import annotations

import numpy as np

from tinydeploy.data import Dataset

TASK = "classification"
CLASSES = tuple(str(d) for d in range(10))  # labels in the generated firmware
EPOCHS = 40
BATCH_SIZE = 32
# what the model's input is (tinydeploy.preprocessing: into the generated td_app.h/README)
PREPROCESSING = {"text": "an 8x8 grayscale image (scikit-learn digits: pixel values 0..16, "
                         "ink bright), row by row, each pixel divided by 16 to [0, 1]",
                 "unit": "pixel value 0..16", "multiplier": 1.0 / 16.0, "offset": 0.0,
                 "channels": 1}


def make_data(seed: int = 0) -> Dataset:
    """Pixels scaled to [0, 1], shape 8x8x1; labels 0..9; shuffled 60/20/20 split."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., np.newaxis]
    y = digits.target.astype(np.float32)
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    return Dataset.split(x, y)  # 60/20/20, in order


def build_model():  # -> keras.Model
    import keras

    model = keras.Sequential([
        keras.Input(shape=(8, 8, 1), name="image"),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(32, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ], name="digits")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.003),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


if __name__ == "__main__":  # python examples/digits.py [OUT [EPOCHS]]
    from tinydeploy.training import run_example_script

    run_example_script(__file__)
