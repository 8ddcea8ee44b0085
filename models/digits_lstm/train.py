"""Train models/digits_lstm on scikit-learn's 8x8 digits read as sequences (CPU, a few seconds).

Data: ``sklearn.datasets.load_digits()`` (1797 images, 10 classes), pixels
scaled to [0, 1] by /16, each image kept as ``[8, 8]`` = 8 time steps (rows)
of 8 features, so the model input is ``[N, 8, 8]`` (batch_first); the fixed
split ``train_test_split(test_size=0.25, random_state=0)`` of ``digits_cnn``.
Training: AdamW + cosine learning-rate decay, mini-batches of 64, seeded.

Writes next to this file:
- ``digits_lstm.pt``: the state_dict (``torch.save(model.state_dict())``),
- ``sample_inputs.npz``: the first 8 held-back images (key ``x``, float32
  ``[8, 8, 8]``) and their labels (key ``y``, int64 ``[8]``),
- ``heldout.npz``: the whole held-back set the accuracy is measured on
  (key ``x``, float32 ``[450, 8, 8]``; key ``y``, int64 ``[450]``),
- the ``metrics`` of ``bridge.json``.

Run from the repo root:  python models/digits_lstm/train.py
"""

import io
import json
import random
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from model import DigitsLSTM  # noqa: E402

SEED = 0
EPOCHS = 40
BATCH = 64
LR = 2e-2
WEIGHT_DECAY = 1e-4
KWARGS = {"features": 8, "hidden": 32, "num_classes": 10}
WEIGHTS = "digits_lstm.pt"
N_SAMPLES = 8


def load_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    digits = load_digits()
    x = digits.images.astype(np.float32) / 16.0  # [N, 8 rows = time steps, 8 columns = features]
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=0)
    return x_train, x_test, y_train, y_test


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    """Like ``np.savez_compressed`` but with a fixed zip timestamp, so reruns are byte-identical."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, buf.getvalue())


def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    model.eval()
    with torch.no_grad():
        logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits, y).item()
        acc = (logits.argmax(1) == y).float().mean().item()
    return loss, acc


def write_manifest(metrics: dict) -> None:
    path = HERE / "bridge.json"
    old = json.loads(path.read_text()) if path.exists() else {}
    manifest = {
        "module": "model.py:DigitsLSTM",
        "kwargs": KWARGS,
        "weights": WEIGHTS,
        "inputs": [{"name": "x", "shape": [1, 8, 8], "dtype": "float32"}],
        "parity_inputs": "sample_inputs.npz",  # real held-back digits, checked besides seeded random inputs
        **{k: old[k] for k in ("preprocess", "postprocess") if k in old},  # declared by hand (bridge serve)
        "description": old.get(
            "description",
            "One-layer LSTM(8, 32, batch_first=True) reading each sklearn load_digits "
            "image as 8 time steps (rows) of 8 features (pixels/16 in [0, 1]), then "
            "Linear(32, 10) on the last time step's output; returns 10 logits. "
            "Exercises nn.LSTM (tuple output), a time-axis slice and Linear.",
        ),
        "metrics": metrics,
    }
    path.write_text(json.dumps(manifest, indent=2) + "\n")


def train(model: torch.nn.Module, xt: torch.Tensor, yt: torch.Tensor, xv, yv) -> None:
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    steps_per_epoch = (len(xt) + BATCH - 1) // BATCH
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=EPOCHS * steps_per_epoch)
    gen = torch.Generator().manual_seed(SEED)
    for epoch in range(EPOCHS):
        model.train()
        perm = torch.randperm(len(xt), generator=gen)
        for i in range(0, len(xt), BATCH):
            idx = perm[i : i + BATCH]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            sched.step()
        if (epoch + 1) % 5 == 0:
            _, acc = evaluate(model, xv, yv)
            print(f"epoch {epoch + 1:3d}  last batch loss {loss.item():.4f}  held-back acc {acc:.4f}")


def main() -> None:
    random.seed(SEED)
    np.random.seed(SEED)
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)

    x_train, x_test, y_train, y_test = load_split()
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    xv, yv = torch.from_numpy(x_test), torch.from_numpy(y_test)

    model = DigitsLSTM(**KWARGS)
    t0 = time.perf_counter()
    train(model, xt, yt, xv, yv)
    wall = time.perf_counter() - t0

    train_loss, train_acc = evaluate(model, xt, yt)
    test_loss, test_acc = evaluate(model, xv, yv)

    torch.save(model.state_dict(), HERE / WEIGHTS)
    save_npz(HERE / "sample_inputs.npz", x=x_test[:N_SAMPLES], y=y_test[:N_SAMPLES])
    save_npz(HERE / "heldout.npz", x=x_test, y=y_test)
    with torch.no_grad():
        sample_pred = model(xv[:N_SAMPLES]).argmax(1).tolist()

    metrics = {
        "test_accuracy": round(test_acc, 6),
        "test_correct": int(round(test_acc * len(xv))),
        "test_loss": round(test_loss, 6),
        "train_accuracy": round(train_acc, 6),
        "n_train": len(xt),
        "n_test": len(xv),
        "split": "sklearn train_test_split(test_size=0.25, random_state=0)",
        "heldout": "heldout.npz (x float32 [450, 8, 8], y int64 [450]): the test split above",
        "parameters": sum(p.numel() for p in model.parameters()),
        "epochs": EPOCHS,
        "batch_size": BATCH,
        "optimizer": f"AdamW(lr={LR}, weight_decay={WEIGHT_DECAY}) + cosine decay",
        "seed": SEED,
        "sample_labels": y_test[:N_SAMPLES].tolist(),
        "sample_predictions": sample_pred,
    }
    write_manifest(metrics)
    print(json.dumps(metrics, indent=2))
    print(f"training wall time: {wall:.2f} s")


if __name__ == "__main__":
    main()
