"""Hello world of TinyML: learn y = sin(x) for x in [0, 2*pi] with a tiny MLP.

Run it as a script (``python examples/sine.py runs/sine``) or through the CLI
(``tinydeploy train sine --out runs/sine``); both write ``model.keras`` and ``data.npz``.
"""

from __future__ import annotations

import math

import numpy as np

from tinydeploy.data import Dataset

TASK = "regression"
EPOCHS = 150
BATCH_SIZE = 32
SAMPLES = 1000
# what the model's input is (tinydeploy.preprocessing: into the generated td_app.h/README)
PREPROCESSING = {"text": "x: an angle in radians in [0, 2*pi], fed as is (no scaling)",
                 "unit": "rad", "multiplier": 1.0, "offset": 0.0, "channels": 1}


def make_data(seed: int = 0) -> Dataset:
    """1000 x uniform in [0, 2*pi], y = sin(x) + 0.1 * gaussian noise; 60/20/20 split."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 2.0 * math.pi, size=(SAMPLES, 1)).astype(np.float32)
    y = (np.sin(x) + 0.1 * rng.standard_normal(size=x.shape)).astype(np.float32)
    return Dataset.split(x, y)  # 60/20/20, in order


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


if __name__ == "__main__":  # python examples/sine.py [OUT [EPOCHS]]
    from tinydeploy.training import run_example_script

    run_example_script(__file__)
