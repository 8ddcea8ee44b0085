"""Train models/two_layer: fit a fixed hand-written "teacher" of the same shape.

Data: seeded x ~ N(0, 1)^3; targets come from a teacher network
``3 -> 3 (ReLU) -> 2`` with fixed weights (TEACHER_* below), plus N(0, 0.05^2)
noise.
The student (``TwoLayer``, fresh seeded init) is trained with full-batch Adam
on the mean squared error. Because the student can represent the teacher
exactly, the test MSE should approach the noise floor (0.05^2 = 0.0025).
Writes ``two_layer.pt`` (a state_dict) and the ``metrics`` of ``bridge.json``.

Run from the repo root:  python models/two_layer/train.py
"""

import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from model import TwoLayer  # noqa: E402

SEED = 0
NOISE_STD = 0.05
N_TRAIN = 512
N_TEST = 512
STEPS = 1500
LR = 0.02
KWARGS = {"in_features": 3, "hidden_features": 3, "out_features": 2}
WEIGHTS = "two_layer.pt"

# Teacher weights (torch Linear layout: [out_features, in_features]).
TEACHER_W1 = np.array([[1.0, 1.0, 0.0], [0.0, 1.0, -1.0], [-1.0, 0.0, 0.5]], np.float32)
TEACHER_B1 = np.array([0.2, 0.0, 0.3], np.float32)
TEACHER_W2 = np.array([[1.0, 0.0, -1.0], [0.5, 1.5, 0.0]], np.float32)
TEACHER_B2 = np.array([0.1, -0.2], np.float32)


def make_data(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = rng.standard_normal((n, 3)).astype(np.float32)
    h = np.maximum(x @ TEACHER_W1.T + TEACHER_B1, 0.0)
    y = h @ TEACHER_W2.T + TEACHER_B2
    y = y + NOISE_STD * rng.standard_normal(y.shape)
    return x, y.astype(np.float32)


def write_manifest(metrics: dict) -> None:
    path = HERE / "bridge.json"
    old = json.loads(path.read_text()) if path.exists() else {}
    manifest = {
        "module": "model.py:TwoLayer",
        "kwargs": KWARGS,
        "weights": WEIGHTS,
        "inputs": [{"name": "x", "shape": [1, 3], "dtype": "float32"}],
        "description": old.get(
            "description",
            "Dense(3->3) -> ReLU -> Dense(3->2) regression net, trained to imitate "
            "a fixed hand-written teacher of the same shape on seeded Gaussian inputs.",
        ),
        "metrics": metrics,
    }
    path.write_text(json.dumps(manifest, indent=2) + "\n")


def main() -> None:
    random.seed(SEED)
    np.random.seed(SEED)
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)

    rng = np.random.default_rng(SEED)
    x_train, y_train = (torch.from_numpy(a) for a in make_data(rng, N_TRAIN))
    x_test, y_test = (torch.from_numpy(a) for a in make_data(rng, N_TEST))

    model = TwoLayer(**KWARGS)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    loss_fn = torch.nn.MSELoss()

    with torch.no_grad():
        baseline_mse = loss_fn(y_test.mean(0, keepdim=True).expand_as(y_test), y_test).item()

    t0 = time.perf_counter()
    for _ in range(STEPS):
        opt.zero_grad()
        loss = loss_fn(model(x_train), y_train)
        loss.backward()
        opt.step()
    wall = time.perf_counter() - t0

    model.eval()
    with torch.no_grad():
        train_mse = loss_fn(model(x_train), y_train).item()
        test_pred = model(x_test)
        test_mse = loss_fn(test_pred, y_test).item()
        r2 = 1.0 - ((test_pred - y_test) ** 2).sum() / ((y_test - y_test.mean(0)) ** 2).sum()

    torch.save(model.state_dict(), HERE / WEIGHTS)
    metrics = {
        "task": "regression onto a fixed 3-3-2 ReLU teacher + N(0, 0.05^2) noise",
        "train_mse": round(train_mse, 6),
        "test_mse": round(test_mse, 6),
        "test_r2": round(r2.item(), 6),
        "test_mse_predict_mean": round(baseline_mse, 6),
        "noise_floor_mse": round(NOISE_STD**2, 6),
        "n_train": N_TRAIN,
        "n_test": N_TEST,
        "steps": STEPS,
        "optimizer": f"Adam(lr={LR}), full batch",
        "seed": SEED,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    write_manifest(metrics)
    print(json.dumps(metrics, indent=2))
    print(f"training wall time: {wall:.2f} s")


if __name__ == "__main__":
    main()
