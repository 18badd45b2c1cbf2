# Generated from training/w3d4_classifier.py by `python -m grader build`: edit that file, not this one.
"""A small digits classifier whose penultimate layer gives the features of the quality measures.

The Frechet distance and the classifier score of part 3 need a network that already knows what
digits look like. FID uses Inception v3 trained on ImageNet; for 8x8 digits a tiny CNN trained on
the training split of scikit-learn's digits does the same job, and it ships with the lesson:

    classifier = load_classifier()              # the shipped weights, SHA-256 verified
    feats = classifier.features(images)         # (n, 1, 8, 8) in [-1, 1] -> (n, FEATURE_DIM)
    probs = classifier.probabilities(images)    # (n, 10), rows sum to 1

`python -m training classifier` trains it again (seeded, under ten seconds on a CPU), writes
`w3d4_digits_classifier.safetensors` with its `.sha256`, and prints its held-out accuracy. It is
trained on the training split only (`w3d4_digits.load_digits_split`), so held-out digits are as
new to it as to the Unet.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Union

import torch as t
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from w3d4_digits import CheckpointError, load_digits_split, sha256_file, sha256_of, verify_sha256

CLASSIFIER_CHECKPOINT = Path(__file__).with_name("w3d4_digits_classifier.safetensors")
CLASSIFIER_FORMAT = "w3d4-digits-classifier/1"
METADATA_KEY = "w3d4"
FEATURE_DIM = 32  # the penultimate layer: small enough for a well-estimated covariance from 200 images
N_CLASSES = 10
EPOCHS, BATCH_SIZE, LR, WEIGHT_DECAY, SEED = 40, 64, 3e-3, 1e-4, 0
LABEL_SEED = 0  # the split uses w3d4_digits.SPLIT_SEED; the labels follow the same permutation


class DigitsClassifier(nn.Module):
    """conv 3x3 (16) -> ReLU -> conv 3x3 stride 2 (32) -> ReLU -> Linear to FEATURE_DIM -> ReLU -> Linear to 10."""

    def __init__(self, feature_dim: int = FEATURE_DIM, n_classes: int = N_CLASSES):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, stride=2, padding=1)
        self.hidden = nn.Linear(32 * 4 * 4, feature_dim)
        self.head = nn.Linear(feature_dim, n_classes)

    def features(self, images: t.Tensor) -> t.Tensor:
        """images: (n, 1, 8, 8) in [-1, 1] -> (n, feature_dim), the penultimate layer (after its ReLU)."""
        h = F.relu(self.conv2(F.relu(self.conv1(images))))
        return F.relu(self.hidden(rearrange(h, "n c h w -> n (c h w)")))

    def forward(self, images: t.Tensor) -> t.Tensor:
        """images: (n, 1, 8, 8) -> logits (n, n_classes)"""
        return self.head(self.features(images))

    @t.inference_mode()
    def probabilities(self, images: t.Tensor) -> t.Tensor:
        """images: (n, 1, 8, 8) -> p(class | image), (n, n_classes), float64 rows that sum to 1."""
        self.eval()
        return F.softmax(self(images.float()).double(), dim=-1)

    @t.inference_mode()
    def feature_matrix(self, images: t.Tensor) -> t.Tensor:
        """images: (n, 1, 8, 8) -> features (n, feature_dim) as float64, for the statistics."""
        self.eval()
        return self.features(images.float()).double()


def digits_labels_split(seed: int = LABEL_SEED) -> tuple[t.Tensor, t.Tensor]:
    """The class (0-9) of each image of `load_digits_split()`: (train_labels, heldout_labels)."""
    from sklearn.datasets import load_digits

    from w3d4_digits import N_HELD_OUT, SPLIT_SEED

    labels = t.tensor(load_digits().target)
    order = t.randperm(len(labels), generator=t.Generator().manual_seed(SPLIT_SEED))
    return labels[order[N_HELD_OUT:]], labels[order[:N_HELD_OUT]]


def accuracy(model: DigitsClassifier, images: t.Tensor, labels: t.Tensor) -> float:
    return (model.probabilities(images).argmax(-1) == labels).double().mean().item()


def train_classifier(epochs: int = EPOCHS, seed: int = SEED) -> tuple[DigitsClassifier, dict]:
    """Train on the training split only, with small random shifts of one pixel (so that it judges
    shapes, not exact positions). Returns (model, record of the accuracies and settings)."""
    trainset, heldout = load_digits_split()
    train_labels, heldout_labels = digits_labels_split()
    t.manual_seed(seed)
    model = DigitsClassifier()
    optimiser = t.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    generator = t.Generator().manual_seed(seed)
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        for batch in t.randperm(len(trainset), generator=generator).split(BATCH_SIZE):
            shift = t.randint(-1, 2, (2,), generator=generator).tolist()
            # Shifting in pixels that are background (-1) keeps the digit's look.
            images = t.roll(trainset[batch], shifts=shift, dims=(-2, -1))
            loss = F.cross_entropy(model(images), train_labels[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    record = {
        "train_accuracy": accuracy(model, trainset, train_labels),
        "heldout_accuracy": accuracy(model, heldout, heldout_labels),
        "epochs": epochs,
        "seed": seed,
    }
    model.seconds = time.perf_counter() - start  # printed, not saved: the file's bytes stay the same on a rerun
    return model, record


def save_classifier(model: DigitsClassifier, record: dict, path: Union[str, Path] = CLASSIFIER_CHECKPOINT) -> str:
    """Write the weights (float32) and the record to `path`, its SHA-256 to `path.sha256`; return it."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {name: p.detach().cpu().contiguous() for name, p in model.state_dict().items()}
    metadata = {"format": CLASSIFIER_FORMAT, "feature_dim": FEATURE_DIM, "record": record}
    save_file(tensors, str(path), metadata={METADATA_KEY: json.dumps(metadata, sort_keys=True)})
    digest = sha256_of(path)
    sha256_file(path).write_text(f"{digest}  {path.name}\n", encoding="utf-8")
    return digest


def load_classifier(path: Union[str, Path] = CLASSIFIER_CHECKPOINT) -> DigitsClassifier:
    """The shipped classifier, after checking the file against its .sha256; in eval mode, on the CPU."""
    from safetensors import safe_open

    path = Path(path)
    verify_sha256(path)
    with safe_open(str(path), framework="pt") as f:
        metadata = json.loads((f.metadata() or {}).get(METADATA_KEY, "{}"))
        tensors = {key: f.get_tensor(key) for key in f.keys()}
    if metadata.get("format") != CLASSIFIER_FORMAT:
        raise CheckpointError(f"{path.name} is not a {CLASSIFIER_FORMAT} checkpoint")
    model = DigitsClassifier(feature_dim=metadata["feature_dim"])
    model.load_state_dict(tensors)
    model.record = metadata["record"]
    return model.eval()


def main() -> int:
    # One thread: the same bytes on every machine with this torch version (the sums of a matmul split
    # over threads round differently), and faster than several for a network this small.
    t.set_num_threads(1)
    model, record = train_classifier()
    digest = save_classifier(model, record)
    print(f"trained the digits classifier in {model.seconds:.1f} s: accuracy {record['train_accuracy']:.3f} on the "
          f"training split, {record['heldout_accuracy']:.3f} on the held-out digits")
    print(f"wrote {CLASSIFIER_CHECKPOINT.name} (SHA-256 {digest[:16]}...) and {sha256_file(CLASSIFIER_CHECKPOINT).name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
