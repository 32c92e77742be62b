"""Adapting the shipped model to a recording: in the app's call and through the CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import load_file

from eegvlm_desktop import cli
from eegvlm_desktop.core.errors import EEGVLMError
from eegvlm_desktop.core.hypnogram.read import read_hypnogram
from eegvlm_desktop.core.recording.recording import read_recording
from eegvlm_desktop.core.staging.adapt import AdaptSettings, Head, HeadData
from eegvlm_desktop.core.staging.fusion import Fusion
from eegvlm_desktop.ml.adapt import (RSN_FILE, adapt_to_recording, load_rehearsal,
                                     parent_head, save_adapted)
from eegvlm_desktop.ml.variants import VariantRecording, variant_views
from eegvlm_desktop.ml.vlm.weights import load_model, read_manifest
from tests.conftest import EXAMPLE_HYP, EXAMPLE_PSG, REPO

DEFAULT = REPO / "model_weights" / "default"
FIRST, N_EPOCHS = 280, 120  # one hour of the example night (the stagers read all of it)


@pytest.fixture(scope="module")
def hour(tmp_path_factory):
    """An hour of the example night as an EDF, and its expert stages by epoch."""
    import mne

    rec = read_recording(EXAMPLE_PSG)
    hyp = read_hypnogram(EXAMPLE_HYP, recording_start=rec.meas_date,
                         recording_duration=rec.duration).hypnogram
    raw = mne.io.read_raw_edf(EXAMPLE_PSG, preload=True, verbose="error")
    raw.crop(FIRST * 30.0, (FIRST + N_EPOCHS) * 30.0, include_tmax=False)
    path = tmp_path_factory.mktemp("hour") / "hour.edf"
    mne.export.export_raw(path, raw, fmt="edf", overwrite=True, verbose="error")
    return path, {e: hyp[FIRST + e] for e in range(N_EPOCHS)}


@pytest.fixture(scope="module")
def night(hour):
    path, stages = hour
    return read_recording(path), {e: stages[e] for e in range(20, 80)}


def _log_softmax(z):
    z = z - z.max(1, keepdims=True)
    return z - np.log(np.exp(z).sum(1, keepdims=True))


def test_saved_folder_gives_the_adapted_layer(tmp_path):
    manifest = read_manifest(DEFAULT)
    parent = parent_head(DEFAULT, manifest)
    rng = np.random.default_rng(0)
    head = Head(0.3, 0.5, parent.layer + rng.normal(0, 0.01, parent.layer.shape), parent.bias)
    out = save_adapted(DEFAULT, manifest, head, tmp_path / "m", {
        "name": "m", "adaptation": {"data": {"recordings": ["x.edf"]}}})
    _, _, new = load_model(out)  # every checksum verifies
    arrays = load_file(str(out / RSN_FILE))
    x = HeadData(_log_softmax(rng.normal(size=(7, 5))), _log_softmax(rng.normal(size=(7, 5))),
                 rng.normal(size=(7, parent.layer.shape[1])))
    rsn = _log_softmax(x.seq @ arrays["classifier.weight"].T.astype(float)
                       + arrays["classifier.bias"])
    pooled = Fusion.from_dict(new["fusion"]).pool({"vlm": x.vlm, "yasa": x.yasa, "rsn": rsn})
    assert np.allclose(pooled, np.exp(head.log_proba(x)), atol=1e-4)
    with pytest.raises(EEGVLMError, match="already exists"):
        save_adapted(DEFAULT, manifest, head, out, {})


def test_rehearsal_ships_with_the_default_model():
    r = load_rehearsal(DEFAULT)
    assert len(r) == 841 and set(np.unique(r.y)) == {0, 1, 2, 3, 4}
    assert len(load_rehearsal(DEFAULT, exclude_epochs=range(0, 2000))) == 0


def test_adapt_to_recording_saves_a_model_with_its_card(night, tmp_path):
    rec, labels = night
    steps, out = [], tmp_path / "default-adapted"
    o = adapt_to_recording(DEFAULT, rec, labels, out, name="example.edf",
                           progress=lambda d, t: steps.append((d, t)))
    assert steps[0] == (0, 3) and steps[-1] == (3, 3)
    card = load_model(out)[2]["card"]
    assert card["parent_model"]["folder"] == str(DEFAULT)
    assert card["adaptation"]["data"]["n_epochs"] == 48
    assert card["adaptation"]["data"]["held_out_epochs"] == list(range(68, 80))
    assert card["metrics"]["before"]["n_epochs"] == card["metrics"]["after"]["n_epochs"] == 12
    assert o.report.n_epochs == 48 and "parent" in o.report.cv_log_loss
    w = card["adaptation"]["pool_weights"]  # how much the pool trusts each stager
    assert w["vlm"][0] == 0.1204 and w["yasa"][0] == 0.6907  # the parent's weights first
    assert o.report.chosen in card["adaptation"]["method"]
    assert "example.edf" in card["training_data"]["recordings"]
    read_manifest(DEFAULT)  # the parent is untouched (its checksums still verify)
    load_model(DEFAULT)


def test_cancel_leaves_nothing(night, tmp_path):
    rec, labels = night
    with pytest.raises(InterruptedError):
        adapt_to_recording(DEFAULT, rec, labels, tmp_path / "m", name="x",
                           should_stop=lambda: True)
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def half_export(hour, tmp_path_factory):
    """The first 40 scored epochs of the hour, exported for fine-tuning (the CLI's input)."""
    path, stages = hour
    tmp = tmp_path_factory.mktemp("export")
    csv = tmp / "half.csv"
    csv.write_text("onset,duration,stage\n" + "".join(
        f"{30 * e},30,{stages[e]}\n" for e in range(40)), encoding="utf-8")
    assert cli.main(["export", str(path), str(tmp / "exp"), "--hypnogram", str(csv)]) == 0
    return tmp / "exp"


def test_cli_export_then_finetune_adapts(half_export, tmp_path, capsys):
    """The path a lab takes: export the scored half of a night, `eegvlm finetune` it."""
    capsys.readouterr()
    assert cli.main(["finetune", "--model", str(DEFAULT), "--data", str(half_export),
                     "--out", str(tmp_path / "ad"), "--no-progress"]) == 0
    result = json.loads(capsys.readouterr().out)
    # The last 8 epochs check the fit on the first 32; the saved model then fits all 40.
    assert result["method"] == "adapt" and result["examples"] == 40
    assert result["check_guard"]["n_epochs"] == 32
    assert result["metrics_before"]["n_epochs"] == 8
    card = load_model(tmp_path / "ad")[2]["card"]
    assert card["adaptation"]["data"]["exports"] == ["exp"]
    assert card["adaptation"]["data"]["n_epochs"] == 40
    assert card["adaptation"]["check_guard"]["n_epochs"] == 32
    assert "no longer unseen" in card["metrics"]["split"]
    assert cli.main(["finetune", "--model", str(DEFAULT), "--data", str(half_export),
                     "--out", str(tmp_path / "kept"), "--no-progress", "--keep-held-out"]) == 0
    kept = json.loads(capsys.readouterr().out)
    assert kept["examples"] == 32 and kept["check_guard"] is None
    assert kept["metrics_after"] == result["metrics_after"]  # the same check, either way
    card = load_model(tmp_path / "kept")[2]["card"]
    assert card["adaptation"]["data"]["n_epochs"] == 32
    assert "never fitted on" in card["metrics"]["split"]


def test_refit_fits_the_held_out_epochs_variants_only_after_the_check(half_export, tmp_path,
                                                                     monkeypatch):
    import eegvlm_desktop.ml.adapt as adapt

    fits = []
    real = adapt.adapt_layer

    def fake_variants(recording, roles, x, epochs, *args, **kwargs):
        return x.subset(np.arange(len(x))), np.arange(len(x))  # one variant per epoch

    def spy(parent, new, rehearsal, settings, should_stop, variants=None, source=None):
        fits.append((len(new), None if source is None else list(source)))
        return real(parent, new, rehearsal, settings, should_stop, variants, source)

    monkeypatch.setattr(adapt, "night_variants", fake_variants)
    monkeypatch.setattr(adapt, "adapt_layer", spy)
    o = adapt.adapt_from_exports(DEFAULT, [half_export], tmp_path / "m",
                                 settings=AdaptSettings(variant_gains=(1.4,)))
    # The check: 32 epochs and their 32 variants (none of a held-out epoch); then all 40.
    assert fits == [(32, list(range(32))), (40, list(range(40)))]
    assert o.check.n_variants == 32 and o.report.n_variants == 40
    assert o.before["n_epochs"] == 8


def test_among_keeps_the_variants_of_the_given_rows_only():
    from eegvlm_desktop.ml.adapt import _among

    rng = np.random.default_rng(1)
    v = HeadData(_log_softmax(rng.normal(size=(6, 5))), _log_softmax(rng.normal(size=(6, 5))),
                 rng.normal(size=(6, 3)), np.arange(6) % 5)
    src = np.array([0, 0, 3, 5, 7, 8])  # positions of their epochs among every epoch
    sub, pos = _among((v, src), np.array([0, 3, 4, 8]))
    assert np.allclose(sub.seq, v.seq[[0, 1, 2, 5]])
    assert list(pos) == [0, 0, 1, 3]  # positions in the given rows
    assert _among(None, np.arange(3)) is None


def test_variant_views_scale_and_shift_the_night(night):
    rec, _ = night
    sf = rec.sfreq
    (_, gain, g_step), (_, late, l_step), (_, early, e_step) = variant_views(
        rec, AdaptSettings(variant_gains=(1.4,), variant_shifts=(3.0, -3.0)))
    picks = [0, 1]
    a = rec.get_data(picks, 100, 400)
    assert g_step == 0 and np.allclose(gain.get_data(picks, 100, 400), 1.4 * a)
    assert np.allclose(rec.get_data(picks, 100, 400), a)  # the source is not scaled in place
    # Labelled epoch e, moved 3 s later, is the view's epoch e; moved 3 s earlier, e - 1.
    e = 10
    at = lambda view, k: view.get_data(picks, int(k * 30 * sf), int((k + 1) * 30 * sf))  # noqa
    assert l_step == 0 and np.allclose(
        at(late, e), rec.get_data(picks, int((30 * e + 3) * sf), int((30 * e + 33) * sf)))
    assert e_step == 1 and np.allclose(
        at(early, e - e_step), rec.get_data(picks, int((30 * e - 3) * sf),
                                            int((30 * e + 27) * sf)))
    assert late.n_epochs() == early.n_epochs() == rec.n_epochs(30.0) - 1
    with pytest.raises(EEGVLMError, match="'gain'.*got 0"):
        VariantRecording(rec, gain=0)


def test_gain_variants_change_the_inputs_and_the_card_says_so(night, tmp_path, monkeypatch):
    """The app's path with one gain variant: the variant's image and YASA inputs differ from
    the recording's (same epochs), only tuning epochs get variants, and the card records it."""
    import eegvlm_desktop.ml.adapt as adapt

    rec, labels = night
    calls, real = [], adapt.recording_inputs

    def spy(recording, roles, epochs, *args, **kwargs):
        x = real(recording, roles, epochs, *args, **kwargs)
        calls.append((recording, np.asarray(epochs), x))
        return x

    monkeypatch.setattr(adapt, "recording_inputs", spy)
    out = tmp_path / "m"
    o = adapt_to_recording(DEFAULT, rec, labels, out, name="example.edf",
                           settings=AdaptSettings(variant_gains=(1.4,)))
    (r0, e0, x0), (r1, e1, x1) = calls
    assert r0 is rec and isinstance(r1, VariantRecording)
    assert list(e1) == list(e0[:48])  # the 12 held-out epochs have no variant
    assert np.abs(x1.vlm - x0.vlm[:48]).max() > 0.05
    assert np.abs(x1.yasa - x0.yasa[:48]).max() > 0.05
    assert o.report.n_variants == 48
    card = load_model(out)[2]["card"]
    assert card["adaptation"]["settings"]["variant_gains"] == [1.4]
    assert card["adaptation"]["guard"]["n_variants"] == 48
    assert "training variants" in card["adaptation"]["method"]
    assert card["metrics"]["before"]["n_epochs"] == 12


def test_cli_refuses_a_variant_gain_of_one_before_reading_anything(tmp_path, capsys):
    assert cli.main(["finetune", "--model", str(DEFAULT), "--data", str(tmp_path),
                     "--out", str(tmp_path / "ad"), "--variant-gains", "0.7", "1"]) == 2
    err = capsys.readouterr().err
    assert "--variant-gains" in err and "got (0.7, 1.0)" in err
    assert not (tmp_path / "ad").exists()
