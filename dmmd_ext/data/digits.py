"""scikit-learn's 8x8 handwritten digits (bundled with scikit-learn, no download)
as sequences of 64 tokens (row-major pixels) over 17 grey levels (0..16).
The last 297 of the 1797 images (in scikit-learn's order) are the validation set."""

from __future__ import annotations

import torch

from .base import TokenDataset

N_VAL = 297


def digits_dataset() -> TokenDataset:
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise ImportError("the 'digits' dataset needs scikit-learn (an optional extra): "
                          "pip install scikit-learn") from e
    d = load_digits()
    x = torch.as_tensor(d.images.reshape(len(d.images), 64), dtype=torch.long)
    labels = torch.as_tensor(d.target, dtype=torch.long)
    ds = TokenDataset("digits", x[:-N_VAL], x[-N_VAL:], 17,
                      info={"image_shape": [8, 8], "grey_levels": 17})
    ds.train_labels, ds.val_labels = labels[:-N_VAL], labels[-N_VAL:]
    return ds
