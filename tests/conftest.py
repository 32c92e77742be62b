"""Shared test set-up: headless Qt before anything imports it, and tiny EDF factories."""
from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MNE_LOGGING_LEVEL", "ERROR")

import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SLEEP_EDF_PSG = SHARED_DATA / "sleep-edf" / "SC4001E0-PSG.edf"
SLEEP_EDF_HYP = SHARED_DATA / "sleep-edf" / "SC4001EC-Hypnogram.edf"
REPO = Path(__file__).resolve().parents[1]
EXAMPLE_PSG = REPO / "resources" / "example" / "SC4001-example-PSG.edf"
EXAMPLE_HYP = REPO / "resources" / "example" / "SC4001-example-Hypnogram.edf"


def write_edf(
    path: Path,
    duration_s: float = 300.0,
    sfreq: float = 100.0,
    ch_names: tuple[str, ...] = ("EEG Fpz-Cz", "EEG Pz-Oz", "EOG horizontal", "EMG submental"),
    seed: int = 0,
) -> Path:
    """Write a small EDF with plausible µV-scale noise plus a 10 Hz alpha on EEG channels."""
    import mne

    rng = np.random.default_rng(seed)
    n = int(duration_s * sfreq)
    t = np.arange(n) / sfreq
    data = rng.normal(0, 20e-6, (len(ch_names), n))
    data[0] += 30e-6 * np.sin(2 * np.pi * 10 * t)
    info = mne.create_info(list(ch_names), sfreq, "eeg")
    raw = mne.io.RawArray(data, info, verbose="error")
    raw.set_meas_date(1_000_000_000)
    mne.export.export_raw(path, raw, fmt="edf", overwrite=True, verbose="error")
    return path


#: What :func:`write_broken_edf` can break.
BROKEN_SIGNALS = ("flat", "tiny", "no_range", "clipped")


def write_broken_edf(path: Path, problem: str, duration_s: float = 600.0) -> Path:
    """A 4-channel EDF like :func:`write_edf` whose two EEG channels are broken.

    ``problem``: 'flat' (all zeros), 'tiny' (every channel in volts labelled µV: 1e-6 of the
    right size), 'no_range' (the header's physical minimum = maximum = 0), 'clipped' (most
    samples cut off at +-50 µV).
    """
    import mne

    if problem not in BROKEN_SIGNALS:
        raise ValueError(f"Invalid value for the 'problem' parameter. Allowed values are "
                         f"{', '.join(BROKEN_SIGNALS)}, but got {problem!r} instead.")
    names = ["EEG Fpz-Cz", "EEG Pz-Oz", "EOG horizontal", "EMG submental"]
    data = np.random.default_rng(0).normal(0, 20e-6, (4, int(duration_s * 100)))
    if problem == "flat":
        data[:2] = 0.0
    elif problem == "tiny":
        data *= 1e-6
    elif problem == "clipped":
        data[:2] = np.clip(data[:2] * 5, -50e-6, 50e-6)
    raw = mne.io.RawArray(data, mne.create_info(names, 100.0, "eeg"), verbose="error")
    raw.set_meas_date(1_000_000_000)
    mne.export.export_raw(path, raw, fmt="edf", overwrite=True, verbose="error")
    if problem == "no_range":
        header = bytearray(path.read_bytes())
        ns = int(header[252:256])
        pmin = 256 + ns * (16 + 80 + 8)  # after labels, transducers and units
        for field in (pmin, pmin + 8 * ns):  # physical minimum, then maximum
            for ch in (0, 1):
                header[field + 8 * ch:field + 8 * ch + 8] = b"0       "
        path.write_bytes(bytes(header))
    return path


@pytest.fixture
def tiny_edf(tmp_path: Path) -> Path:
    """A 5-minute, 4-channel, 100 Hz EDF (10 epochs) in a fresh temp folder."""
    return write_edf(tmp_path / "tiny.edf")


@pytest.fixture
def sleep_edf_psg() -> Path:
    """The real Sleep-EDF SC4001 night from ../shared/data, or skip when absent."""
    if not SLEEP_EDF_PSG.exists():
        pytest.skip("../shared/data/sleep-edf is not present on this machine")
    return SLEEP_EDF_PSG


@pytest.fixture
def sleep_edf_hyp() -> Path:
    if not SLEEP_EDF_HYP.exists():
        pytest.skip("../shared/data/sleep-edf is not present on this machine")
    return SLEEP_EDF_HYP
