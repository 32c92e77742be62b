"""Fine-tuning export: selection, regenerated reasoning, de-identification, determinism,
atomicity, cancel, reading back for training, and the hypnogram-file exports."""
from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from eegvlm_desktop.core.export import finetune as export_mod
from eegvlm_desktop.core.export.finetune import export_finetune_dataset, select_epochs
from eegvlm_desktop.core.export.finetune_folder import (ExportCancelled, ExportError, decode_png,
                                                        encode_png, image_name,
                                                        load_finetune_dataset)
from eegvlm_desktop.core.export.recording import (EXPORT_FORMATS, export_hypnogram,
                                                  export_recording, labels_for_export)
from eegvlm_desktop.core.hypnogram.hypnogram import Hypnogram
from eegvlm_desktop.core.hypnogram.read import read_hypnogram
from eegvlm_desktop.core.hypnogram.write import WRITE_FORMATS
from eegvlm_desktop.core.picture.cot import PROMPT, format_answer, reasoning_steps
from eegvlm_desktop.core.picture.evidence import EpochEvidence
from eegvlm_desktop.core.picture.rendering import RENDERER_VERSION, render_night
from eegvlm_desktop.core.recording.montage import pick_roles
from eegvlm_desktop.core.recording.recording import read_recording
from eegvlm_desktop.core.stages import STAGES
from eegvlm_desktop.core.staging.model_layer import ModelLayer
from tests.conftest import write_edf

T0 = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
# Header fields of the identified test recording; each must never leave it by default.
PATIENT = "PATCODE-Quokka77 F 17-MAR-1953 Zyxwvut_Quuxley"
RECORDING = "Startdate 09-SEP-2001 RECID-Zebra42 Tech-Okapi Equip-Narwhal"
SECRETS = [b"Zyxwvut", b"Quuxley", b"Quokka77", b"17-MAR-1953", b"1953-03-17", b"Zebra42",
           b"Okapi", b"Narwhal", b"2001-09-09", b"09-SEP-2001", b"09.09.01"]

# 12 epochs: label, provenance, and the model's stage (None: the model did not run there).
LABELS = [("W", "import", "W"), ("N1", "expert", "W"), ("N2", "expert", "N3"),
          ("N2", "accepted", "N2"), ("N3", "import", None), ("R", "expert", "R"),
          ("R", "model", "R"), ("UNS", "none", "N1"), ("ART", "expert", "W"),
          ("W", "expert", "N1"), ("N2", "import", "N2"), ("N3", "accepted", "N3")]
EXPORTED = [0, 1, 2, 3, 4, 5, 9, 10, 11]  # not 'model' (6), UNS (7) or ART (8)


def fake_reasoner(recording, roles, idx):
    """Evidence without YASA: fast, and different per epoch."""
    return [EpochEvidence(
        epoch=i, eeg_channel="EEG Fpz-Cz",
        band_powers={"delta": 0.4, "theta": 0.2, "alpha": 0.2, "sigma": 0.1, "beta": 0.1},
        eeg_rms_uv=30.0 + i, n_spindles=i % 3, spindle_density=2.0 * (i % 3),
        n_slow_waves=i % 4, slow_wave_percent=30.0 if i == 2 else 5.0, n_k_complexes=1,
        n_rems=i % 2, eog_slow_power=12.0, emg_rms_uv=3.0, emg_relative=0.9 + 0.02 * i)
        for i in idx]


def scored(n_epochs: int = 12) -> tuple[Hypnogram, ModelLayer]:
    labels = (LABELS * 2)[:n_epochs]
    hyp = Hypnogram([s for s, _, _ in labels], provenance=[p for _, p, _ in labels],
                    scorer="SC4001EC-Hypnogram.edf")
    layer = ModelLayer(n_epochs, "/home/drwho/models/tiny-v1")
    for i, (_, _, m) in enumerate(labels):
        if m is not None:
            layer.set_proba([i], np.eye(len(STAGES))[[STAGES.index(m)]] * 0.8 + 0.04)
    return hyp, layer


def identified_edf(folder: Path, duration_s: float = 360.0) -> Path:
    """A tiny EDF whose header names a patient, a birth date and a recording id."""
    path = write_edf(folder / "Zyxwvut_Quuxley-night.edf", duration_s=duration_s)
    with open(path, "r+b") as f:
        f.seek(8)
        f.write(PATIENT.ljust(80).encode("ascii") + RECORDING.ljust(80).encode("ascii"))
    return path


def all_bytes(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def rec(tmp_path):
    return read_recording(identified_edf(tmp_path))


def export(rec, out, **kw):
    hyp, layer = scored()
    kw.setdefault("model_layer", layer)
    kw.setdefault("reasoner", fake_reasoner)
    kw.setdefault("created_at", T0)
    return export_finetune_dataset(rec, kw.pop("hyp", hyp), out, scorer="Dr Expert", **kw)


def test_selection_reasoning_model_answers_and_manifest(rec, tmp_path):
    manifest = {"format": 1, "renderer_version": "1", "card": {"name": "tiny-v1"}, "files": {}}
    report = export(rec, tmp_path / "out", model_manifest=manifest)
    out = tmp_path / "out"
    rows = [json.loads(line) for line in (out / "conversations.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == EXPORTED == sorted(r["epoch"] for r in rows)
    evidence = {e.epoch: e for e in fake_reasoner(None, None, range(12))}
    for r in rows:
        i = r["epoch"]
        stage, prov, model = LABELS[i]
        assert (r["stage"], r["provenance"], r["model_stage"]) == (stage, prov, model)
        assert r["onset_s"] == 30.0 * i and r["image"] == f"images/epoch_{i:05d}.png"
        assert r["prompt"] == PROMPT
        # The target is the expert's stage with reasoning rebuilt for it from the evidence.
        assert r["reasoning"] == reasoning_steps(evidence[i], stage)
        assert r["answer"] == format_answer(r["reasoning"], stage)
        assert r["answer"].endswith(f"Stage: {stage}")
        assert r["corrected"] == (model is not None and model != stage)
        assert (r["model_probs"] is None) == (model is None)
        if model is not None:
            assert max(r["model_probs"], key=r["model_probs"].get) == model
        assert r["conversations"][1]["value"] == r["answer"]
        # Every step carries its verification against the same evidence (issue 19).
        assert [c["status"] for c in r["reasoning_checks"]] == ["measured"] * 3 + [
            "verified"] * 2
        assert all(c["reasons"] == [] and c["claims"] for c in r["reasoning_checks"])
    # Epoch 2: the model said N3 (and 30 % slow waves were measured); the expert said N2.
    r2 = next(r for r in rows if r["epoch"] == 2)
    assert r2["corrected"] and "AASM rule for N2" in r2["answer"]
    assert "AASM rule for N3" not in r2["answer"]

    man = json.loads((out / "manifest.json").read_text())
    assert man["counts"] == {"W": 2, "N1": 1, "N2": 3, "N3": 2, "R": 1}
    assert man["n_corrected"] == report.n_corrected == 3  # epochs 1, 2, 9
    assert man["scorer"] == "Dr Expert" and man["created_at"] == "2030-01-02T03:04:05Z"
    assert man["renderer_version"] == RENDERER_VERSION and man["prompt"] == PROMPT
    assert man["model"]["name"] == "tiny-v1" and len(man["model"]["manifest_sha256"]) == 64
    assert man["recording"]["channel_roles"][0].startswith("EEG frontal: EEG Fpz-Cz")
    assert man["recording"]["sha256"] == hashlib.sha256(rec.path.read_bytes()).hexdigest()
    listed = {f["path"]: f["sha256"] for f in man["files"]}
    on_disk = all_bytes(out)
    assert set(listed) | {"manifest.json"} == set(on_disk) == set(report.files)
    assert all(hashlib.sha256(on_disk[p]).hexdigest() == h for p, h in listed.items())
    # The images are THE renderer's, byte for byte.
    roles = pick_roles(rec.ch_names, rec.ch_types)
    expected = render_night(rec, roles, EXPORTED)
    for k, i in enumerate(EXPORTED):
        assert np.array_equal(decode_png(on_disk[image_name(i)]), expected[k])


def test_epochs_restricts_and_bad_input_is_a_clear_error(rec, tmp_path):
    hyp, _ = scored()
    assert select_epochs(hyp) == EXPORTED
    assert select_epochs(hyp, [9, 8, 6, 2, 2]) == [2, 9]
    model_dir = tmp_path / "models" / "tiny-v1"
    model_dir.mkdir(parents=True)
    (model_dir / "MANIFEST.json").write_text('{"renderer_version": "1", "files": {}}')
    report = export(rec, tmp_path / "a", epochs=[2, 7, 9], model_manifest=model_dir)
    assert report.n_examples == 2
    model = json.loads((tmp_path / "a" / "manifest.json").read_text())["model"]
    assert model == {"name": "tiny-v1", "renderer_version": "1", "manifest_sha256":
                     hashlib.sha256((model_dir / "MANIFEST.json").read_bytes()).hexdigest()}
    with pytest.raises(ExportError, match="model manifest"):
        export(rec, tmp_path / "g", model_manifest=tmp_path / "models")
    with pytest.raises(ExportError, match="'epochs'.*0..11.*12"):
        export(rec, tmp_path / "b", epochs=[3, 12])
    with pytest.raises(ExportError, match="Nothing to export"):
        export(rec, tmp_path / "c", epochs=[6, 7, 8])
    with pytest.raises(ExportError, match="'scorer'"):
        export_finetune_dataset(rec, hyp, tmp_path / "d", scorer=" ", reasoner=fake_reasoner)
    with pytest.raises(ExportError, match="does not fit the recording"):
        export(rec, tmp_path / "e", hyp=Hypnogram(["W"] * 13), model_layer=None)
    with pytest.raises(ExportError, match="'model_layer'"):
        export(rec, tmp_path / "f", model_layer=ModelLayer(5))
    with pytest.raises(ExportError, match="its folder .* does not exist"):
        export(rec, tmp_path / "missing" / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "Zyxwvut_Quuxley-night.edf", "a", "models"]


def test_deidentified_by_default_identity_on_opt_in(tmp_path):
    path = identified_edf(tmp_path)
    rec = read_recording(path)
    assert rec.patient_info["name"] == "Zyxwvut Quuxley"  # the header really holds them
    assert rec.patient_info["recording_id"] == "RECID-Zebra42"
    hyp, layer = scored()
    # The real evidence (YASA) once here, so the default reasoner is covered too.
    export_finetune_dataset(rec, hyp, tmp_path / "anon", model_layer=layer, scorer="Dr E",
                            created_at=T0)
    files = all_bytes(tmp_path / "anon")
    leaks = [(name, s) for name, data in files.items() for s in SECRETS if s in data]
    assert leaks == []
    start = json.loads(files["manifest.json"])["recording"]["start"]
    assert start == {"relative_day": 0, "time_of_day": "01:46:40"}
    assert "patient" not in json.loads(files["manifest.json"])

    export(rec, tmp_path / "named", include_identity=True)
    text = b"".join(all_bytes(tmp_path / "named").values())
    for s in (b"Zyxwvut", b"Quuxley", b"Quokka77", b"17-MAR-1953", b"Zebra42", b"2001-09-09"):
        assert s in text, s
    man = json.loads((tmp_path / "named" / "manifest.json").read_text())
    assert man["recording"]["name"] == path.name and man["patient"]["sex"] == "F"


def test_export_is_deterministic_apart_from_created_at(rec, tmp_path):
    hyp, layer = scored()
    kw = dict(model_layer=layer, scorer="Dr E", epochs=[0, 1, 2, 3])
    export_finetune_dataset(rec, hyp, tmp_path / "a", created_at=T0, **kw)
    export_finetune_dataset(rec, hyp, tmp_path / "b", created_at=T0, **kw)
    export_finetune_dataset(rec, hyp, tmp_path / "c", **kw)  # now
    a, b, c = (all_bytes(tmp_path / x) for x in "abc")
    assert a == b
    assert {k: v for k, v in a.items() if k != "manifest.json"} == \
        {k: v for k, v in c.items() if k != "manifest.json"}
    ma, mc = json.loads(a["manifest.json"]), json.loads(c["manifest.json"])
    assert ma["created_at"] != mc["created_at"]
    assert {**ma, "created_at": None} == {**mc, "created_at": None}


def test_existing_folder_is_refused_or_replaced_only_if_an_export(rec, tmp_path):
    out = tmp_path / "out"
    export(rec, out, epochs=[0, 1])
    with pytest.raises(ExportError, match="already exists.*overwrite"):
        export(rec, out, epochs=[2])
    report = export(rec, out, epochs=[2], overwrite=True)
    assert report.n_examples == 1 and json.loads((out / "manifest.json").read_text())[
        "n_examples"] == 1
    assert not (out / "images" / "epoch_00000.png").exists()
    mine = tmp_path / "thesis"
    mine.mkdir()
    (mine / "chapter1.tex").write_text("precious")
    with pytest.raises(ExportError, match="not an earlier fine-tuning export"):
        export(rec, mine, overwrite=True)
    assert (mine / "chapter1.tex").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "Zyxwvut_Quuxley-night.edf", "out", "thesis"]  # no hidden .partial / .old left


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), RuntimeError("bug")])
def test_a_failure_midway_leaves_no_folder(rec, tmp_path, monkeypatch, error):
    real, calls = export_mod.encode_png, []

    def flaky(image):
        calls.append(1)
        if len(calls) == 4:
            raise error
        return real(image)

    monkeypatch.setattr(export_mod, "encode_png", flaky)
    with pytest.raises(ExportError if isinstance(error, OSError) else RuntimeError):
        export(rec, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Zyxwvut_Quuxley-night.edf"]
    # Replacing an earlier export: a failure keeps the earlier one intact.
    monkeypatch.setattr(export_mod, "encode_png", real)
    export(rec, tmp_path / "out", epochs=[0])
    before = all_bytes(tmp_path / "out")
    monkeypatch.setattr(export_mod, "encode_png", flaky)
    calls.clear()
    with pytest.raises(Exception):
        export(rec, tmp_path / "out", overwrite=True)
    assert all_bytes(tmp_path / "out") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Zyxwvut_Quuxley-night.edf", "out"]


def test_progress_and_cancel(rec, tmp_path):
    seen: list[tuple[int, int]] = []
    export(rec, tmp_path / "ok", progress=lambda d, t: seen.append((d, t)))
    assert seen == [(k, len(EXPORTED)) for k in range(len(EXPORTED) + 1)]
    seen.clear()
    with pytest.raises(ExportCancelled, match="cancelled"):
        export(rec, tmp_path / "stop", progress=lambda d, t: seen.append((d, t)),
               should_stop=lambda: len(seen) >= 4)
    assert not (tmp_path / "stop").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Zyxwvut_Quuxley-night.edf", "ok"]


def test_load_finetune_dataset_round_trip_and_checks(rec, tmp_path):
    export(rec, tmp_path / "a")
    export(rec, tmp_path / "b", epochs=[1, 2])
    data = load_finetune_dataset([tmp_path / "a", tmp_path / "b"])
    assert len(data) == len(EXPORTED) + 2
    assert data.images.shape == (len(data), 224, 224, 3) and data.images.dtype == np.uint8
    assert data.stages == [LABELS[i][0] for i in EXPORTED] + ["N1", "N2"]
    assert list(data.epochs) == EXPORTED + [1, 2] and list(data.night) == [0] * 9 + [1, 1]
    assert all(a.endswith(f"Stage: {s}") for a, s in zip(data.answers, data.stages))
    roles = pick_roles(rec.ch_names, rec.ch_types)
    assert np.array_equal(data.images[:9], render_night(rec, roles, EXPORTED))
    assert data.meta["renderer_version"] == RENDERER_VERSION and len(data.meta["exports"]) == 2
    assert data.meta["recordings"][0].startswith("recording-")
    assert len(data.subset(np.array([0, 10]))) == 2
    json.dumps(data.meta, allow_nan=False)  # save_dataset and the model card store it as JSON
    assert len(load_finetune_dataset(tmp_path / "b")) == 2

    png = tmp_path / "a" / "images" / "epoch_00003.png"
    png.write_bytes(png.read_bytes()[:-20] + bytes(20))
    with pytest.raises(ExportError, match=r"images/epoch_00003\.png.*checksum"):
        load_finetune_dataset(tmp_path / "a")
    man = tmp_path / "b" / "manifest.json"
    man.write_text(man.read_text().replace(f'"renderer_version": "{RENDERER_VERSION}"',
                                          '"renderer_version": "0"'))
    with pytest.raises(ExportError, match="renderer version '0'"):
        load_finetune_dataset(tmp_path / "b")
    man.unlink()
    with pytest.raises(ExportError, match="no manifest.json"):
        load_finetune_dataset(tmp_path / "b")


def test_png_codec_is_deterministic_and_standard():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
    data = encode_png(img)
    assert data == encode_png(img.copy())
    assert np.array_equal(decode_png(data), img)
    image = pytest.importorskip("PIL.Image")
    import io

    with image.open(io.BytesIO(data)) as im:
        assert im.mode == "RGB" and np.array_equal(np.asarray(im), img)
    with pytest.raises(ExportError, match="x.png"):
        decode_png(b"GIF89a", "x.png")


def test_hypnogram_file_exports_are_deidentified(rec, tmp_path):
    assert EXPORT_FORMATS == ("finetune",) + WRITE_FORMATS
    hyp, _ = scored()
    for fmt in WRITE_FORMATS:
        name = {"bids": "h_events.tsv", "yasa-txt": "h.txt"}.get(fmt, f"h.{fmt}")
        (tmp_path / fmt).mkdir()
        export_hypnogram(hyp, tmp_path / fmt / name, fmt=fmt, scorer="Dr E", recording=rec)
        for path in (tmp_path / fmt).iterdir():  # BIDS writes a .json sidecar too
            data = path.read_bytes()
            assert [s for s in SECRETS + [b"SC4001EC"] if s in data] == [], (fmt, path.name)
    # The de-identified EDF still lines up with the recording when imported against it.
    back = read_hypnogram(tmp_path / "edf" / "h.edf", recording_start=rec.meas_date)
    assert list(back.hypnogram.stages) == list(hyp.stages) and back.hypnogram.start == 0
    named = export_hypnogram(hyp, tmp_path / "n.json", fmt="json", scorer="Dr E",
                             recording=rec, include_identity=True)
    assert b"2001-09-09" in named.read_bytes() and rec.path.name.encode() in named.read_bytes()
    with pytest.raises(ExportError, match="already exists"):
        export_hypnogram(hyp, named, fmt="json", scorer="Dr E")


def test_export_recording_reads_saved_labels_without_writing(tmp_path):
    from eegvlm_desktop.core.scoring.document import open_document

    path = write_edf(tmp_path / "night.edf", duration_s=300)
    rec = read_recording(path)
    with pytest.raises(ExportError, match="no labels to export"):
        labels_for_export(rec, data_dir=tmp_path / "data")
    doc = open_document(path, user="tester", data_dir=tmp_path / "data")
    doc.session.label([0, 1, 2], "N2")
    doc.session.label([3], "UNS")
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    hyp, notes = labels_for_export(rec, data_dir=tmp_path / "data")
    assert list(hyp.provenance[:3]) == ["expert"] * 3 and "saved labels" in notes[0]
    out, notes = export_recording(path, tmp_path / "ds", scorer="Dr E",
                                  data_dir=tmp_path / "data")
    assert json.loads((out / "manifest.json").read_text())["n_examples"] == 3
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir() if p.name != "ds"} == before
    out, _ = export_recording(path, tmp_path / "h.csv", fmt="csv", scorer="Dr E",
                              data_dir=tmp_path / "data")
    assert out.read_text().splitlines()[1] == "0,30,N2,expert"
