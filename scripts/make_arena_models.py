"""Write the arena-check models of tests/data/arena/ (made here, small): transpose-conv and
strided-slice CNNs, int8 and 16x8, whose TFLM arena tests/data/arena_measured.json records.

    python scripts/make_arena_models.py tests/data/arena
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np


def _models(k: Any) -> dict[str, tuple[Any, str]]:
    def tconv_cnn() -> Any:  # the converter gives these TRANSPOSE_CONVs no bias input
        x = k.Input((16, 16, 1), batch_size=1)
        y = k.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
        y = k.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(y)
        y = k.layers.Conv2DTranspose(8, 3, strides=2, padding="same")(y)
        y = k.layers.Conv2DTranspose(4, 3, strides=2, padding="same")(y)
        return k.Model(x, k.layers.Conv2D(1, 3, padding="same")(y))

    def slice_cnn() -> Any:
        x = k.Input((12, 12, 2), batch_size=1)
        y = k.layers.Conv2D(6, 3, padding="same", activation="relu")(x)
        y = k.layers.Lambda(lambda t: t[:, 1::2, 0:11, :])(y)
        y = k.layers.Conv2D(4, 1)(y)
        y = k.layers.Lambda(lambda t: t[:, :, ::3, 1:])(y)
        return k.Model(x, k.layers.Dense(3)(k.layers.Flatten()(y)))

    return {"tconv_cnn_int8": (tconv_cnn(), "int8"), "tconv_cnn_16x8": (tconv_cnn(), "16x8"),
            "slice_cnn_int8": (slice_cnn(), "int8"), "slice_cnn_16x8": (slice_cnn(), "16x8")}


def convert(model: Any, scheme: str, rng: np.random.Generator) -> bytes:
    """Full-integer conversion with a random representative set (int8 or 16x8 I/O)."""
    import tensorflow as tf

    from tinydeploy.quantization import _quiet_convert

    shape = tuple(model.inputs[0].shape[1:])
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: (
        [rng.normal(0, 1, (1, *shape)).astype(np.float32)] for _ in range(32))
    if scheme == "int8":
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = conv.inference_output_type = tf.int8
    else:
        conv.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
        conv.inference_input_type = conv.inference_output_type = tf.int16
    return _quiet_convert(conv)


def main(out: str) -> None:
    import keras

    keras.utils.set_random_seed(7)
    rng = np.random.default_rng(7)
    Path(out).mkdir(parents=True, exist_ok=True)
    for name, (model, scheme) in _models(keras).items():
        data = convert(model, scheme, rng)
        (Path(out) / f"{name}.tflite").write_bytes(data)
        print(name, len(data))


if __name__ == "__main__":
    main(sys.argv[1])
