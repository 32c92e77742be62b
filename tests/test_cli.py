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
