"""Train models/linear_regression: recover a known line by gradient descent.

Data: 256 seeded samples x ~ N(0, 1)^2, y = x @ [2.0, -3.0] + 0.5 + N(0, 0.1^2).
Training: plain full-batch gradient descent on the mean squared error.
Writes ``linear_regression.pt`` (a state_dict) and the ``metrics`` of
``bridge.json`` next to this file.

Run from the repo root:  python models/linear_regression/train.py
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
from model import LinearRegression  # noqa: E402

SEED = 0
TRUE_SLOPE = [2.0, -3.0]
TRUE_INTERCEPT = 0.5
NOISE_STD = 0.1
N_TRAIN = 256
N_TEST = 256
STEPS = 500
LR = 0.1
WEIGHTS = "linear_regression.pt"


def make_data(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = rng.standard_normal((n, 2)).astype(np.float32)
    y = x @ np.asarray(TRUE_SLOPE, np.float32) + TRUE_INTERCEPT
    y = y + NOISE_STD * rng.standard_normal(n).astype(np.float32)
    return x, y.astype(np.float32)[:, None]


def write_manifest(metrics: dict) -> None:
    path = HERE / "bridge.json"
    old = json.loads(path.read_text()) if path.exists() else {}
    manifest = {
        "module": "model.py:LinearRegression",
        "kwargs": {},
        "weights": WEIGHTS,
        "inputs": [{"name": "x", "shape": [1, 2], "dtype": "float32"}],
        "description": old.get(
            "description",
            "y = sum(slope * x) + intercept with 2 slopes and 1 intercept as raw "
            "nn.Parameters, fitted by gradient descent to y = 2*x0 - 3*x1 + 0.5 + noise.",
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
    x_train, y_train = make_data(rng, N_TRAIN)
    x_test, y_test = make_data(rng, N_TEST)
    x_train, y_train = torch.from_numpy(x_train), torch.from_numpy(y_train)
    x_test, y_test = torch.from_numpy(x_test), torch.from_numpy(y_test)

    model = LinearRegression()
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    loss_fn = torch.nn.MSELoss()

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
        test_mse = loss_fn(model(x_test), y_test).item()

    # Closed-form least squares on the same training data: what GD should converge to.
    design = np.c_[x_train.numpy().astype(np.float64), np.ones(N_TRAIN)]
    lstsq = np.linalg.lstsq(design, y_train.numpy()[:, 0].astype(np.float64), rcond=None)[0]

    torch.save(model.state_dict(), HERE / WEIGHTS)
    metrics = {
        "true_slope": TRUE_SLOPE,
        "true_intercept": TRUE_INTERCEPT,
        "learned_slope": [round(v, 6) for v in model.slope.detach().tolist()],
        "learned_intercept": round(model.intercept.item(), 6),
        "least_squares_slope": [round(float(v), 6) for v in lstsq[:2]],
        "least_squares_intercept": round(float(lstsq[2]), 6),
        "train_mse": round(train_mse, 6),
        "test_mse": round(test_mse, 6),
        "noise_std": NOISE_STD,
        "n_train": N_TRAIN,
        "n_test": N_TEST,
        "steps": STEPS,
        "lr": LR,
        "seed": SEED,
    }
    write_manifest(metrics)
    print(json.dumps(metrics, indent=2))
    print(f"training wall time: {wall:.2f} s")


if __name__ == "__main__":
    main()
