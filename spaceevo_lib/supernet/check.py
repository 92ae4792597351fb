"""The weight-sharing promise, checked live: every extracted subnet computes what the supernet
computes for it (the search-spaces chapter shows this table; tests assert it)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ..data import calibration_images
from ..nn.bn import recalibrate_bn
from ..nn.flops import profile
from ..space import get_hyperspace
from .network import Supernet


@torch.no_grad()
def extraction_check(supernet: Supernet, images: torch.Tensor, n_random: int,
                     seed: int = 0):
    """Min, max and ``n_random`` random subnets: size, MFLOPs, and the largest difference
    between the supernet's output and the extracted standalone network's on ``images``.

    BN statistics are first re-estimated on the images for each subnet (as the paper does per
    subnet), so that outputs depend on the input and a wrong weight copy would show.
    """
    rng = np.random.default_rng(seed)
    picks = [("min", supernet.sample_min()), ("max", supernet.sample_max())]
    picks += [(f"random {i + 1}", supernet.sample_random(rng)) for i in range(n_random)]
    rows = []
    for label, sub in picks:
        supernet.set_active_subnet(sub)
        x = F.interpolate(images, size=(sub.resolution,) * 2, mode="bicubic",
                          align_corners=False)
        recalibrate_bn(supernet, [x])
        y_super = supernet(x)
        static = supernet.extract_subnet(sub)
        y_static = static(x)
        prof = profile(static, static.input_shape)
        rows.append({"subnet": label, "resolution": sub.resolution,
                     "depths": "".join(map(str, sub.depths)), "blocks": sub.n_blocks,
                     "mparams": prof["mparams"], "mflops": prof["mflops_paper"],
                     "max |supernet - extracted|": float((y_super - y_static).abs().max()),
                     "output scale": float(y_super.abs().max())})
    return pd.DataFrame(rows)


def demo_images(space, n: int, seed: int = 0) -> torch.Tensor:
    """``n`` normalised real Imagenette images at the file resolution closest to the space's
    largest resolution (32 or 64 px); the supernet resizes them to each subnet's resolution."""
    top = max(get_hyperspace(space.hyperspace).resolutions)
    return torch.from_numpy(calibration_images(n, seed, resolution=32 if top <= 32 else 64))
