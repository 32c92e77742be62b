"""The model on the views: hypnogram line, hypnodensity strip and disagreement ticks on the
hypnogram view; attention shading behind the signal view's lanes."""
from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPointF
from PySide6.QtGui import QColor

from eegvlm_desktop.core.hypnogram.hypnogram import Hypnogram
from eegvlm_desktop.core.stages import STAGE_COLORS, STAGES
from eegvlm_desktop.core.staging.model_layer import ModelLayer

ORDER = list(STAGES)  # probability columns: W, N1, N2, N3, R


def onehot(stages: list[str], conf: float = 0.8) -> np.ndarray:
    out = np.full((len(stages), 5), (1 - conf) / 4)
    for i, s in enumerate(stages):
        out[i, ORDER.index(s)] = conf
    return out


@pytest.fixture
def hypno_view(qtbot):
    from eegvlm_desktop.gui.app import make_app
    from eegvlm_desktop.gui.views.hypnogram_view import HypnogramView

    make_app()
    view = HypnogramView()
    qtbot.addWidget(view)
    view.resize(800, 200)
    view.show()
    qtbot.waitExposed(view)
    stages = ["W", "W", "N1", "N2", "N2", "N3", "N3", "R", "UNS", "N2", "ART", "W"]
    view.set_hypnogram(Hypnogram(stages, 30.0))
    return view


def y_range(view) -> tuple[float, float]:
    return tuple(view.plotItem.viewRange()[1])


def left_labels(view) -> list[str]:
    return [label for _, label in view.plotItem.getAxis("left")._tickLevels[0]]


def test_model_layer_draws_and_follows_changes(hypno_view, qtbot):
    v = hypno_view
    hyp = v.hypnogram
    assert not v._density.isVisible() and "model" not in left_labels(v)
    assert y_range(v) == pytest.approx((-1.5, 4.6))
    layer = ModelLayer(hyp.n_epochs, "m")
    v.set_model_layer(layer)
    for item in (v._model_line, v._density, v._ticks):
        assert item.isVisible()
    assert "model" in left_labels(v)
    lo, hi = y_range(v)
    assert lo < -3 and hi > 4.8  # room for the strip below and the ticks above
    assert v._density.n_shapes == 0 and not v.disagreement_mask.any()

    # The model runs on the first 8 epochs: it says N2 where the expert says N1 (epoch 2)
    # and R where the expert says N3 (epoch 6).
    model = ["W", "W", "N2", "N2", "N2", "N3", "R", "R"]
    layer.set_proba(range(8), onehot(model))
    qtbot.waitUntil(lambda: v._density.n_shapes == 8, timeout=2000)
    expected = layer.disagreements(hyp.stages)
    assert v.disagreement_mask.tolist() == expected.tolist()
    assert int(v.disagreement_mask.sum()) == 2 and v._ticks.n_shapes == 2  # two separate runs
    assert v._model_line.n_shapes == 1  # one run of scored epochs: one polyline

    # The expert relabels epoch 2 as the model said: its tick goes at the next redraw.
    hyp.set_stage(2, "N2")
    v.redraw([2])
    assert v.disagreement_mask.tolist() == layer.disagreements(hyp.stages).tolist()
    assert int(v.disagreement_mask.sum()) == 1
    v.grab()  # paints without a Qt warning (warnings fail the test)


def test_burst_of_updates_is_redrawn_once(hypno_view, qtbot, monkeypatch):
    v = hypno_view
    layer = ModelLayer(v.hypnogram.n_epochs)
    v.set_model_layer(layer)
    calls = []
    real = v._density.set_picture
    monkeypatch.setattr(v._density, "set_picture", lambda *a: (calls.append(1), real(*a)))
    for i in range(v.hypnogram.n_epochs):  # one batch per epoch, as fast as possible
        layer.set_proba([i], onehot(["N2"]))
    assert calls == []  # nothing drawn yet: the burst is coalesced
    qtbot.waitUntil(lambda: len(calls) >= 1, timeout=2000)
    assert len(calls) == 1 and v._density.n_shapes == v.hypnogram.n_epochs


def test_toggles_hide_items_and_reclaim_space(hypno_view):
    v = hypno_view
    layer = ModelLayer(v.hypnogram.n_epochs)
    layer.set_proba(range(4), onehot(["W", "N1", "N1", "N3"]))
    v.set_model_layer(layer)
    v.set_model_visible(False)
    assert not v._model_line.isVisible() and v._density.isVisible()
    v.set_hypnodensity_visible(False)
    assert not v._density.isVisible() and "model" not in left_labels(v)
    assert y_range(v)[0] == pytest.approx(-1.5)
    v.set_disagreements_visible(False)
    assert not v._ticks.isVisible() and y_range(v)[1] == pytest.approx(4.6)
    v.set_hypnodensity_visible(True)
    v.set_disagreements_visible(True)
    v.set_model_visible(True)
    assert all(i.isVisible() for i in (v._model_line, v._density, v._ticks))
    # Removing the layer hides everything, whatever the toggles say.
    v.set_model_layer(None)
    assert not any(i.isVisible() for i in (v._model_line, v._density, v._ticks))
    assert v.disagreement_mask is None and y_range(v) == pytest.approx((-1.5, 4.6))


def test_layers_are_swapped_and_unsubscribed(hypno_view, qtbot):
    v = hypno_view
    n = v.hypnogram.n_epochs
    first, second = ModelLayer(n), ModelLayer(n)
    v.set_model_layer(first)
    v.set_model_layer(second)
    assert first.changed.n_listeners == 0 and second.changed.n_listeners == 1
    first.set_proba([0], onehot(["R"]))  # the old layer no longer reaches the view
    assert not v._model_redraw.pending and v._density.n_shapes == 0
    second.set_proba([0], onehot(["R"]))
    assert v._model_redraw.pending
    qtbot.waitUntil(lambda: v._density.n_shapes == 1, timeout=2000)
    with pytest.raises(ValueError, match="same night"):
        v.set_model_layer(ModelLayer(n + 1))
    assert v.model_layer is second
    # A hypnogram of another length (another night) drops the layer.
    v.set_hypnogram(Hypnogram(["W"] * (n + 3), 30.0))
    assert v.model_layer is None and second.changed.n_listeners == 0
    assert not v._density.isVisible()


def test_hypnodensity_image_stacks_stages_in_hypnogram_order():
    from eegvlm_desktop.gui.views.hypnogram_view import _DENSITY_ROWS, _density_image

    p = np.zeros((3, 5))
    p[0, ORDER.index("N3")] = 1.0
    p[1, ORDER.index("W")] = p[1, ORDER.index("N2")] = 0.5
    p[2] = np.nan  # not run
    img = _density_image(p)
    assert (img.width(), img.height()) == (3, _DENSITY_ROWS)

    def colour(x: int, row_from_bottom: int) -> QColor:
        return img.pixelColor(x, row_from_bottom)  # image row 0 is the strip's bottom

    assert colour(0, 0) == colour(0, _DENSITY_ROWS - 1) == QColor(STAGE_COLORS["N3"])
    assert colour(1, _DENSITY_ROWS - 1) == QColor(STAGE_COLORS["W"])  # W on top
    assert colour(1, 0) == QColor(STAGE_COLORS["N2"])
    assert colour(2, 5).alpha() == 0


# ----------------------------------------------------------------- signal view attention
def test_a_deleted_view_is_never_called_by_the_models_it_showed(qtbot):
    """The models hold the view's listeners weakly: no guard against a dead widget needed."""
    import gc

    from PySide6.QtCore import QCoreApplication, QEvent

    from eegvlm_desktop.gui.app import make_app
    from eegvlm_desktop.gui.views.hypnogram_view import HypnogramView

    make_app()
    hyp, layer = Hypnogram(["W"] * 10, 30.0), ModelLayer(10)
    view = HypnogramView()
    view.set_hypnogram(hyp)
    view.set_model_layer(layer)
    assert hyp.changed.n_listeners == 1 and layer.changed.n_listeners == 1
    view.deleteLater()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    del view
    gc.collect()
    # A listener on a deleted widget would raise RuntimeError here.
    layer.set_proba([0], onehot(["R"]))
    hyp.set_stage(1, "N2")
    assert hyp.changed.n_listeners == 0 and layer.changed.n_listeners == 0


@pytest.fixture
def signal_view(qtbot, tiny_edf):
    from eegvlm_desktop.core.recording.display import DisplaySource
    from eegvlm_desktop.core.recording.recording import read_recording
    from eegvlm_desktop.gui.app import make_app
    from eegvlm_desktop.gui.views.signal_view import SignalView

    make_app()
    rec = read_recording(tiny_edf)  # 4 channels, 10 epochs of 30 s
    view = SignalView()
    qtbot.addWidget(view)
    view.resize(900, 500)
    view.show()
    qtbot.waitExposed(view)
    view.set_recording(rec, DisplaySource(rec))
    view.show_window(0.0, 30.0, (0.0, 30.0))
    return view


def columns(*cols: int, n: int = 14) -> np.ndarray:
    v = np.zeros(n)
    v[list(cols)] = 1.0
    return v


def test_attention_sits_on_its_epoch_page_relative(signal_view):
    v = signal_view
    w = 30.0 / 14
    v.set_attention(60.0, 30.0, {2: columns(5, 6)}, opacity=0.5)
    assert v.attention_rects() == []  # epoch 2 is not on page 0
    v.show_window(60.0, 30.0, (60.0, 90.0))
    cells = v.attention_rects()
    assert len(cells) == 2
    (r5, a5), (r6, _) = cells
    assert (r5.left(), r5.right(), r6.right()) == pytest.approx((5 * w, 6 * w, 7 * w))
    assert r5.center().y() == pytest.approx(-2) and a5 == pytest.approx(0.5)  # lane of ch 2
    # A 90-s window from 30 s shows the epoch in its middle third.
    v.show_window(30.0, 90.0, (60.0, 90.0))
    assert v.attention_rects()[0][0].left() == pytest.approx(30 + 5 * w)
    v.show_window(120.0, 90.0, (120.0, 150.0))
    assert v.attention_rects() == []


def test_attention_follows_channel_order_and_visibility(signal_view):
    v = signal_view
    v.show_window(60.0, 30.0, (60.0, 90.0))
    v.set_attention(60.0, 30.0, {0: columns(1), 2: columns(3)})
    assert sorted(r.center().y() for r, _ in v.attention_rects()) == [-2, 0]
    v.set_order([2, 1, 3])  # channel 0 hidden, channel 2 now on top
    (rect, _), = v.attention_rects()
    assert rect.center().y() == pytest.approx(0) and rect.left() == pytest.approx(3 * 30 / 14)
    v.set_attention_visible(False)
    assert v.attention_rects() == [] and not v._attention.isVisible()
    v.set_attention_visible(True)
    assert len(v.attention_rects()) == 1
    v.set_attention(0, 30, None)
    assert v.attention_rects() == []
    with pytest.raises(ValueError, match="opacity"):
        v.set_attention(60.0, 30.0, {0: columns(1)}, opacity=2.0)


def test_paging_moves_the_shading_without_rebuilding_it(signal_view, monkeypatch):
    v = signal_view
    v.set_attention(60.0, 30.0, {1: columns(0)})
    rebuilt = []
    monkeypatch.setattr(v._attention, "_rebuild", lambda: rebuilt.append(1))
    for k in range(10):
        v.show_window(30.0 * k, 30.0, (30.0 * k, 30.0 * k + 30))
    assert rebuilt == []


def test_attention_is_painted_at_its_place(signal_view, qtbot):
    """Pixels, not just item geometry: warm where the attention is, white elsewhere."""
    v = signal_view
    v.show_window(60.0, 30.0, (60.0, 90.0))
    v.set_attention(60.0, 30.0, {3: columns(7)}, opacity=0.8)
    qtbot.wait(10)
    img = v.grab().toImage()
    w = 30.0 / 14

    def pixel(x: float, y: float) -> QColor:
        pt = v.mapFromScene(v._vb.mapViewToScene(QPointF(x, y)))
        return img.pixelColor(pt.x(), pt.y())

    # Near the lane's edge, away from the trace (the EMG lane is the 4th: centred on -3).
    inside, outside = pixel(7.5 * w, -3.42), pixel(3.5 * w, -3.42)
    assert inside.red() > 200 and inside.blue() < 150, inside.name()
    assert outside.red() > 240 and outside.blue() > 240, outside.name()
