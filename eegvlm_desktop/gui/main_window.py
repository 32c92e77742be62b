"""The main window, the composition root: signal view on top, hypnogram below, docks right.

The window owns no data logic. It builds the state (a
:class:`~eegvlm_desktop.core.scoring.document.Document` for the open night, the
:class:`~eegvlm_desktop.core.scoring.navigation.Navigation`), the views, panels and docks, the
menus, and hands each controller what it drives: the scoring controller applies label changes
through the session (saved and audited before the key press returns), the model controller
wires the model. Views redraw from the models' change events. Slow work (statistics with
YASA, exports) runs on the :class:`JobWorker`.
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings, Qt, QTimer
from PySide6.QtWidgets import (QComboBox, QDockWidget, QFileDialog, QLabel, QMainWindow, QMenu,
                               QScrollArea, QSplitter, QToolBar, QVBoxLayout, QWidget)

from eegvlm_desktop.core.errors import EEGVLMError, HypnogramFitError, StorageError
from eegvlm_desktop.core.hypnogram.stats import sleep_statistics
from eegvlm_desktop.core.hypnogram.write import format_from_name
from eegvlm_desktop.core.recording.display import DisplaySource, default_filter
from eegvlm_desktop.core.recording.quality import check_signal_quality
from eegvlm_desktop.core.recording.recording import preload_reader
from eegvlm_desktop.core.scoring.document import EPOCH_LENGTH, Document, default_user, open_document
from eegvlm_desktop.core.scoring.label_lock import HEARTBEAT_S, LabelsLockedError
from eegvlm_desktop.core.scoring.navigation import Navigation
from eegvlm_desktop.core.stages import UNS
from eegvlm_desktop.gui import dialogs
from eegvlm_desktop.gui.actions import build_actions
from eegvlm_desktop.gui.controllers.model import ModelController, ModelPanels
from eegvlm_desktop.gui.controllers.scoring import ScoringController
from eegvlm_desktop.gui.panels.agreement_panel import AgreementPanel
from eegvlm_desktop.gui.panels.epoch_panel import EpochPanel
from eegvlm_desktop.gui.panels.finetune_panel import FinetunePanel
from eegvlm_desktop.gui.panels.model_panel import ModelPanel
from eegvlm_desktop.gui.panels.review_panel import ReviewPanel
from eegvlm_desktop.gui.panels.stats_panel import StatsPanel
from eegvlm_desktop.gui.recent import RecentFiles
from eegvlm_desktop.gui.shortcuts import STAGE_ACTIONS
from eegvlm_desktop.gui.startup import when_exposed
from eegvlm_desktop.gui.throttle import Debounced
from eegvlm_desktop.gui.views.file_banner import FileBanner
from eegvlm_desktop.gui.views.hypnogram_view import HypnogramView, format_clock
from eegvlm_desktop.gui.views.signal_view import GAIN_STEP, SignalView
from eegvlm_desktop.gui.window_geometry import restore_or_fit, save_geometry
from eegvlm_desktop.gui.workers import JobWorker

WINDOW_CHOICES = (30, 60, 120, 300, 600)
RECORDING_FILTER = ("Recordings (*.edf *.EDF *.bdf *.BDF *.fif *.fif.gz *.vhdr *.gdf *.set "
                    "*.cnt *.mff);;All files (*)")
HYPNOGRAM_FILTER = ("Hypnograms (*.edf *.csv *.tsv *.txt *.xml *.json *.eannot *.annot);;"
                    "All files (*)")
#: Actions that change labels: off while the night is open read-only.
LABEL_ACTIONS = ("undo", "redo", "import_hypnogram", "accept_model", "accept_model_page",
                 *STAGE_ACTIONS)
EXPORT_FORMATS = {"CSV (*.csv)": "csv", "TSV (*.tsv)": "tsv", "EDF+ annotations (*.edf)": "edf",
                  "BIDS events (*_events.tsv)": "bids", "JSON with provenance (*.json)": "json",
                  "Luna annotations (*.annot)": "annot",
                  "Luna epoch stages (*.eannot)": "eannot"}


def _export_job(hyp, path: Path, fmt: str | None, scorer: str) -> Path:
    """Job-worker side of File > Export hypnogram (a bad file name fails as a message)."""
    # Imported here: the export stack pulls scipy.signal (~0.6 s, ~75 MB) that the window
    # does not need until the scorer exports (issue 18: launch <= 1 s, RSS <= 200 MB).
    from eegvlm_desktop.core.export.recording import export_hypnogram

    # overwrite=True: the save dialog has already asked before replacing a file.
    return export_hypnogram(hyp, path, fmt=fmt or format_from_name(path), scorer=scorer,
                            overwrite=True)


def scrolling(panel: QWidget) -> QScrollArea:
    """``panel`` in a scroll area, for a dock.

    Docks stack their panels' minimum heights: unscrolled, the side panels alone asked for
    1,156 px, taller than a 1366 x 768 laptop screen, and pushed the status bar off it.
    """
    area = QScrollArea()
    area.setWidget(panel)
    area.setWidgetResizable(True)
    area.setFrameShape(QScrollArea.Shape.NoFrame)
    return area


class MainWindow(QMainWindow):
    """EEG-VLM Desktop's scoring window."""

    def __init__(self, settings: QSettings | None = None, user: str | None = None,
                 data_dir: Path | None = None) -> None:
        super().__init__()
        self.setWindowTitle("EEG-VLM Desktop")
        self.setAcceptDrops(True)
        self.settings = settings or QSettings("eegvlm", "desktop")
        self.user = user or default_user()
        self.data_dir = data_dir
        self.doc: Document | None = None
        self.source: DisplaySource | None = None
        self.nav = Navigation(EPOCH_LENGTH)
        self.nav.moved.connect(self._show_page)
        self.worker = JobWorker(parent=self)
        self.worker.jobDone.connect(self._on_job_done)
        self.worker.jobFailed.connect(self._on_job_failed)
        self._stats_request = 0
        self._quality_request = 0
        # Coalesce fast key presses into one statistics job.
        self._stats_later = Debounced(self._request_stats, 150, self)
        self.scoring = ScoringController(self.nav, notify=self._notify, alert=self._alert,
                                         on_change_done=self._on_change_done, parent=self)

        self.signal_view = SignalView()
        self.signal_view.clickedAt.connect(self._on_signal_click)
        self.hypnogram_view = HypnogramView()
        self.hypnogram_view.epochRequested.connect(self.nav.go_to)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.signal_view)
        splitter.addWidget(self.hypnogram_view)
        splitter.setSizes([700, 170])
        self.banner = FileBanner()
        central = QWidget()
        column = QVBoxLayout(central)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(2)
        column.addWidget(self.banner)  # above the traces: file problems stay in sight
        column.addWidget(splitter, 1)
        self.setCentralWidget(central)
        self.stats_panel = StatsPanel()
        self.stats_dock = self._dock("Sleep statistics", "statsDock", self.stats_panel)
        panels = ModelPanels(ModelPanel(), EpochPanel(), ReviewPanel(), AgreementPanel(),
                             FinetunePanel())
        self.epoch_dock = self._dock("Model: this epoch", "epochDock", panels.epoch)
        self.model_dock = self._dock("Model", "modelDock", panels.model)
        self.review_dock = self._dock("Review queue", "reviewDock", panels.review)
        self.agreement_dock = self._dock("Agreement", "agreementDock", panels.agreement)
        self.finetune_dock = self._dock("Fine-tune", "finetuneDock", panels.finetune)
        for a, b in ((self.stats_dock, self.model_dock), (self.model_dock, self.review_dock),
                     (self.review_dock, self.agreement_dock),
                     (self.agreement_dock, self.finetune_dock)):
            self.tabifyDockWidget(a, b)
        self.stats_dock.raise_()
        # Compute threads for the model (0 = all cores but one); a setting, not a dialog.
        threads = int(self.settings.value("model/threads", 0) or 0)
        self.model = ModelController(self.nav, panels, self.hypnogram_view, self.signal_view,
                                     self.worker, notify=self._notify, alert=self._alert,
                                     apply_change=self.scoring.apply, user=self.user,
                                     threads=threads or None, parent=self)
        self._build_actions()
        self._build_status()
        # The lock on the open night's labels is renewed while it is open, so that another
        # window can tell a live owner from one that vanished (see core.scoring.label_lock).
        self._lock_timer = QTimer(self)
        self._lock_timer.setInterval(int(HEARTBEAT_S * 1000))
        self._lock_timer.timeout.connect(self._renew_lock)
        restore_or_fit(self, self.settings)
        self._update_enabled()
        # The recording reader's imports run on the worker once the window is on screen,
        # not before its first paint (issue 18: launch -> window <= 1 s).
        when_exposed(self, lambda: self.worker.submit("warmup", preload_reader))

    def _dock(self, title: str, name: str, widget: QWidget) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(name)
        dock.setWidget(scrolling(widget))
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable
                         | QDockWidget.DockWidgetFeature.DockWidgetClosable)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
        return dock

    def _notify(self, text: str, ms: int = 5000) -> None:
        self.statusBar().showMessage(text, ms)

    def _alert(self, title: str, message: str) -> None:
        dialogs.show_error(self, title, message)

    # ================================================================ actions
    def _build_actions(self) -> None:
        nav = self.nav
        handlers = {
            "open": self._choose_open, "import_hypnogram": self._choose_import,
            "export_hypnogram": self._choose_export, "quit": self.close,
            "undo": self.scoring.undo, "redo": self.scoring.redo,
            "auto_advance": self._toggle_auto_advance,
            "prev_epoch": lambda: nav.step(-1), "next_epoch": lambda: nav.step(1),
            "prev_page": lambda: nav.step_page(-1), "next_page": lambda: nav.step_page(1),
            "first_epoch": lambda: nav.go_to(0),
            "last_epoch": lambda: nav.go_to(nav.n_epochs - 1),
            "next_unscored": self.scoring.goto_next_unscored, "goto_epoch": self._choose_goto,
            "gain_up": lambda: self.signal_view.change_gain(GAIN_STEP),
            "gain_down": lambda: self.signal_view.change_gain(1 / GAIN_STEP),
            "deselect_channel": lambda: self.signal_view.select_channel(None),
            "window_longer": lambda: self._step_window(1),
            "window_shorter": lambda: self._step_window(-1),
            "channels": self._edit_channels, "help": self._show_help,
            "finetune": self.finetune_dock.raise_,
            **self.model.handlers(),
        }
        for action_id, stage in STAGE_ACTIONS.items():
            handlers[action_id] = lambda s=stage: self.scoring.label_current(s)
        self.actions, menus = build_actions(self, handlers)
        self.recent = RecentFiles(self.settings, QMenu("Open &recent", self), self.open_file)
        menus["File"].insertMenu(self.actions["import_hypnogram"], self.recent.menu)
        self.recent_menu = self.recent.menu
        self.model.setup_actions(self.actions)
        self.actions["auto_advance"].setCheckable(True)
        self.actions["auto_advance"].setChecked(self.nav.auto_advance)

        bar = QToolBar("Scoring", self)
        bar.setObjectName("scoringToolbar")
        bar.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.addToolBar(bar)
        bar.addAction(self.actions["open"])
        bar.addSeparator()
        for aid in STAGE_ACTIONS:
            bar.addAction(self.actions[aid])
        bar.addSeparator()
        bar.addWidget(QLabel(" Window: "))
        self.window_combo = QComboBox()
        self.window_combo.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        for w in WINDOW_CHOICES:
            self.window_combo.addItem(f"{w} s", float(w))
        self.window_combo.currentIndexChanged.connect(
            lambda i: self.set_window(self.window_combo.itemData(i)))
        bar.addWidget(self.window_combo)
        bar.addSeparator()
        bar.addAction(self.actions["auto_advance"])
        bar.addAction(self.actions["undo"])
        bar.addAction(self.actions["redo"])
        bar.addAction(self.actions["channels"])

    def _build_status(self) -> None:
        self.status_epoch = QLabel()
        self.status_time = QLabel()
        self.status_stage = QLabel()
        self.status_saved = QLabel()
        # Fixed widths: a label whose size changes on every page step makes Qt re-lay out
        # and repaint the whole window (measured: ~8 ms per step at 1600x900).
        for w, width in ((self.status_epoch, 150), (self.status_time, 90),
                         (self.status_stage, 170), (self.status_saved, 170)):
            w.setFixedWidth(width)
            self.statusBar().addPermanentWidget(w)
        self.statusBar().showMessage("Open a recording: File > Open (Ctrl+O) or drop a file here")

    def _update_enabled(self) -> None:
        has = self.doc is not None
        for aid, act in self.actions.items():
            if aid not in ("open", "quit", "help", "auto_advance"):
                act.setEnabled(has)
        if has:
            self.actions["undo"].setEnabled(self.doc.session.can_undo)
            self.actions["redo"].setEnabled(self.doc.session.can_redo)
            if self.doc.read_only is not None:
                for aid in LABEL_ACTIONS:
                    self.actions[aid].setEnabled(False)

    # ================================================================ opening
    def open_file(self, path: str | Path, discard_mismatched: bool = False,
                  read_only: str | None = None) -> bool:
        """Open a recording, all or nothing: on any failure a dialog says why and the night
        that was open stays open, unchanged and scorable.

        A night another window is scoring is offered read-only (``read_only`` is then the
        reason shown with it).
        """
        path = Path(path)
        if self._is_open(path):
            self._notify(f"{path.name} is already open.", 5000)
            return True
        try:
            # The signal check follows the first frame, off this thread (_check_quality).
            doc = open_document(path, user=self.user, data_dir=self.data_dir,
                                discard_mismatched=discard_mismatched, read_only=read_only,
                                check_quality=False)
        except LabelsLockedError as err:
            if not dialogs.ask_read_only(self, path.name, str(err)):
                return False
            return self.open_file(path, discard_mismatched,
                                  read_only=f"another window is scoring this night "
                                            f"({err.owner.describe()}).")
        except StorageError as err:
            dialogs.show_error(self, "Saved labels cannot be used",
                               f"{err}\n\nThe recording opens without them. The old label file is "
                               "never overwritten: it is renamed with a '.conflict' suffix "
                               "when you make the first change.")
            return self.open_file(path, discard_mismatched=True) if not discard_mismatched \
                else False
        except EEGVLMError as err:
            dialogs.show_error(self, "Cannot open recording", str(err))
            return False
        return self._switch_to(doc)

    def _is_open(self, path: Path) -> bool:
        """Whether ``path`` is the night open here for scoring (a read-only one is reopened:
        that is how it becomes scorable once the other window has closed it)."""
        if self.doc is None or self.doc.read_only is not None:
            return False
        try:
            return self.doc.recording.path.samefile(path)
        except OSError:
            return False

    def _switch_to(self, doc: Document) -> bool:
        """Show ``doc`` in place of the open night, or keep that one if ``doc`` cannot be shown.

        The first page of the new night is read and filtered before anything on screen
        changes: that is where a recording the views cannot take fails, and failing there
        leaves the open night untouched. Should a view still fail half-way, the old night is
        shown again (its document, labels and undo history were never let go).
        """
        old, old_source, old_epoch = self.doc, self.source, self.nav.epoch
        try:
            source = self._prepare_source(doc)
        except Exception as err:  # noqa: BLE001 - whatever the views choke on, say so
            doc.close()
            self._refuse(doc, err, old)
            return False
        try:
            self._show(doc, source, self._first_interesting_epoch(doc))
        except Exception as err:  # noqa: BLE001 - half-switched: go back to the old night
            doc.close()
            if old is not None:
                self._show(old, old_source, old_epoch)
            else:
                self._clear()
            self._refuse(doc, err, old)
            return False
        if old is not None:
            old.close()
        self.recent.add(doc.recording.path)
        self._check_quality(doc)
        return True

    def _check_quality(self, doc: Document) -> None:
        """Check the new night's signal (flat, tiny, clipped channels) on the job worker.

        Its ~15-30 ms of reads across the night used to come before the first frame; the
        findings now join the banner a moment after the traces appear (_on_job_done).
        """
        if not doc.quality_checked:
            self._quality_request = self.worker.submit("quality", check_signal_quality,
                                                       doc.recording)

    def _prepare_source(self, doc: Document) -> DisplaySource:
        """The new night's display source, with its first page read once as a check."""
        rec = doc.recording
        source = DisplaySource(rec)
        for ch, (kind, rate) in enumerate(zip(rec.ch_types, rec.orig_sfreqs)):
            source.set_filter(ch, default_filter(kind, rate))
        source.get(list(range(len(rec.ch_names))), 0.0, min(self.nav.window_s, rec.duration))
        return source

    def _refuse(self, doc: Document, err: Exception, old: Document | None) -> None:
        kept = f"\n\n{old.recording.path.name} stays open." if old is not None else ""
        dialogs.show_error(self, "Cannot open recording",
                           f"Cannot open '{doc.recording.path.name}': the window could not "
                           f"show it ({type(err).__name__}: {err}).{kept}")

    def _show(self, doc: Document, source: DisplaySource, epoch: int) -> None:
        """Point every view at ``doc`` (the switch itself; see :meth:`_switch_to`)."""
        if self.doc is not None and self.doc is not doc:
            self.doc.hypnogram.changed.disconnect(self._on_labels_changed)
        self.doc, self.source = doc, source
        self.scoring.set_document(doc)
        self.nav.reset(doc.hypnogram.n_epochs)
        rec = doc.recording
        self.signal_view.set_recording(rec, source, EPOCH_LENGTH)
        self._attach_hypnogram()
        self.model.set_document(doc)
        ro = " [read-only]" if doc.read_only is not None else ""
        self.setWindowTitle(f"{rec.path.name}{ro} — EEG-VLM Desktop")
        self.nav.go_to(epoch)
        self._show_notes(doc)
        if doc.read_only is None and doc.store.lock is not None:
            self._lock_timer.start()
        else:
            self._lock_timer.stop()

    def _clear(self) -> None:
        """No night open (a first open that failed half-way)."""
        if self.doc is not None:
            self.doc.hypnogram.changed.disconnect(self._on_labels_changed)
        self.doc = self.source = None
        self.scoring.set_document(None)
        self.banner.set_messages([])
        self._lock_timer.stop()
        self._update_enabled()

    def _show_notes(self, doc: Document) -> None:
        """File problems in the banner (they must not scroll away), the rest in the status bar."""
        name = doc.recording.path.name
        problems = list(doc.notes)
        if doc.read_only is not None:
            problems.insert(0, f"Read-only: {doc.read_only} Labels cannot be changed here; "
                               f"reopen the night once the other window has closed it.")
        severe = doc.read_only is not None or any(q.unusable for q in doc.quality)
        self.banner.set_messages(problems, "error" if severe else "warning", f"About {name}:")
        message = (f"Opened {name}: {len(doc.recording.ch_names)} channels, "
                   f"{self.nav.n_epochs} epochs. {doc.source}.")
        if doc.recovery.message():
            message += " " + doc.recovery.message()
        if problems:
            message += (f" {len(problems)} note{'s' if len(problems) != 1 else ''} about the "
                        f"file above the traces.")
        self._notify(message, 30000)

    def _renew_lock(self) -> None:
        """Heartbeat of the night's lock; a lock lost to another window is shown at once."""
        if self.doc is None or self.doc.store.lock is None:
            return
        try:
            self.doc.store.check_lock(renew=True)
        except StorageError as err:
            self._lock_timer.stop()
            self.banner.set_messages([str(err)], "error", "Labels can no longer be saved:")

    def _attach_hypnogram(self) -> None:
        hyp = self.doc.hypnogram
        # The view subscribes itself (set_hypnogram); the window follows the labels for the
        # status bar, the enabled actions and the statistics.
        self.hypnogram_view.set_hypnogram(hyp, self.doc.recording.meas_date)
        hyp.changed.connect(self._on_labels_changed)
        self._update_source_text()
        self._update_enabled()
        self._stats_later()

    def _first_interesting_epoch(self, doc: Document) -> int:
        """The first scored non-wake epoch minus a few (lights-off), else the first epoch."""
        stages = doc.hypnogram.stages
        for i, s in enumerate(stages):
            if s not in ("W", UNS):
                return max(i - 2, 0)
        return 0

    def _update_source_text(self) -> None:
        doc = self.doc
        lines = [f"<b>Labels:</b> {doc.source}",
                 f"<b>Autosave:</b> {doc.store.location}"]
        if doc.mapping:
            lines.append("<b>Stage mapping:</b> " + ", ".join(f"{a} → {b}" for a, b in
                                                             doc.mapping))
        self.stats_panel.set_source_text("<br>".join(lines))

    def _choose_open(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open recording", "", RECORDING_FILTER)
        if path:
            self.open_file(path)

    def _choose_import(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import hypnogram",
                                              str(self.doc.recording.path.parent),
                                              HYPNOGRAM_FILTER)
        if path:
            self.import_hypnogram(path)

    def import_hypnogram(self, path: str | Path, policy: str | None = None) -> bool:
        """Import stages; a mismatch asks the user whether to crop/pad or cancel."""
        try:
            result = self.doc.import_hypnogram(Path(path), policy)
        except HypnogramFitError as err:
            if policy is not None:  # cannot happen (fit raises HypnogramError); never loop
                dialogs.show_error(self, "Cannot import hypnogram", str(err))
                return False
            choice = dialogs.ask_mismatch(self, Path(path).name, err.problems or [str(err)])
            return self.import_hypnogram(path, choice) if choice else False
        except EEGVLMError as err:
            dialogs.show_error(self, "Cannot import hypnogram", str(err))
            return False
        self._update_source_text()
        self._update_enabled()
        mapping = ", ".join(f"{a} → {b}" for a, b in result.mapping)
        self.statusBar().showMessage(f"Imported {Path(path).name}. Mapping: {mapping}. "
                                     + " ".join(result.notes), 20000)
        return True

    def _choose_export(self) -> None:
        stem = self.doc.recording.path.stem
        path, chosen = QFileDialog.getSaveFileName(
            self, "Export hypnogram", str(self.doc.recording.path.parent / f"{stem}_hypnogram.csv"),
            ";;".join(EXPORT_FORMATS))
        if path:
            self.export_hypnogram(path, EXPORT_FORMATS.get(chosen))

    def export_hypnogram(self, path: str | Path, fmt: str | None = None) -> int:
        """Write the hypnogram on the job worker, de-identified; returns the request id.

        The recording's start date and file name stay out (an EDF hypnogram says
        "Startdate X", which readers take as "starts with the recording"); the scorer is
        this app's user.
        """
        return self.worker.submit("export", _export_job, self.doc.hypnogram.copy(), Path(path),
                                  fmt, self.user)

    # ================================================================ navigation
    @property
    def epoch(self) -> int:
        """The current epoch (the navigation state's)."""
        return self.nav.epoch

    @property
    def auto_advance(self) -> bool:
        return self.nav.auto_advance

    @property
    def window_s(self) -> float:
        return self.nav.window_s

    def goto_epoch(self, epoch: int) -> None:
        """Make ``epoch`` current (clamped); the page follows through ``nav.moved``."""
        self.nav.go_to(epoch)

    def _show_page(self, epoch: int) -> None:
        """Show the page that holds ``epoch`` (the navigation state moved)."""
        if self.doc is None:
            return
        hyp, nav = self.doc.hypnogram, self.nav
        onset = hyp.onset(epoch)
        t0 = hyp.onset(nav.page_start)
        self.signal_view.show_window(t0, nav.window_s, (onset, onset + EPOCH_LENGTH))
        self.hypnogram_view.set_position(epoch, t0, t0 + nav.window_s)
        self._update_status()
        # Filter the neighbouring pages on the worker while the scorer reads this one, so
        # the next page step finds its data cached (the GUI thread only slices and draws).
        # One page each way, with glibc's own allocator settings: two pages ahead and a fixed
        # 1-MiB mmap threshold kept the worker busier (mapping and faulting in its filter
        # buffers), which on 2 cores slowed the steps (bench/viewer.py, idle, 8-h night,
        # 3 runs: median 10.1-12.9 -> 8.4-9.2 ms, p95 16.1-16.7 -> 10.6-10.9 ms; peak
        # 197 -> 197-198 MB).
        w = nav.window_s
        span = (max(t0 - w, 0.0), min(t0 + 2 * w, self.doc.recording.duration))
        if not self.source.is_cached(*span, self.signal_view.order):
            self.worker.submit("prefetch", self.source.prefetch, *span, self.signal_view.order)

    def _choose_goto(self) -> None:
        epoch = dialogs.ask_epoch(self, self.nav.epoch, self.nav.n_epochs)
        if epoch is not None:
            self.nav.go_to(epoch)

    def _on_signal_click(self, t: float) -> None:
        if self.doc is not None:
            self.nav.go_to(self.doc.hypnogram.epoch_at(t))

    def set_window(self, seconds: float) -> None:
        idx = self.window_combo.findData(float(seconds))
        if idx >= 0 and idx != self.window_combo.currentIndex():
            self.window_combo.setCurrentIndex(idx)
        self.nav.set_window(seconds)

    def _step_window(self, step: int) -> None:
        i = min(max(self.window_combo.currentIndex() + step, 0), len(WINDOW_CHOICES) - 1)
        self.set_window(WINDOW_CHOICES[i])

    # ================================================================ scoring
    def label_current(self, stage: str) -> None:
        """Score the current epoch (saved before returning), then auto-advance if on."""
        self.scoring.label_current(stage)

    def _on_change_done(self) -> None:
        """After a label change, saved or not: the status and Undo/Redo follow the session."""
        if self.doc is not None:
            self._update_status()
        self._update_enabled()

    def _toggle_auto_advance(self) -> None:
        self.nav.auto_advance = self.actions["auto_advance"].isChecked()

    def _on_labels_changed(self, indices: list[int]) -> None:
        self._update_status()
        self._update_enabled()
        self._stats_later()

    # ================================================================ status / jobs
    def _update_status(self) -> None:
        hyp, epoch = self.doc.hypnogram, self.nav.epoch
        stage = hyp[epoch]
        prov = hyp.provenance[epoch]
        self.status_epoch.setText(f"Epoch {epoch + 1} / {hyp.n_epochs}")
        self.status_time.setText(format_clock(self.doc.recording.meas_date, hyp.onset(epoch)))
        self.status_stage.setText(f"Stage: {'unscored' if stage == UNS else stage}"
                                  + ("" if prov in ("none",) else f" ({prov})"))
        if self.doc.session.has_unsaved:
            self.status_saved.setText("⚠ NOT SAVED (retrying)")
            self.status_saved.setStyleSheet("color: #c0392b; font-weight: bold")
        else:
            self.status_saved.setText(f"{hyp.n_scored()} scored · autosaved")
            self.status_saved.setStyleSheet("")

    def _request_stats(self) -> None:
        if self.doc is not None:
            self._stats_request = self.worker.submit("stats", sleep_statistics,
                                                     self.doc.hypnogram.copy())

    def _on_job_done(self, request_id: int, kind: str, result: object) -> None:
        if kind == "quality":
            if request_id == self._quality_request and self.doc is not None \
                    and not self.doc.quality_checked:
                self.doc.set_quality(result)
                self._show_notes(self.doc)
        elif kind == "stats" and request_id == self._stats_request:
            self.stats_panel.set_stats(result)
        elif kind == "export":
            self.statusBar().showMessage(f"Exported {result}", 10000)

    def _on_job_failed(self, request_id: int, kind: str, message: str) -> None:
        if kind == "quality":
            if request_id == self._quality_request and self.doc is not None:
                # A file that cannot be read for the check is a file problem: the banner.
                self.doc.set_quality([])
                self.doc.notes.insert(self.doc.reader_notes,
                                      f"The signal check could not read the file: {message}")
                self._show_notes(self.doc)
            return
        if kind == "stats" and request_id != self._stats_request:
            return
        dialogs.show_error(self, f"{kind.capitalize()} failed", message)

    # ================================================================ view dialogs
    def _edit_channels(self) -> None:
        rec, view = self.doc.recording, self.signal_view
        dlg = dialogs.ChannelsDialog(rec.ch_names, rec.ch_types, rec.orig_sfreqs, rec.units,
                                     view.order, {c: self.source.get_filter(c) for c in
                                                  range(len(rec.ch_names))}, view.scales, self)
        if dlg.exec():
            for ch, f in dlg.result_filters().items():
                if f != self.source.get_filter(ch):
                    try:
                        self.source.set_filter(ch, f)
                    except ValueError as err:  # e.g. a cut-off above Nyquist
                        dialogs.show_error(self, "Filter not applied", str(err))
            view.scales.update(dlg.result_scales())
            view.set_order(dlg.result_order() or view.order)

    def _show_help(self) -> None:
        dialogs.ShortcutHelp(self).exec()

    # ================================================================ drop / close
    def dragEnterEvent(self, event):  # noqa: N802
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event):  # noqa: N802
        urls = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if urls:
            self.open_file(urls[0])

    def closeEvent(self, event):  # noqa: N802
        # Labels are already on disk (saved on every change): give the night's lock back,
        # remember where the window was, and stop the worker cleanly.
        save_geometry(self, self.settings)
        self._lock_timer.stop()
        if self.doc is not None:
            self.doc.close()
        self._stats_later.cancel()
        self.model.shutdown()
        self.worker.shutdown()
        super().closeEvent(event)

