"""The CLI: clear one-line errors (exit 2), never a traceback."""
from __future__ import annotations

import subprocess
import sys

from tests.conftest import write_edf


def run(*args):
    return subprocess.run([sys.executable, "-m", "eegvlm_desktop", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_info_describes_recording(tiny_edf):
    out = run("info", tiny_edf)
    assert out.returncode == 0, out.stderr
    assert "Fpz-Cz" in out.stdout


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
