"""Hold out part of the fine-tuning data to measure what fine-tuning did."""
from __future__ import annotations

import numpy as np

from eegvlm_desktop.core.export.dataset import NightData


#: Share of each export's epochs (the last ones in time) kept out of fine-tuning to measure it.
HOLDOUT = 0.2


def split_holdout(data: NightData, share: float = HOLDOUT) -> tuple[NightData, NightData]:
    """(tune, held-out) examples: the last ``share`` of each night in time, so the held-out
    epochs are a contiguous stretch never fine-tuned on (neighbours leak less than a random
    pick would)."""
    tune, held = [], []
    for night in np.unique(data.night):
        idx = np.flatnonzero(data.night == night)
        idx = idx[np.argsort(data.epochs[idx], kind="stable")]
        cut = len(idx) - int(round(share * len(idx)))
        tune.extend(idx[:cut])
        held.extend(idx[cut:])
    return data.subset(np.array(tune, int)), data.subset(np.array(held, int))
