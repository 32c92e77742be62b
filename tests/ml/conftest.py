"""Tiny tokenizer / model fixtures shared by the VLM tests (2 CPU threads, tiny preset)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from eegvlm_desktop.ml.vlm.config import VLMConfig
from eegvlm_desktop.ml.vlm.model import EEGVLM
from eegvlm_desktop.ml.vlm.tokenizer import encode_example, pad_batch, train_tokenizer

torch.set_num_threads(2)

TEXTS = [
    "Alpha waves cover 60 % of the epoch; chin tone is high. Stage: W",
    "Alpha is replaced by low-amplitude 4-7 Hz activity; no spindles. Stage: N1",
    "Two sleep spindles at 13 Hz and one K-complex; slow waves 5 %. Stage: N2",
    "Slow waves (0.5-2 Hz, > 75 µV) cover 40 % of the epoch. Stage: N3",
    "Low-amplitude mixed frequency, rapid eye movements, low chin EMG. Stage: R",
]
PROMPT = "Describe the EEG features of this epoch, then name the stage."


@pytest.fixture(scope="session")
def tokenizer():
    return train_tokenizer(TEXTS + [PROMPT], vocab_size=300)


def make_config(tokenizer, fusion: str = "both") -> VLMConfig:
    cfg = VLMConfig.preset("tiny")
    cfg.fusion = fusion
    return cfg.bind_tokenizer(tokenizer)


def make_model(tokenizer, fusion: str = "both", seed: int = 0) -> EEGVLM:
    torch.manual_seed(seed)
    return EEGVLM(make_config(tokenizer, fusion))


@pytest.fixture(scope="session")
def images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (8, 224, 224, 3), dtype=np.uint8)


@pytest.fixture(scope="session")
def batch(tokenizer):
    """8 fixed examples: input_ids, attention_mask, labels, stage_labels."""
    stages = [0, 1, 2, 3, 4, 0, 2, 3]
    ex = [encode_example(tokenizer, PROMPT, TEXTS[s]) for s in stages]
    ids, mask = pad_batch([e[0] for e in ex], tokenizer.pad_token_id)
    labels, _ = pad_batch([e[1] for e in ex], -100)
    return (torch.tensor(ids), torch.tensor(mask), torch.tensor(labels), torch.tensor(stages))
