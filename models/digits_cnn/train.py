"""Train models/digits_cnn on scikit-learn's 8x8 digits (CPU, a few seconds).

Data: ``sklearn.datasets.load_digits()`` (1797 images, 10 classes), pixels
scaled to [0, 1] by /16, reshaped to NCHW ``[N, 1, 8, 8]``; fixed split
``train_test_split(test_size=0.25, random_state=0)``.
Training: Adam + cosine learning-rate decay, mini-batches of 64, seeded.

Writes next to this file:
- ``digits_cnn.pt``: the state_dict (``torch.save(model.state_dict())``),
- ``sample_inputs.npz``: the first 8 test images (key ``x``, float32
  ``[8, 1, 8, 8]``) and their labels (key ``y``, int64 ``[8]``),
- the ``metrics`` of ``bridge.json``.

Run from the repo root:  python models/digits_cnn/train.py
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
from model import DigitsCNN  # noqa: E402

SEED = 0
EPOCHS = 30
BATCH = 64
LR = 3e-3
WEIGHT_DECAY = 1e-4
KWARGS = {"c1": 16, "c2": 32, "hidden": 64, "num_classes": 10, "dropout": 0.2}
WEIGHTS = "digits_cnn.pt"
N_SAMPLES = 8


def load_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    digits = load_digits()
    x = (digits.images.astype(np.float32) / 16.0)[:, None, :, :]  # [N, 1, 8, 8]
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=0)
    return x_train, x_test, y_train, y_test


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    """Like ``np.savez`` but with a fixed zip timestamp, so reruns are byte-identical."""
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
        "module": "model.py:DigitsCNN",
        "kwargs": KWARGS,
        "weights": WEIGHTS,
        "inputs": [{"name": "x", "shape": [1, 1, 8, 8], "dtype": "float32"}],
        "parity_inputs": "sample_inputs.npz",  # real test digits, checked besides seeded random inputs
        **{k: old[k] for k in ("preprocess", "postprocess") if k in old},  # declared by hand (bridge serve)
        "description": old.get(
            "description",
            "Small CNN for sklearn load_digits (8x8 grey, pixels/16 in [0, 1], NCHW) "
            "returning 10 logits. Exercises Conv2d with zero padding, a depthwise "
            "reflect-padded conv, a 1x1 conv, an unpadded conv, BatchNorm2d, "
            "MaxPool2d, Dropout, Flatten and Linear.",
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

    x_train, x_test, y_train, y_test = load_split()
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    xv, yv = torch.from_numpy(x_test), torch.from_numpy(y_test)

    model = DigitsCNN(**KWARGS)
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    steps_per_epoch = (len(xt) + BATCH - 1) // BATCH
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=EPOCHS * steps_per_epoch)
    gen = torch.Generator().manual_seed(SEED)

    t0 = time.perf_counter()
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
            print(f"epoch {epoch + 1:3d}  last batch loss {loss.item():.4f}  test acc {acc:.4f}")
    wall = time.perf_counter() - t0

    train_loss, train_acc = evaluate(model, xt, yt)
    test_loss, test_acc = evaluate(model, xv, yv)

    torch.save(model.state_dict(), HERE / WEIGHTS)
    save_npz(HERE / "sample_inputs.npz", x=x_test[:N_SAMPLES], y=y_test[:N_SAMPLES])
    with torch.no_grad():
        sample_pred = model(xv[:N_SAMPLES]).argmax(1).tolist()

    metrics = {
        "test_accuracy": round(test_acc, 6),
        "test_loss": round(test_loss, 6),
        "train_accuracy": round(train_acc, 6),
        "n_train": len(xt),
        "n_test": len(xv),
        "split": "sklearn train_test_split(test_size=0.25, random_state=0)",
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
