"""Machine-vibration anomaly detection on synthetic 3-axis accelerometer windows.

A healthy machine vibrates at its rotation frequency plus a harmonic, with sensor noise and
gravity on the z axis. Faulty windows add one of: periodic impacts (a damaged bearing),
a few large random spikes (loose mounting) or a strong extra resonance. A 1-D CNN tells
normal (0) from fault (1).

Run it as a script (``python examples/vibration.py runs/vibration``) or through the CLI
(``tinydeploy train vibration --out runs/vibration``).
"""

from __future__ import annotations

import numpy as np

from tinydeploy.data import Dataset

TASK = "classification"
EPOCHS = 30
BATCH_SIZE = 32
SAMPLES = 1500
WINDOW = 128  # samples per window
RATE = 400.0  # Hz
CLASSES = ("normal", "fault")
# what the model's input is (tinydeploy.preprocessing: into the generated td_app.h/README)
PREPROCESSING = {"text": f"a window of {WINDOW} samples at {RATE:g} Hz of 3-axis acceleration "
                         "in g (x, y, z interleaved per sample; gravity, +1 g, on z), "
                         "unfiltered and not normalized",
                 "unit": "g", "multiplier": 1.0, "offset": 0.0, "sample_rate_hz": RATE,
                 "window": WINDOW, "channels": 3}


def _window(rng: np.random.Generator, fault: bool) -> np.ndarray:
    t = np.arange(WINDOW) / RATE
    f0 = rng.uniform(20.0, 40.0)  # rotation frequency
    w = np.zeros((WINDOW, 3), np.float64)
    for axis in range(3):
        amp = rng.uniform(0.2, 0.8)
        phase = rng.uniform(0, 2 * np.pi, size=2)
        w[:, axis] = amp * np.sin(2 * np.pi * f0 * t + phase[0])
        w[:, axis] += 0.3 * amp * np.sin(2 * np.pi * 2 * f0 * t + phase[1])
    w += rng.uniform(0.03, 0.15) * rng.standard_normal(w.shape)
    w[:, 2] += 1.0  # gravity
    if fault:
        kind = rng.integers(3)
        if kind == 0:  # bearing impacts: decaying bursts every period
            period = int(RATE / rng.uniform(30.0, 60.0))
            start = rng.integers(period)
            decay = np.exp(-np.arange(12) / 3.0)
            for s in range(start, WINDOW - 12, period):
                w[s:s + 12] += rng.uniform(0.5, 1.0) * decay[:, None] * rng.choice([-1, 1], 3)
        elif kind == 1:  # loose mounting: a few large random spikes
            idx = rng.choice(WINDOW, size=rng.integers(2, 6), replace=False)
            w[idx] += rng.uniform(0.8, 1.8, size=(len(idx), 3)) * rng.choice([-1, 1], (len(idx), 3))
        else:  # resonance: strong high-frequency component on one axis
            axis = rng.integers(3)
            w[:, axis] += rng.uniform(0.25, 0.5) * np.sin(2 * np.pi * rng.uniform(120, 180) * t)
    return w.astype(np.float32)


def make_data(seed: int = 0) -> Dataset:
    """1500 windows of 128x3 (in g), half of them faulty; 60/20/20 split."""
    rng = np.random.default_rng(seed)
    y = (rng.random(SAMPLES) < 0.5).astype(np.float32)
    x = np.stack([_window(rng, bool(label)) for label in y])
    return Dataset.split(x, y)  # 60/20/20, in order


def build_model():  # -> keras.Model
    import keras

    model = keras.Sequential([
        keras.Input(shape=(WINDOW, 3), name="accel"),
        keras.layers.Conv1D(16, 5, strides=2, activation="relu"),
        keras.layers.MaxPooling1D(2),
        keras.layers.Conv1D(16, 3, activation="relu"),
        keras.layers.GlobalAveragePooling1D(),
        keras.layers.Dense(len(CLASSES), activation="softmax"),
    ], name="vibration")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.005),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


if __name__ == "__main__":  # python examples/vibration.py [OUT [EPOCHS]]
    from tinydeploy.training import run_example_script

    run_example_script(__file__)
