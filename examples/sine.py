"""Hello world of TinyML: learn y = sin(x) for x in [0, 2*pi] with a tiny MLP.

Run it as a script (``python examples/sine.py runs/sine``) or through the CLI
(``tinydeploy train sine --out runs/sine``); both write ``model.keras`` and ``data.npz``.
"""

from __future__ import annotations

import math
import sys

import numpy as np

from tinydeploy.data import Dataset

TASK = "regression"
EPOCHS = 150
BATCH_SIZE = 32
SAMPLES = 1000


def make_data(seed: int = 0) -> Dataset:
    """1000 x uniform in [0, 2*pi], y = sin(x) + 0.1 * gaussian noise; 60/20/20 split."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 2.0 * math.pi, size=(SAMPLES, 1)).astype(np.float32)
    y = (np.sin(x) + 0.1 * rng.standard_normal(size=x.shape)).astype(np.float32)
    n_train, n_val = int(0.6 * SAMPLES), int(0.2 * SAMPLES)
    return Dataset(
        x_train=x[:n_train], y_train=y[:n_train],
        x_val=x[n_train:n_train + n_val], y_val=y[n_train:n_train + n_val],
        x_test=x[n_train + n_val:], y_test=y[n_train + n_val:],
    )


def build_model():  # -> keras.Model
    import keras

    model = keras.Sequential([
        keras.Input(shape=(1,), name="x"),
        keras.layers.Dense(16, activation="relu"),
        keras.layers.Dense(16, activation="relu"),
        keras.layers.Dense(1),
    ], name="sine")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.005), loss="mse",
                  metrics=["mae"])
    return model


if __name__ == "__main__":
    from tinydeploy.log import setup
    from tinydeploy.train import train

    setup()  # show training progress
    # python examples/sine.py [OUT [EPOCHS]]
    out = sys.argv[1] if len(sys.argv) > 1 else "runs/sine"
    epochs = int(sys.argv[2]) if len(sys.argv) > 2 else None
    print(train(__file__, out, epochs=epochs).summary())
