"""Per-row feature attributions (Shapley values) for ``POST /v2/models/{name}/explain``. Pure.

Every method gives ``attributions`` (rows × features) and a ``base_value`` per row whose sum is the
explained output of the row: ``value = base_value + attributions.sum(axis=1)`` (exact for every
method, up to float rounding). Which method, and which output it explains:

- ``linear`` (scikit-learn linear models: LinearRegression, Ridge, Lasso, LogisticRegression,
  SGD*, LinearSVC...): exact linear SHAP with independent features,
  ``coef * (x - mean(background))``, base ``coef · mean(background) + intercept``. Regressors explain
  ``predict``; classifiers the decision function, i.e. the log-odds of class ``target`` for
  LogisticRegression (additive in the features; probabilities are not).
- ``tree`` (DecisionTree*, ExtraTree*, RandomForest*, ExtraTrees*, GradientBoosting*):
  path-dependent TreeSHAP (Lundberg et al. 2018): the features left out are averaged over the
  training data the trees saw (node covers), so no background is needed. Regressors explain
  ``predict``; RandomForest/DecisionTree classifiers the probability of class ``target``;
  GradientBoosting classifiers the decision function (log-odds of class ``target``), which is
  additive over the trees, with the per-row init prediction in ``base_value``.
- ``kernel`` (everything else, any pyfunc model): KernelSHAP with the interventional value
  function over the background: exact Shapley values when all ``2^k - 2`` feature coalitions fit
  in ``max_evals``, otherwise ``max_evals`` coalitions sampled from the Shapley kernel (in
  complementary pairs); the weighted least-squares fit is constrained so the attributions sum to
  ``value - base_value`` exactly. Each coalition costs ``len(background)`` model rows (one model call
per explained row evaluates all its coalitions).
  scikit-learn classifiers explain ``predict_proba`` of class ``target`` (else the decision
  function); other models the column ``target`` of their output.

A pipeline of column-wise scalers (Standard/MinMax/MaxAbs/Robust) before a linear or tree model is
explained as its final model on the scaled columns: each input column maps to one scaled column,
so the attributions are those of the input features.

``target``: the class (or output column) explained; by default 1 for two classes or columns (the
positive class), 0 for one, and required otherwise. Background (linear and kernel): the request's
``background`` rows, else the model's MLflow input example, else one row of zeros (then a linear
model's base value is its intercept); KernelSHAP uses at most ``MAX_BACKGROUND`` of its rows (a
seeded sample), since each costs one model row per coalition.

No new dependency: the ``shap`` package would bring numba and llvmlite (about 100 MiB) into the
image. The TreeSHAP here equals its ``TreeExplainer`` (tree_path_dependent) to 1e-13 on forests and
boosting with 20 features (a one-off comparison); the unit tests check it against brute-force
Shapley values. XGBoost and LightGBM models go through KernelSHAP like any other pyfunc model.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ferry.serving.payload import Frame, ModelInputs, model_input

DEFAULT_MAX_EVALS = 1024
MAX_BACKGROUND = 100
OPTION_KEYS = ("target", "background", "max_evals", "seed")
# Row chunks keep the TreeSHAP working arrays (rows × leaves × path features) near this many values.
TREE_CHUNK_VALUES = 4_000_000
COLUMNWISE_SCALERS = ("StandardScaler", "MinMaxScaler", "MaxAbsScaler", "RobustScaler")
TREE_MODELS = ("DecisionTreeRegressor", "DecisionTreeClassifier", "ExtraTreeRegressor",
               "ExtraTreeClassifier", "RandomForestRegressor", "RandomForestClassifier",
               "ExtraTreesRegressor", "ExtraTreesClassifier", "GradientBoostingRegressor",
               "GradientBoostingClassifier")


class ExplainError(ValueError):
    """The request or the model cannot be explained (HTTP 400); the message says why."""


@dataclass(frozen=True)
class Options:
    """The explain-specific request parameters."""

    target: int | None = None
    background: np.ndarray | None = None
    max_evals: int = DEFAULT_MAX_EVALS
    seed: int = 0


@dataclass(frozen=True)
class Explanation:
    attributions: np.ndarray  # (rows, features), float64
    base_values: np.ndarray   # (rows,)
    values: np.ndarray        # (rows,): the explained output, = base_values + attributions.sum(1)
    feature_names: tuple[str, ...]
    method: str               # linear | tree | kernel
    output: str               # what ``values`` is, e.g. "predict_proba[:, 1]"
    evaluations: int = 0      # kernel: coalitions evaluated per row


def options(params: dict | None) -> tuple[Options, dict | None]:
    """The explain options out of a request's parameters, and the parameters left for the model."""
    params = dict(params or {})
    found = {key: params.pop(key) for key in OPTION_KEYS if key in params}
    target = found.get("target")
    if target is not None and (not isinstance(target, int) or isinstance(target, bool) or target < 0):
        raise ExplainError("parameters.target must be a non-negative integer (a class or output index)")
    max_evals = found.get("max_evals", DEFAULT_MAX_EVALS)
    if not isinstance(max_evals, int) or isinstance(max_evals, bool) or max_evals < 2:
        raise ExplainError("parameters.max_evals must be an integer of at least 2")
    seed = found.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ExplainError("parameters.seed must be an integer")
    background = found.get("background")
    if background is not None:
        background = _background_rows(background)
    return Options(target, background, max_evals, seed), params or None


def _background_rows(value) -> np.ndarray:
    if not isinstance(value, list) or not value or not all(isinstance(row, list) for row in value):
        raise ExplainError("parameters.background must be a non-empty list of rows (lists of numbers)")
    try:
        rows = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ExplainError("parameters.background rows must all be lists of numbers of one length") \
            from None
    if rows.ndim != 2 or not np.isfinite(rows).all():
        raise ExplainError("parameters.background rows must all be lists of finite numbers of one length")
    return rows


@dataclass
class Explainer:
    """What one loaded model is explained with; built once (trees are flattened here)."""

    inputs: ModelInputs
    predict: Callable[[Frame], Any]
    estimator: Any = None
    example: Frame | None = None
    _trees: dict = field(default_factory=dict)

    def explain(self, frame: Frame, opts: Options) -> Explanation:
        names, x = features(frame, self.inputs, self.estimator)
        prefix, final = split_pipeline(self.estimator)
        if final is not None and (is_linear(final) or type(final).__name__ in TREE_MODELS):
            scaled = prefix(x, names)
            if is_linear(final):
                return linear(final, names, scaled, prefix(self.background(names, opts), names), opts)
            return self._tree(final, names, scaled, opts)
        return kernel(self.model_output(names, frame, opts.target), names, x,
                      self.background(names, opts), opts)

    def background(self, names: tuple[str, ...], opts: Options) -> np.ndarray:
        """The request's rows, else the input example, else a row of zeros (width-checked)."""
        rows = opts.background
        if rows is None and self.example is not None:
            try:
                rows = features(self.example, self.inputs, self.estimator, names)[1]
            except ExplainError:
                rows = None
        if rows is None:
            return np.zeros((1, len(names)))
        if rows.shape[1] != len(names):
            raise ExplainError(f"background rows have {rows.shape[1]} values; the model has "
                               f"{len(names)} features ({', '.join(names)})")
        return rows

    def _tree(self, model, names, x, opts: Options) -> Explanation:
        target = class_target(model, opts.target) if hasattr(model, "classes_") else _single(opts.target)
        key = (id(model), target)
        if key not in self._trees:
            self._trees[key] = TreeEnsemble.of(model, target)
        return self._trees[key].explain(model, names, x)

    def model_output(self, names: tuple[str, ...], frame: Frame, target: int | None):
        """f(rows) → one float per row: what KernelSHAP explains (see the module docstring)."""
        if self.estimator is not None:
            return sklearn_output(self.estimator, names, target)
        chosen: list[int] = []

        def call(rows: np.ndarray) -> np.ndarray:
            block = (Frame("tensor", rows, None, len(rows), frame.params) if frame.kind == "tensor"
                     else Frame("block", rows, names, len(rows), frame.params))
            output = _numeric_2d(self.predict(block))
            if not chosen:
                chosen.append(output_target(output.shape[1], target))
            return output[:, chosen[0]]

        call.description = lambda: f"predict[:, {chosen[0]}]" if chosen else "predict"
        return call


def estimator_of(pyfunc) -> Any:
    """The scikit-learn estimator behind a loaded model, or None for any other model."""
    estimator = getattr(pyfunc, "estimator", None)
    if estimator is None and hasattr(pyfunc, "get_raw_model"):
        try:
            estimator = pyfunc.get_raw_model()
        except (NotImplementedError, AttributeError):
            estimator = None
    module = type(estimator).__module__ if estimator is not None else ""
    return estimator if module.startswith("sklearn.") else None


def features(frame: Frame, inputs: ModelInputs, estimator,
             names: tuple[str, ...] | None = None) -> tuple[tuple[str, ...], np.ndarray]:
    """The request as (feature names, rows × features float64 matrix)."""
    known = getattr(estimator, "feature_names_in_", None)
    if frame.kind == "tensor":
        data = np.asarray(frame.data)
        if data.ndim != 2:
            raise ExplainError(f"explanations need rows × features input; got shape {list(data.shape)}")
        names = names or _known(known) or inputs.columns or tuple(f"x{j}" for j in range(data.shape[1]))
        if len(names) != data.shape[1]:
            raise ExplainError(f"the input has {data.shape[1]} features; the model has {len(names)}")
    else:
        table = model_input(frame)
        names = names or _known(known) or inputs.columns or tuple(map(str, table.columns))
        missing = [name for name in names if name not in table.columns]
        if missing:
            raise ExplainError(f"the input lacks the model's features {missing}")
        data = table[list(names)]
    try:
        matrix = np.asarray(data, dtype=np.float64)
    except (TypeError, ValueError):
        raise ExplainError("explanations need numeric features; the input has non-numeric values") \
            from None
    if not np.isfinite(matrix).all():
        raise ExplainError("explanations need finite feature values (no NaN or infinity)")
    return tuple(names), matrix


def _known(names) -> tuple[str, ...] | None:
    """The estimator's own feature names (its column order), if it was fitted on a DataFrame."""
    return tuple(map(str, names)) if names is not None else None


def _as_input(estimator, names, rows: np.ndarray):
    """Rows as the estimator was fitted: a DataFrame when it knows feature names."""
    if getattr(estimator, "feature_names_in_", None) is None:
        return rows
    import pandas as pd

    return pd.DataFrame(rows, columns=list(names), copy=False)


def split_pipeline(estimator):
    """(prefix transform, final model): the column-wise scalers of a Pipeline as one function, and
    the model after them; (identity, estimator) for anything else, (identity, None) if no sklearn."""
    steps = getattr(estimator, "steps", None)
    if steps is None:
        return (lambda rows, names: rows), estimator
    scalers = [step for _, step in steps[:-1] if step not in (None, "passthrough")]
    if not all(type(step).__name__ in COLUMNWISE_SCALERS for step in scalers):
        return (lambda rows, names: rows), None

    def prefix(rows: np.ndarray, names) -> np.ndarray:
        data = _as_input(estimator, names, rows)
        for step in scalers:
            data = step.transform(data)
        return np.asarray(data, dtype=np.float64)

    return prefix, steps[-1][1]


def is_linear(model) -> bool:
    module = type(model).__module__
    if module.startswith("sklearn.linear_model._glm"):
        return False  # Poisson/Gamma/Tweedie: predict is exp of the linear part
    return (module.startswith("sklearn.linear_model") or type(model).__name__ in ("LinearSVC", "LinearSVR")) \
        and hasattr(model, "coef_") and hasattr(model, "intercept_")


def output_target(width: int, target: int | None) -> int:
    """The explained column of an output ``width`` columns wide."""
    if target is None:
        if width > 2:
            raise ExplainError(f"the model has {width} outputs (classes): say which one to explain "
                               "with parameters.target")
        return width - 1
    if target >= width:
        raise ExplainError(f"parameters.target is {target} but the model has {width} outputs (classes)")
    return target


def class_target(model, target: int | None) -> int:
    return output_target(len(model.classes_), target)


def _label(value):
    """A class label as it reads in JSON (numpy scalars as plain numbers)."""
    return value.item() if isinstance(value, np.generic) else value


def _single(target: int | None) -> int:
    return output_target(1, target)


def _numeric_2d(output) -> np.ndarray:
    from ferry.serving.outputs import output_columns

    columns = output_columns(output)
    try:
        matrix = np.column_stack([values for _, values in columns]).astype(np.float64)
    except (TypeError, ValueError):
        raise ExplainError("the model's output is not numeric, so it cannot be explained") from None
    if matrix.ndim != 2:
        raise ExplainError("the model's output is not one number per row and column")
    return matrix


# -- linear -------------------------------------------------------------------------------------


def linear(model, names, x: np.ndarray, background: np.ndarray, opts: Options) -> Explanation:
    coef = np.atleast_2d(np.asarray(model.coef_, dtype=np.float64))
    intercept = np.atleast_1d(np.asarray(model.intercept_, dtype=np.float64))
    if hasattr(model, "classes_"):
        target = class_target(model, opts.target)
        binary = coef.shape[0] == 1
        sign = -1.0 if binary and target == 0 else 1.0
        row = 0 if binary else target
        label = _label(model.classes_[target])
        meaning = "log-odds" if binary and type(model).__name__.startswith("LogisticRegression") else "score"
        output = (f"decision_function ({meaning} of class {label!r})" if binary
                  else f"decision_function[:, {target}] ({meaning} of class {label!r})")
    else:
        row = target = output_target(coef.shape[0], opts.target)
        sign = 1.0
        output = "predict" if coef.shape[0] == 1 else f"predict[:, {target}]"
    weights, bias = sign * coef[row], sign * intercept[row if len(intercept) > 1 else 0]
    mean = background.mean(axis=0)
    attributions = (x - mean) * weights
    base = float(mean @ weights + bias)
    return Explanation(attributions, np.full(len(x), base), x @ weights + bias, names, "linear", output)


# -- TreeSHAP -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Paths:
    """The root-to-leaf paths of the leaves with ``d`` distinct features, every tree together: for
    leaf l and slot k, feature ``feature[l, k]``, the interval ``(low, high]`` a row's value must lie
    in to follow the path, and ``zero[l, k]``, the share of the training data (cover) that follows
    it when the feature is unknown; ``value[l]``: the leaf's output times the ensemble's scale
    (1/trees for forests, the learning rate for boosting). Grouping leaves by ``d`` means no padding."""

    feature: np.ndarray   # (leaves, d) int
    low: np.ndarray       # (leaves, d)
    high: np.ndarray      # (leaves, d)
    zero: np.ndarray      # (leaves, d)
    value: np.ndarray     # (leaves,)

    def shap(self, rows: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
        """Path-dependent TreeSHAP per leaf: with ``one`` the 0/1 indicator that the row follows a
        slot's splits, the leaf's share for slot i is value · (one_i − zero_i) · Σ_s w(s, d) · q_s,
        q the coefficients of Π_{j≠i} (zero_j + one_j t) (the "unwound" path of Algorithm 2).
        Also returns the leaves' sum for each row (the value of the one leaf each tree sends it to)."""
        n, (leaves, depth) = len(rows), self.feature.shape
        if depth == 0:
            return np.zeros((n, width)), np.full(n, self.value.sum())
        values = rows[:, self.feature]                                   # (n, L, d)
        one = ((values > self.low) & (values <= self.high)).astype(np.float64)
        zero = self.zero
        poly = np.zeros((n, leaves, depth + 1))
        poly[..., 0] = 1.0
        for slot in range(depth):                                        # Π_j (zero_j + one_j t)
            shifted = poly[..., :-1] * one[..., slot, None]
            poly *= zero[:, slot, None]
            poly[..., 1:] += shifted
        weights = _shapley_weights(depth)
        # one_i = 0: the factor is the constant zero_i.
        without_absent = (poly[..., :depth] @ weights)[..., None] / zero
        # one_i = 1: synthetic division by (t + zero_i), from the top coefficient down.
        quotient = np.repeat(poly[..., depth, None], depth, axis=-1)
        without_present = quotient * weights[depth - 1]
        for power in range(depth - 1, 0, -1):
            quotient = poly[..., power, None] - zero * quotient
            without_present += quotient * weights[power - 1]
        share = np.where(one > 0, without_present, without_absent)
        contributions = (self.value[:, None] * (one - zero)) * share
        index = np.arange(n)[:, None, None] * width + self.feature
        attributions = np.bincount(index.ravel(), contributions.ravel(), minlength=n * width)
        return attributions.reshape(n, width), one.prod(axis=-1) @ self.value

    def expected(self) -> float:
        return float(self.value @ self.zero.prod(axis=1))


@dataclass(frozen=True)
class TreeEnsemble:
    """Every leaf of every tree, as ``Paths`` grouped by their number of distinct features."""

    groups: tuple[Paths, ...]
    output: str
    raw: tuple[str, int, float]  # the model's explained output: (method, column, sign)

    @classmethod
    def of(cls, model, target: int) -> TreeEnsemble:
        name = type(model).__name__
        if name.startswith("GradientBoosting"):
            column = target if model.estimators_.shape[1] > 1 else 0
            sign = -1.0 if hasattr(model, "classes_") and model.estimators_.shape[1] == 1 and target == 0 \
                else 1.0
            trees = [tree for tree in model.estimators_[:, column]]
            scale = sign * model.learning_rate
            if hasattr(model, "classes_"):
                output = f"decision_function (log-odds of class {_label(model.classes_[target])!r})"
                raw = ("decision_function", column, sign)
            else:
                output, raw = "predict", ("predict", 0, 1.0)
            leaf_value = _regression_values
        else:
            trees = list(getattr(model, "estimators_", [model]))
            scale = 1.0 / len(trees)
            if hasattr(model, "classes_"):
                label = _label(model.classes_[target])
                output = f"predict_proba[:, {target}] (probability of class {label!r})"
                raw, leaf_value = ("predict_proba", target, 1.0), _class_share
            else:
                output, raw, leaf_value = "predict", ("predict", 0, 1.0), _regression_values
        if any(tree.tree_.n_outputs != 1 for tree in trees):
            raise ExplainError("multi-output tree models cannot be explained")
        by_depth: dict[int, list] = {}
        for tree in trees:
            for path in _leaf_paths(tree.tree_, leaf_value(tree.tree_, target)):
                by_depth.setdefault(len(path[0]), []).append(path)
        groups = []
        for depth, paths in sorted(by_depth.items()):
            shape = (len(paths), depth)
            bounds = np.asarray([bound for _, bound, _ in paths], dtype=np.float64).reshape(*shape, 3)
            features = np.asarray([feature for feature, _, _ in paths], dtype=np.intp).reshape(shape)
            groups.append(Paths(features, bounds[..., 0], bounds[..., 1], bounds[..., 2],
                                np.asarray([leaf for _, _, leaf in paths]) * scale))
        return cls(tuple(groups), output, raw)

    def explain(self, model, names, x: np.ndarray) -> Explanation:
        # Trees compare float32 values (sklearn casts X), so the paths are followed the same way.
        rows32 = x.astype(np.float32).astype(np.float64)
        attributions, leaves_sum = np.zeros_like(x), np.zeros(len(x))
        for group in self.groups:
            chunk = max(1, TREE_CHUNK_VALUES // (len(group.value) * (group.feature.shape[1] + 1)))
            for start in range(0, len(x), chunk):
                part, total = group.shap(rows32[start:start + chunk], x.shape[1])
                attributions[start:start + chunk] += part
                leaves_sum[start:start + chunk] += total
        expected = sum(group.expected() for group in self.groups)
        method, column, sign = self.raw
        output = np.asarray(getattr(model, method)(_as_input(model, names, x)), dtype=np.float64)
        values = sign * output.reshape(len(x), -1)[:, column]
        # What the trees do not hold (boosting's init prediction) does not depend on the features.
        base = expected + (values - leaves_sum)
        return Explanation(attributions, base, values, names, "tree", self.output)


def _regression_values(tree, target: int) -> np.ndarray:
    return tree.value[:, 0, 0]


def _class_share(tree, target: int) -> np.ndarray:
    counts = tree.value[:, 0, :]
    return counts[:, target] / counts.sum(axis=1)


def _leaf_paths(tree, leaf_values: np.ndarray) -> list[tuple[list[int], list[tuple], float]]:
    """(features, [(low, high, zero)...], value) for every leaf; repeated features on a path are
    merged (interval intersected, cover shares multiplied), as Algorithm 2 merges them."""
    left, right = tree.children_left, tree.children_right
    cover = tree.weighted_n_node_samples
    paths = []
    stack: list[tuple[int, dict]] = [(0, {})]
    while stack:
        node, bounds = stack.pop()
        if left[node] == -1:
            features = sorted(bounds)
            paths.append((features, [bounds[f] for f in features], float(leaf_values[node])))
            continue
        feature, threshold = int(tree.feature[node]), float(tree.threshold[node])
        low, high, zero = bounds.get(feature, (-np.inf, np.inf, 1.0))
        for child, interval in ((left[node], (low, min(high, threshold))),
                                (right[node], (max(low, threshold), high))):
            share = zero * cover[child] / cover[node]
            stack.append((child, {**bounds, feature: (*interval, share)}))
    return paths


@functools.cache
def _shapley_weights(depth: int) -> np.ndarray:
    """w[s] = s! (d − s − 1)! / d! for every subset size s of the other d − 1 features."""
    return np.array([math.factorial(s) * math.factorial(depth - s - 1) / math.factorial(depth)
                     for s in range(depth)])


# -- KernelSHAP ---------------------------------------------------------------------------------


def sklearn_output(estimator, names, target: int | None):
    """f(rows) for a scikit-learn model: probability of class ``target``, else its decision
    function, else ``predict``."""
    if hasattr(estimator, "classes_") and hasattr(estimator, "predict_proba"):
        column = class_target(estimator, target)

        def call(rows):
            return estimator.predict_proba(_as_input(estimator, names, rows))[:, column]

        label = f"predict_proba[:, {column}] (probability of class {_label(estimator.classes_[column])!r})"
    elif hasattr(estimator, "classes_") and hasattr(estimator, "decision_function"):
        column = class_target(estimator, target)

        def call(rows):
            scores = np.asarray(estimator.decision_function(_as_input(estimator, names, rows)))
            return (scores if column else -scores) if scores.ndim == 1 else scores[:, column]

        label = f"decision_function (score of class {_label(estimator.classes_[column])!r})"
    else:
        def call(rows):
            output = np.asarray(estimator.predict(_as_input(estimator, names, rows)), dtype=np.float64)
            output = output.reshape(len(rows), -1)
            return output[:, output_target(output.shape[1], target)]

        label = "predict"
    call.description = lambda: label
    return call


def kernel(f, names, x: np.ndarray, background: np.ndarray, opts: Options) -> Explanation:
    width = x.shape[1]
    rng = np.random.default_rng(opts.seed)
    if len(background) > MAX_BACKGROUND:
        background = background[np.sort(rng.choice(len(background), MAX_BACKGROUND, replace=False))]
    base_value = float(np.mean(f(background)))
    values = np.asarray(f(x), dtype=np.float64)
    attributions = np.empty_like(x)
    evaluations = 0
    for index, row in enumerate(x):
        masks, weights = coalitions(width, opts.max_evals, rng)
        evaluations = len(masks)
        if not evaluations:  # one feature: it carries the whole difference
            attributions[index] = values[index] - base_value
            continue
        mixed = np.where(masks[:, None, :], row, background[None, :, :]).reshape(-1, width)
        means = np.asarray(f(mixed), dtype=np.float64).reshape(len(masks), len(background)).mean(axis=1)
        attributions[index] = constrained_fit(masks, weights, means - base_value,
                                              values[index] - base_value)
    return Explanation(attributions, np.full(len(x), base_value), values, names, "kernel",
                       f.description(), evaluations)


def coalitions(width: int, budget: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Feature subsets (masks) and their regression weights: all of them with the Shapley kernel
    weights when they fit the budget, otherwise ``budget`` draws (complementary pairs) with sizes
    drawn by the kernel, each weighing 1."""
    if width == 1:
        return np.zeros((0, 1), dtype=bool), np.zeros(0)
    if width < 31 and 2 ** width - 2 <= budget:
        codes = np.arange(1, 2 ** width - 1)
        masks = (codes[:, None] >> np.arange(width)) & 1 == 1
        sizes = masks.sum(axis=1)
        weights = (width - 1) / (np.array([math.comb(width, s) for s in sizes]) * sizes * (width - sizes))
        return masks, weights
    sizes = np.arange(1, width)
    kernel_mass = (width - 1) / (sizes * (width - sizes))
    drawn = rng.choice(sizes, size=budget // 2, p=kernel_mass / kernel_mass.sum())
    order = np.argsort(rng.random((len(drawn), width)), axis=1)
    half = order < drawn[:, None]
    masks = np.concatenate([half, ~half])
    return masks, np.ones(len(masks))


def constrained_fit(masks: np.ndarray, weights: np.ndarray, targets: np.ndarray, total: float) -> np.ndarray:
    """Weighted least squares of ``targets`` on ``masks`` with the attributions summing to ``total``
    (the last one is eliminated: φ_last = total − Σ others)."""
    z = masks.astype(np.float64)
    design = z[:, :-1] - z[:, -1:]
    response = targets - z[:, -1] * total
    root = np.sqrt(weights)[:, None]
    solution = np.linalg.lstsq(design * root, response * root[:, 0], rcond=None)[0]
    return np.append(solution, total - solution.sum())
