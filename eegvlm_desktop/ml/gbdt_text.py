"""A LightGBM text model evaluated in numpy: numerical splits, multiclass softmax.

``import lightgbm`` takes ~1 s and ~150 MB in a fresh process on 2 cores (it imports pandas
and scikit-learn when they are installed), and the cohort stager needs only prediction from
one text model (YASA's classifier, ``cohort/yasa_eeg.txt``). This module reads LightGBM's
own text format (no pickle) and evaluates every tree with LightGBM's decision rule, summing
the trees of each class in LightGBM's order, so its probabilities are LightGBM's:
``tests/ml/test_gbdt_text.py`` checks them against ``lightgbm.Booster.predict``.

Only what YASA's model uses is supported (numerical splits, no linear trees, the multiclass
objective); anything else is refused with the reason, never guessed.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

#: LightGBM's ``kZeroThreshold``: a value this close to 0 counts as zero for missing=Zero.
_ZERO = 1e-35


class TextGBDT:
    """A LightGBM model read from its text file.

    Parameters
    ----------
    path : str or Path
        The model written by ``Booster.save_model`` (format ``version=v4``).

    Raises
    ------
    ValueError
        The file uses a feature this evaluator does not implement (categorical splits,
        linear trees, an objective other than multiclass).
    """

    def __init__(self, path: str | Path) -> None:
        header, trees = self._read(Path(path))
        self.num_class = int(header.get("num_class", "1"))
        self.per_iteration = int(header.get("num_tree_per_iteration", "1"))
        self.objective = (header.get("objective") or "?").split()[0]
        if self.objective != "multiclass" or self.per_iteration != self.num_class:
            raise ValueError(f"The model's 'objective' must be 'multiclass' (one tree per "
                             f"class and iteration) for this evaluator, but {path} has "
                             f"{self.objective!r} with {self.per_iteration} trees per "
                             f"iteration for {self.num_class} classes.")
        self.feature_names = header.get("feature_names", "").split()
        self.trees = trees
        # No split treats missing values apart (missing type "None" everywhere, as in YASA's
        # model): LightGBM then reads NaN as 0.0 at every split, so that can be done once
        # for the whole matrix and each step of a tree is a plain threshold test.
        self._plain = all(not ((t["decision"] >> 2) & 3).any() for t in trees)

    @staticmethod
    def _read(path: Path) -> tuple[dict[str, str], list[dict[str, np.ndarray]]]:
        header: dict[str, str] = {}
        trees: list[dict[str, np.ndarray]] = []
        current: dict[str, str] | None = None
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.startswith("end of trees"):
                break
            if line.startswith("Tree="):
                current = {}
                trees.append(current)  # type: ignore[arg-type]
                continue
            key, sep, value = line.partition("=")
            if not sep:
                continue
            (header if current is None else current)[key] = value
        return header, [TextGBDT._tree(t, path, i) for i, t in enumerate(trees)]  # type: ignore

    @staticmethod
    def _tree(t: dict[str, str], path: Path, index: int) -> dict[str, np.ndarray]:
        if int(t.get("num_cat", "0")) or t.get("is_linear", "0") != "0":
            raise ValueError(f"Tree {index} of {path} has categorical splits or a linear "
                             f"leaf model; this evaluator supports numerical splits only.")
        leaf = np.array(t["leaf_value"].split(), dtype=np.float64)
        if int(t["num_leaves"]) == 1:
            empty = np.zeros(0, dtype=np.int64)
            return {"leaf": leaf, "feature": empty, "threshold": np.zeros(0),
                    "decision": empty, "left": empty, "right": empty}
        # Thresholds are written with 17 significant digits: they parse back to the same double.
        return {"leaf": leaf,
                "feature": np.array(t["split_feature"].split(), dtype=np.int64),
                "threshold": np.array(t["threshold"].split(), dtype=np.float64),
                "decision": np.array(t["decision_type"].split(), dtype=np.int64),
                "left": np.array(t["left_child"].split(), dtype=np.int64),
                "right": np.array(t["right_child"].split(), dtype=np.int64)}

    @staticmethod
    def _leaf_values(tree: dict[str, np.ndarray], x: np.ndarray, plain: bool) -> np.ndarray:
        """Each row's leaf value in one tree (LightGBM's ``NumericalDecision``)."""
        n = len(x)
        if not len(tree["feature"]):
            return np.full(n, tree["leaf"][0])
        node = np.zeros(n, dtype=np.int64)  # >= 0: internal node; < 0: ~leaf index
        active = np.arange(n)
        feature, threshold = tree["feature"], tree["threshold"]
        left, right = tree["left"], tree["right"]
        while plain and len(active):  # NaN already read as 0.0 (see __init__)
            k = node[active]
            go_left = x[active, feature[k]] <= threshold[k]
            nxt = np.where(go_left, left[k], right[k])
            node[active] = nxt
            active = active[nxt >= 0]
        while len(active):
            k = node[active]
            fval = x[active, tree["feature"][k]]
            decision = tree["decision"][k]
            missing = (decision >> 2) & 3  # 0 none, 1 zero, 2 NaN
            default_left = (decision & 2) != 0
            nan = np.isnan(fval)
            fval = np.where(nan & (missing != 2), 0.0, fval)
            is_missing = ((missing == 1) & (np.abs(fval) <= _ZERO)) | ((missing == 2) & nan)
            go_left = np.where(is_missing, default_left, fval <= tree["threshold"][k])
            node[active] = np.where(go_left, tree["left"][k], tree["right"][k])
            active = active[node[active] >= 0]
        return tree["leaf"][~node]

    def raw_score(self, x: np.ndarray) -> np.ndarray:
        """Summed leaf values ``(n, num_class)``, trees added in LightGBM's order."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != len(self.feature_names):
            raise ValueError(f"The 'x' parameter must have shape (n, "
                             f"{len(self.feature_names)}), but got {x.shape}.")
        if self._plain:
            x = np.where(np.isnan(x), 0.0, x)
        out = np.zeros((len(x), self.per_iteration))
        for i, tree in enumerate(self.trees):
            out[:, i % self.per_iteration] += self._leaf_values(tree, x, self._plain)
        return out

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities ``(n, num_class)`` (softmax of :meth:`raw_score`)."""
        raw = self.raw_score(x)
        # LightGBM's Common::Softmax: subtract the row maximum, exponentiate, normalise.
        e = np.exp(raw - raw.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
