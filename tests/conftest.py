"""Shared fixtures: each example trained (few epochs) and quantized once per test run (once
for all pytest-xdist workers, see ``shared_run``).

``sine_run``, ``digits_run`` and ``vibration_run`` return an ``ExampleRun`` whose paths
are available both as attributes and as keys (``run.int8_tflite`` or
``run["int8_tflite"]``): ``model_keras``, ``data_npz``, ``int8_tflite``, ``float_tflite``,
``report_json``, ``report_md``, ``out``; plus the stage results ``train`` and ``quant``.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import fcntl  # noqa: E402
import pickle  # noqa: E402
from dataclasses import dataclass, fields  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402

# Few epochs: enough for the int8-vs-float comparisons, each example well under 30 s (sine at
# 20 epochs: test MAE 0.14, the "did not learn" bound is 0.3; at 40 it was 0.11).
TEST_EPOCHS = {"sine": 20, "digits": 12, "vibration": 10}
SEED = 0


@dataclass(frozen=True)
class ExampleRun:
    name: str
    out: Path
    model_keras: Path
    data_npz: Path
    int8_tflite: Path
    float_tflite: Path
    report_json: Path
    report_md: Path
    train: Any  # tinydeploy.training.TrainResult
    quant: Any  # tinydeploy.quantization.QuantReport

    def __getitem__(self, key: str) -> Any:
        if key not in self.keys():
            raise KeyError(key)
        return getattr(self, key)

    def keys(self) -> list[str]:
        return [f.name for f in fields(self)]

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default)


def run_example(name: str, out: Path, epochs: int | None = None) -> ExampleRun:
    from tinydeploy.quantization import quantize
    from tinydeploy.training import train

    trained = train(name, out, epochs=epochs or TEST_EPOCHS[name], seed=SEED)
    report = quantize(trained.model_path, trained.data_path, out)
    return ExampleRun(name=name, out=out, model_keras=trained.model_path,
                      data_npz=trained.data_path, int8_tflite=report.int8_path,
                      float_tflite=report.float_path, report_json=report.json_path,
                      report_md=report.md_path, train=trained, quant=report)


def shared_run(name: str, tmp_path_factory: pytest.TempPathFactory) -> ExampleRun:
    """``run_example(name)`` once per test run: with pytest-xdist (``-n``) the first worker
    that needs it trains under a file lock in the folder all workers share, the others load
    its result."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # <basetemp>/popen-gw0 -> <basetemp>: one per run, all workers
    out, done = root / f"shared_{name}_run", root / f"shared_{name}_run.pickle"
    with open(root / f"shared_{name}_run.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if done.is_file():
            run: ExampleRun = pickle.loads(done.read_bytes())
            return run
        run = run_example(name, out)
        tmp = done.with_suffix(".tmp")
        tmp.write_bytes(pickle.dumps(run))
        tmp.replace(done)
        return run


@pytest.fixture(scope="session")
def sine_run(tmp_path_factory: pytest.TempPathFactory) -> ExampleRun:
    return shared_run("sine", tmp_path_factory)


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory: pytest.TempPathFactory) -> ExampleRun:
    return shared_run("digits", tmp_path_factory)


@pytest.fixture(scope="session")
def vibration_run(tmp_path_factory: pytest.TempPathFactory) -> ExampleRun:
    return shared_run("vibration", tmp_path_factory)


# The modules that cost most (CPU seconds on one core, measured with the suite), heaviest
# first. The README's test command runs pytest-xdist with --dist loadscope: each module is
# one unit of work, handed out in collection order; starting with these keeps a worker from
# getting a long module last while the other has nothing left. xdist's own order (by test
# count) would start the fuzz slice (5 tests, ~35 s) last.
HEAVY_MODULES = ("test_validate.py", "test_float_io.py", "test_mutated_models.py",
                 "test_fuzz_slice.py", "test_cruntime_ops.py", "test_appfw.py", "test_zoo.py",
                 "test_render.py", "test_cli_errors.py", "test_deploy.py", "test_arena.py",
                 "test_cruntime_cm4.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: k for k, name in enumerate(HEAVY_MODULES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: rest as is
    from needs_tflm import REASON

    from tinydeploy import tflm_py  # importing tinydeploy applies the hiding

    if not tflm_py.available():  # where no wheel exists: the stand-in reference is tested
        skip = pytest.mark.skip(reason=REASON)
        for item in items:
            if item.get_closest_marker("needs_tflm"):
                item.add_marker(skip)


def pytest_configure(config: pytest.Config) -> None:
    # Keras 3 on NumPy 2 warns from inside model.predict; not ours to fix.
    config.addinivalue_line(
        "filterwarnings", "ignore:__array__ implementation doesn't accept a copy keyword")
    if getattr(config.option, "loadscopereorder", False):  # pytest-xdist: keep the order above
        config.option.loadscopereorder = False
