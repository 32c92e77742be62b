"""The CLI: clear one-line errors (exit 2), never a traceback."""
from __future__ import annotations

import subprocess
import sys

import pytest

from eegvlm_desktop.cli import main
from tests.conftest import write_broken_edf, write_edf


def run(*args):
    return subprocess.run([sys.executable, "-m", "eegvlm_desktop", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_info_describes_recording(tiny_edf):
    out = run("info", tiny_edf)
    assert out.returncode == 0, out.stderr
    assert "Fpz-Cz" in out.stdout


def cli(capsys, *args):
    """The CLI in this process: ``(exit code, stdout, stderr)``."""
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("problem, words", [("flat", "is flat"), ("tiny", "implausibly small"),
                                            ("no_range", "same physical minimum and maximum")])
def test_info_lists_signal_problems(tmp_path, capsys, problem, words):
    code, stdout, _ = cli(capsys, "info", write_broken_edf(tmp_path / "b.edf", problem))
    assert code == 0
    lines = [line for line in stdout.splitlines() if line.startswith("Signal problem:")]
    assert len(lines) >= 2 and "'EEG Fpz-Cz' (EEG)" in lines[0] and words in lines[0]


def test_info_says_a_short_recording_cannot_be_scored(tmp_path, capsys):
    code, stdout, _ = cli(capsys, "info", write_edf(tmp_path / "short.edf", duration_s=20))
    assert code == 0 and "shorter than one 30-s epoch" in stdout


def test_info_on_bad_files_is_a_clear_error(tmp_path):
    fake = tmp_path / "fake.edf"
    fake.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 400)
    for path in (fake, tmp_path / "missing.edf"):
        out = run("info", path)
        assert out.returncode == 2
        assert "Traceback" not in out.stderr
        assert path.name in out.stderr


def test_hypnogram_mismatch_and_fit(tmp_path):
    rec = write_edf(tmp_path / "r.edf", duration_s=120)  # 4 epochs
    hyp = tmp_path / "h.csv"
    hyp.write_text("onset,duration,stage\n0,30,W\n30,30,N1\n60,30,N2\n90,30,N3\n120,30,R\n")
    out = run("hypnogram", hyp, tmp_path / "o.tsv", "--recording", rec)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "--fit" in out.stderr
    out = run("hypnogram", hyp, tmp_path / "o.tsv", "--recording", rec, "--fit", "crop")
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "o.tsv").read_text().count("\n") == 5  # header + 4 epochs


def test_gui_without_display_is_a_clear_error(tiny_edf):
    import os

    env = {k: v for k, v in os.environ.items()
           if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    out = subprocess.run([sys.executable, "-m", "eegvlm_desktop", str(tiny_edf)],
                         capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 2
    assert "no display" in out.stderr and "Traceback" not in out.stderr


def test_export_finetune_and_hypnogram_formats(tmp_path):
    rec = write_edf(tmp_path / "r.edf", duration_s=150)  # 5 epochs
    hyp = tmp_path / "h.csv"
    hyp.write_text("onset,duration,stage\n0,30,W\n30,30,N1\n60,30,N2\n90,30,UNS\n120,30,R\n")
    out = run("export", rec, tmp_path / "ds", "--hypnogram", hyp, "--scorer", "Dr E")
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "ds" / "manifest.json").is_file() and "4 epochs exported" in out.stderr
    again = run("export", rec, tmp_path / "ds", "--hypnogram", hyp)
    assert again.returncode == 2 and "Traceback" not in again.stderr
    assert "already exists" in again.stderr and "--overwrite" in again.stderr
    out = run("export", rec, tmp_path / "h.tsv", "--hypnogram", hyp, "--format", "tsv")
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "h.tsv").read_text().splitlines()[1:3] == ["0\t30\tW\timport",
                                                                  "30\t30\tN1\timport"]


def test_export_and_convert_to_lunas_formats(tmp_path):
    rec = write_edf(tmp_path / "r.edf", duration_s=150)  # 5 epochs
    hyp = tmp_path / "h.csv"
    hyp.write_text("onset,duration,stage\n0,30,W\n30,30,N1\n60,30,N2\n90,30,UNS\n120,30,R\n")
    out = run("export", rec, tmp_path / "n.eannot", "--hypnogram", hyp, "--format", "eannot")
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "n.eannot").read_text() == "W\nN1\nN2\n?\nR\n"
    out = run("hypnogram", hyp, tmp_path / "n.annot")  # the format from the extension
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "n.annot").read_text().splitlines()[1:3] == [
        "W\t.\t.\t0\t30\tprovenance=import", "N1\t.\t.\t30\t60\tprovenance=import"]


def test_export_bad_input_is_one_clear_line(tmp_path):
    rec = write_edf(tmp_path / "r.edf", duration_s=60)
    for args, words in ((("missing.edf", tmp_path / "o"), "missing.edf"),
                        ((rec, tmp_path / "o"), "no labels to export"),
                        ((rec, tmp_path / "o", "--hypnogram", tmp_path / "nope.csv"),
                         "nope.csv")):
        out = run("export", *args)
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
        assert words in out.stderr
    out = run("export", rec, tmp_path / "o", "--format", "xls")
    assert out.returncode == 2 and "invalid choice" in out.stderr


def test_mismatch_message_has_no_doubled_punctuation(tmp_path, capsys):
    rec = write_edf(tmp_path / "r.edf", duration_s=300)  # 10 epochs
    hyp = tmp_path / "h.csv"
    hyp.write_text("onset,duration,stage\n-60,30,N2\n-30,30,N2\n0,30,N3\n")
    code, _, stderr = cli(capsys, "hypnogram", hyp, "--recording", rec)
    assert code == 2 and "before the recording" in stderr and "epoch(s) short" in stderr
    assert ".." not in stderr and ".;" not in stderr
    assert stderr.rstrip().endswith("have no stage. Use --fit crop, pad or crop_or_pad to fit it.")


def test_include_identity_keeps_the_edf_patient_field(tmp_path, capsys):
    import mne

    rec = write_edf(tmp_path / "r.edf", duration_s=150)
    header = bytearray(rec.read_bytes())
    header[8:88] = b"MCH-0234567 F 02-MAY-1951 Haagse_Harry".ljust(80)
    rec.write_bytes(bytes(header))
    hyp = tmp_path / "h.csv"
    hyp.write_text("onset,duration,stage\n0,30,W\n30,30,N1\n60,30,N2\n90,30,N2\n120,30,R\n")
    code, _, err = cli(capsys, "export", rec, tmp_path / "id.edf", "--format", "edf",
                       "--hypnogram", hyp, "--include-identity")
    assert code == 0, err
    assert (tmp_path / "id.edf").read_bytes()[8:88] == bytes(header[8:88])
    assert len(mne.read_annotations(tmp_path / "id.edf")) == 4  # still EDF+ (N2 N2 is one)
    code, _, err = cli(capsys, "export", rec, tmp_path / "id.json", "--format", "json",
                       "--hypnogram", hyp, "--include-identity")
    assert code == 0, err
    assert "Haagse Harry" in (tmp_path / "id.json").read_text()
    code, _, err = cli(capsys, "export", rec, tmp_path / "anon.edf", "--format", "edf",
                       "--hypnogram", hyp)
    assert code == 0, err
    assert (tmp_path / "anon.edf").read_bytes()[8:88].strip() == b"X X X X"
