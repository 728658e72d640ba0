"""The default recipe, `hog_heads`: fixed features computed once, linear heads fitted on them,
and every choice made inside the resampling that scores it.

The published model is one Keras model: the fixed trunk of `hog_linear` (histograms of
oriented gradients on 8x8 cells and a 32-bin intensity histogram, no trained weights) feeds
one Dense layer that holds all the cross-fitted linear heads side by side; a softmax per head
and the mean over heads give the output. The features are computed once per scan whatever
the number of heads (the old default ran 8 nets, 4 of them computing the same features).

The heads are multinomial logistic regressions (scikit-learn, L2, classes weighed by 1 / their
share) on standardised features; the standardisation is folded into the Dense weights. Their
training rows are the real scans, a jittered copy of each (zoom 0.9-1.1, shift up to 4 px),
black-barred copies of a quarter of them (bars must not mean
"urgent": only wide-crop malignant scans carry them in the reference data) and, with `flip`
(off by default: it lowered the nested estimate), the left-right mirror of every row, which for these features is a fixed permutation (cells
mirrored, gradient directions reflected), so it costs no image work.

`fit_recipe` makes every choice that shapes a published model from the data it is given:
the L2 strength (by out-of-fold macro F1 over group folds), the class weights of the
predicted class, the urgent threshold, and the study rule. `nested_estimate` runs exactly
that function on 4/5 of the patient groups and scores the held-out fifth, for several deals
of the patients; `expected_unseen` turns those pooled held-out predictions into a range for
a fresh set of about 50 patients (patient-level bootstrap).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from schemas.model_card import URGENT_CLASS, StudyRule, predicted_classes
from trainer.candidates import HOG_CELL, HOG_ORIENTATIONS, INPUT_SHAPE, NUM_CLASSES
from trainer.report import choose_class_weights, choose_urgent_threshold, evaluate

RECIPE = "hog_heads"
RECIPE_VERSION = "4"  # bump when the recipe changes: stored estimates are keyed by it
C_GRID = (0.001, 0.003, 0.01, 0.03, 0.1)  # inverse L2 strength of the heads, chosen inside
INNER_FOLDS = 4
OUTER_FOLDS = 5
OUTER_SEEDS = (0, 1, 2)
BAR_SHARE = 0.25  # share of training rows that also join as black-barred copies
MAX_BAR_ROWS = 12
# Every training row also joins as a jittered copy: zoomed by 0.9-1.1 and shifted by up to 4
# pixels (field of view and position differ between patients; 8-pixel HOG cells are shift-
# sensitive). Nested estimate, deal 0: macro F1 0.594 -> 0.648, urgent precision 0.59 -> 0.73
JITTER_SHARE = 1.0
JITTER_ZOOM = (0.9, 1.1)
JITTER_SHIFT = 4.0
UNSEEN_PATIENTS = 50  # the size of the "fresh set of new patients" the range speaks for
UNSEEN_SLICES = 336  # the same without patient groups (each slice its own unit)
INTERVAL = 0.90  # two-sided; the urgent threshold makes the low end (5 %) meet the target
RESAMPLES = 2000
STUDY_TOP_K = (1, 2, 3, 5)
STUDY_CONFIDENCE = 0.9
MIN_GROUPS = 10
TWIN_CORRELATION = 0.8  # pseudo-cases sharing a slice this alike are joined (one patient)
# Mirrored training copies and test-time mirroring: tried, and the nested estimate fell (macro
# F1 0.662 -> 0.597 on deal 0; TRAINING.md); a chest CT is not left-right symmetric
FLIP = False
FEATURE_BATCH = 256


# -- features -----------------------------------------------------------------------------


def feature_trunk():  # noqa: ANN201 - keras.Model
    """The fixed trunk: float (N, 64, 64, 1) in [0, 1] -> (N, 672) features."""
    import keras

    from trainer.candidates import hog_feature_layers

    scan = keras.Input(INPUT_SHAPE)
    features, set_fixed_weights = hog_feature_layers(scan)
    trunk = keras.Model(scan, features, name="hog_trunk")
    set_fixed_weights()
    return trunk


def features_of(images: np.ndarray, trunk=None) -> np.ndarray:  # noqa: ANN001
    """Features (N, 672) of canonical uint8 scans (N, 64, 64)."""
    from imaging.canonical import to_model_input

    trunk = trunk if trunk is not None else feature_trunk()
    outputs = [
        np.asarray(trunk(to_model_input(images[start : start + FEATURE_BATCH]), training=False))
        for start in range(0, len(images), FEATURE_BATCH)
    ]
    if not outputs:
        return np.zeros((0, trunk.output_shape[-1]), np.float32)
    return np.concatenate(outputs).astype(np.float32)


def barred(images: np.ndarray, seed: int) -> np.ndarray:
    """A copy of every uint8 scan with equal black bands (2-12 rows) at top and bottom."""
    rng = np.random.default_rng(seed)
    out = images.copy()
    size = images.shape[1]
    for index, rows in enumerate(rng.integers(2, MAX_BAR_ROWS + 1, len(images))):
        out[index, :rows] = 0
        out[index, size - rows :] = 0
    return out


def jittered(images: np.ndarray, seed: int) -> np.ndarray:
    """A copy of every uint8 scan, zoomed about its centre by JITTER_ZOOM and shifted by up to
    JITTER_SHIFT pixels each way (bilinear, black outside)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    out = np.empty_like(images)
    centre = (np.asarray(images.shape[1:3], dtype=float) - 1) / 2
    for index, image in enumerate(images):
        zoom = rng.uniform(*JITTER_ZOOM)
        shift = rng.uniform(-JITTER_SHIFT, JITTER_SHIFT, 2)
        matrix = np.eye(2) / zoom
        offset = centre - matrix @ (centre + shift)
        moved = ndimage.affine_transform(
            image.astype(float), matrix, offset=offset, order=1, cval=0.0
        )
        out[index] = np.clip(np.rint(moved), 0, 255).astype(np.uint8)
    return out


def flip_permutation(feature_count: int) -> np.ndarray:
    """`perm` with features(mirror(x)) == features(x)[:, perm]: the HOG cells' columns are
    mirrored and each gradient direction k (of 9, 20 degrees apart) becomes 9 - k (mod 9); the
    blank channel and the intensity histogram stay where they are."""
    cells = 64 // HOG_CELL
    channels = HOG_ORIENTATIONS + 1
    perm = np.arange(feature_count)
    for row in range(cells):
        for column in range(cells):
            for channel in range(channels):
                source = (row * cells + (cells - 1 - column)) * channels
                source += (HOG_ORIENTATIONS - channel) % HOG_ORIENTATIONS if channel < 9 else 9
                perm[(row * cells + column) * channels + channel] = source
    return perm


@dataclass
class Features:
    """What the recipe trains on: features of the scans, of their barred copies, labels and
    patient groups (None: every scan its own)."""

    real: np.ndarray
    bars: np.ndarray
    labels: np.ndarray
    groups: np.ndarray | None = None  # the units folds are dealt by (joined near-twins)
    studies: np.ndarray | None = None  # the groups as given: one study each (default: groups)
    jitter: np.ndarray | None = None  # features of a jittered copy of every scan

    def subset(self, index: np.ndarray) -> Features:
        def pick(values: np.ndarray | None) -> np.ndarray | None:
            return None if values is None else values[index]

        return Features(
            self.real[index], self.bars[index], self.labels[index], pick(self.groups),
            pick(self.studies), pick(self.jitter),
        )  # fmt: skip

    def relabelled(self, labels: np.ndarray) -> Features:
        return Features(self.real, self.bars, labels, self.groups, self.studies, self.jitter)

    @property
    def study_ids(self) -> np.ndarray | None:
        return self.studies if self.studies is not None else self.groups


def scan_features(
    images: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray | None,
    studies: np.ndarray | None = None,
) -> Features:
    """Compute the features of uint8 scans and of their black-barred copies once."""
    trunk = feature_trunk()
    return Features(
        features_of(images, trunk),
        features_of(barred(images, seed=0), trunk),
        np.asarray(labels).astype(int),
        None if groups is None else np.asarray(groups),
        None if studies is None else np.asarray(studies),
        features_of(jittered(images, seed=0), trunk) if JITTER_SHARE else None,
    )


# -- heads --------------------------------------------------------------------------------


@dataclass
class Head:
    """One linear softmax head on raw features (standardisation folded in)."""

    kernel: np.ndarray  # (features, 3)
    bias: np.ndarray  # (3,)

    def logits(self, features: np.ndarray) -> np.ndarray:
        return features @ self.kernel + self.bias

    def mirrored(self, perm: np.ndarray) -> Head:
        """The head applied to the mirrored scan (test-time flip)."""
        kernel = np.empty_like(self.kernel)
        kernel[perm] = self.kernel
        return Head(kernel, self.bias)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def predict_heads(heads: list[Head], features: np.ndarray) -> np.ndarray:
    """Mean softmax of the heads (as the published Keras model computes it)."""
    return np.mean([softmax(head.logits(features)) for head in heads], axis=0)


def fit_head(data: Features, c: float, seed: int, flip: bool) -> Head:
    """One head on all of `data`: real rows, barred copies of BAR_SHARE of them, mirrored."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    chosen = rng.random(len(data.labels)) < BAR_SHARE
    x = np.concatenate([data.real, data.bars[chosen]])
    y = np.concatenate([data.labels, data.labels[chosen]])
    if data.jitter is not None:
        moved = rng.random(len(data.labels)) < JITTER_SHARE
        x = np.concatenate([x, data.jitter[moved]])
        y = np.concatenate([y, data.labels[moved]])
    if flip:
        perm = flip_permutation(x.shape[1])
        x, y = np.concatenate([x, x[:, perm]]), np.concatenate([y, y])
    present = np.unique(data.labels)
    share = {c_: np.mean(data.labels == c_) for c_ in present}
    weight = np.array([1.0 / (len(present) * share[label]) for label in y])
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale < 1e-6] = 1.0
    model = LogisticRegression(C=c, max_iter=300, tol=1e-4)
    model.fit((x - mean) / scale, y, sample_weight=weight)
    coef = np.zeros((x.shape[1], NUM_CLASSES))
    intercept = np.full(NUM_CLASSES, -30.0)  # a class absent from training: never predicted
    if len(model.classes_) == 2:  # binary: sklearn gives one row, for the second class
        coef[:, model.classes_[1]] = model.coef_[0] / 2
        coef[:, model.classes_[0]] = -model.coef_[0] / 2
        intercept[model.classes_[1]] = model.intercept_[0] / 2
        intercept[model.classes_[0]] = -model.intercept_[0] / 2
    else:
        coef[:, model.classes_] = model.coef_.T
        intercept[model.classes_] = model.intercept_
    kernel = coef / scale[:, None]
    return Head(kernel.astype(np.float32), (intercept - mean / scale @ coef).astype(np.float32))


# -- the recipe: every choice, on the data it is given ------------------------------------


@dataclass
class Recipe:
    """A fitted recipe: its heads and the choices made on its own out-of-fold scores."""

    heads: list[Head]
    c: float
    out_of_fold: np.ndarray
    threshold: float
    class_weights: list[float]
    study_rule: StudyRule | None
    flip: bool
    selection: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        return predict_heads(self.serving_heads(features.shape[1]), features)

    def serving_heads(self, feature_count: int) -> list[Head]:
        """The heads the published model averages: each head, and its mirror with `flip`."""
        if not self.flip:
            return list(self.heads)
        perm = flip_permutation(feature_count)
        return [h for head in self.heads for h in (head, head.mirrored(perm))]


def fit_recipe(
    data: Features,
    target_recall: float,
    folds: int = INNER_FOLDS,
    seed: int = 0,
    flip: bool = FLIP,
    grid: tuple[float, ...] = C_GRID,
    refit: bool = False,
) -> Recipe:
    """Choose C by out-of-fold macro F1 over `folds` group folds of `data`, keep the fold
    heads of that C (or refit one head on everything, `refit`), and choose the class weights,
    the urgent threshold and the study rule on the out-of-fold scores. Sees `data` only."""
    from trainer.crossfit import fold_of_images

    started = time.perf_counter()
    fold = fold_of_images(data.labels, data.groups, folds, seed)
    perm = flip_permutation(data.real.shape[1]) if flip else None
    best: tuple[float, float, np.ndarray, list[Head]] | None = None
    selection = {}
    for c in grid:
        out_of_fold = np.zeros((len(data.labels), NUM_CLASSES))
        heads = []
        for index in range(folds):
            held = fold == index
            head = fit_head(data.subset(np.flatnonzero(~held)), c, seed + index, flip)
            serving = [head, head.mirrored(perm)] if flip else [head]
            out_of_fold[held] = predict_heads(serving, data.real[held])
            heads.append(head)
        score = evaluate(data.labels, out_of_fold)["macro_f1"]
        selection[f"C={c:g}"] = round(score, 4)
        if best is None or score > best[0] + 1e-9:
            best = (score, c, out_of_fold, heads)
    _, c, out_of_fold, heads = best
    if refit:
        heads = [fit_head(data, c, seed, flip)]
    weights = choose_class_weights(data.labels, out_of_fold)
    threshold = low_end_threshold(
        data.labels, out_of_fold[:, URGENT_CLASS], data.groups, target_recall
    )
    rule = choose_study_rule(data.labels, out_of_fold, data.study_ids, target_recall)
    return Recipe(
        heads, c, out_of_fold, threshold, weights, rule, flip, selection,
        time.perf_counter() - started,
    )  # fmt: skip


def low_end_threshold(
    labels: np.ndarray, p2: np.ndarray, groups: np.ndarray | None, target_recall: float
) -> float:
    """The highest threshold whose urgent recall reaches `target_recall` at the low end
    (5th percentile) of resamples the size of a fresh set of about UNSEEN_PATIENTS patients'
    urgent ones, on held-out scores. The lowest urgent score always qualifies."""
    labels = np.asarray(labels)
    if groups is None:
        draw = round(UNSEEN_SLICES * np.mean(labels == URGENT_CLASS))
    else:
        urgent_groups = len(np.unique(np.asarray(groups)[labels == URGENT_CLASS]))
        draw = round(UNSEEN_PATIENTS * urgent_groups / len(np.unique(groups)))
    return choose_urgent_threshold(
        labels, p2, target_recall, groups=groups,
        confidence=1 - (1 - INTERVAL) / 2, draw=max(draw, 1),
    )  # fmt: skip


def study_labels_and_scores(
    labels: np.ndarray, p2: np.ndarray, groups: np.ndarray, top_k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per study (group): its names, its label (the majority of its slices', ties to the more
    serious) and its P(2) by the top-k rule."""
    names, inverse = np.unique(groups, return_inverse=True)
    study_label = np.zeros(len(names), dtype=int)
    score = np.zeros(len(names))
    for index in range(len(names)):
        members = inverse == index
        votes = np.bincount(labels[members], minlength=NUM_CLASSES)
        study_label[index] = len(votes) - 1 - np.argmax(votes[::-1])
        score[index] = np.sort(p2[members])[::-1][:top_k].mean()
    return names, study_label, score


def study_metrics(study_label: np.ndarray, flagged: np.ndarray) -> dict:
    urgent = study_label == URGENT_CLASS
    hits = int((flagged & urgent).sum())
    return {
        "studies": len(study_label),
        "urgent_studies": int(urgent.sum()),
        "flagged_studies": int(flagged.sum()),
        "study_recall": hits / max(int(urgent.sum()), 1),
        "study_precision": hits / int(flagged.sum()) if flagged.any() else float("nan"),
    }


def choose_study_rule(
    labels: np.ndarray, probabilities: np.ndarray, groups: np.ndarray | None, target_recall: float
) -> StudyRule | None:
    """The study rule (top-k mean of slice P(2), threshold) for held-out scores grouped by
    patient: per k, the highest threshold whose study recall reaches the target in
    STUDY_CONFIDENCE of bootstrap resamples of the urgent studies; the k with the best study
    precision there (the smallest k on ties). None without groups. (The slices' stricter rule,
    the low end of resamples of ~20 urgent studies, flagged every study on the real scans; the
    plain out-of-fold recall caught only 0.93 of urgent studies in the nested estimate.)"""
    if groups is None:
        return None
    labels = np.asarray(labels)
    best = None
    for top_k in STUDY_TOP_K:
        _, study_label, score = study_labels_and_scores(
            labels, probabilities[:, URGENT_CLASS], np.asarray(groups), top_k
        )
        if not (study_label == URGENT_CLASS).any():
            return None
        threshold = choose_urgent_threshold(
            study_label, score, target_recall, confidence=STUDY_CONFIDENCE
        )
        metrics = study_metrics(study_label, score >= threshold)
        precision = metrics["study_precision"]
        if best is None or precision > best[0] + 1e-9:
            best = (precision, top_k, threshold, metrics)
    _, top_k, threshold, metrics = best
    metrics = {**metrics, "basis": "out-of-fold predictions of the published recipe's heads"}
    return StudyRule(
        top_k=top_k,
        threshold=float(threshold),
        description=(
            f"study P(urgent) = mean of its {top_k} highest slice P(urgent); urgent when >= "
            f"{threshold:.4f} (study recall >= {target_recall} in {STUDY_CONFIDENCE:.0%} of "
            "bootstrap resamples of the urgent out-of-fold studies)"
        ),
        metrics=metrics,
    )


def merge_near_twins(
    images: np.ndarray, groups: np.ndarray, threshold: float = TWIN_CORRELATION
) -> np.ndarray | None:
    """Groups joined wherever a slice of one and a slice of another correlate >= `threshold`
    (pixel correlation): the pseudo-cases are estimated, and such twins are most likely the
    same patient; kept apart, one would be trained on and the other scored. The joined group
    is named by its members' names, sorted and joined by '+'. None when joining would leave
    fewer than half the groups (or MIN_GROUPS): then the scans are alike everywhere (phantoms)
    and similarity says nothing about patients."""
    groups = np.asarray(groups).astype(str)
    names, inverse = np.unique(groups, return_inverse=True)
    x = images.reshape(len(images), -1).astype(np.float64)
    x -= x.mean(axis=1, keepdims=True)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-9)
    parent = list(range(len(names)))

    def root(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for start in range(0, len(x), 512):
        block = x[start : start + 512] @ x.T
        rows, columns = np.nonzero(block >= threshold)
        for a, b in zip(inverse[rows + start], inverse[columns], strict=True):
            ra, rb = root(int(a)), root(int(b))
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    members: dict[int, list[str]] = {}
    for index, name in enumerate(names):
        members.setdefault(root(index), []).append(str(name))
    if len(members) < max(MIN_GROUPS, len(names) / 2):
        return None  # alike everywhere (phantoms): similarity says nothing about patients
    joined = {r: "+".join(sorted(m)) for r, m in members.items()}
    return np.array([joined[root(int(i))] for i in inverse])


# -- the nested estimate ------------------------------------------------------------------


@dataclass
class Scored:
    """Held-out predictions of one deal: every scan scored once by a recipe fitted without it."""

    seed: int
    labels: np.ndarray
    groups: np.ndarray
    probabilities: np.ndarray
    predicted: np.ndarray
    flagged: np.ndarray
    study_flags: dict = field(default_factory=dict)  # group -> (label, flagged)
    choices: list[dict] = field(default_factory=list)


def nested_predictions(
    data: Features,
    target_recall: float,
    seed: int,
    outer: int = OUTER_FOLDS,
    folds: int = INNER_FOLDS,
    flip: bool = FLIP,
    relabel: Callable[[int, np.ndarray, np.ndarray], np.ndarray] | None = None,
    refit: bool = False,
    grid: tuple[float, ...] = C_GRID,
) -> Scored:
    """One deal of the patients into `outer` folds; per fold, `fit_recipe` on the others,
    its heads, class weights, threshold and study rule applied to the held-out fold.
    `relabel(k, labels, held_out_mask)` may replace the labels the deal uses (tests: noise on
    the scoring folds); the recipe of fold k sees only its training rows of them."""
    from trainer.crossfit import fold_of_images

    groups = data.groups if data.groups is not None else np.arange(len(data.labels))
    outer_fold = fold_of_images(data.labels, data.groups, outer, seed=1000 + seed)
    n = len(data.labels)
    scored = Scored(
        seed, np.zeros(n, int), groups, np.zeros((n, NUM_CLASSES)), np.zeros(n, int),
        np.zeros(n, bool),
    )  # fmt: skip
    for k in range(outer):
        held = outer_fold == k
        labels = data.labels if relabel is None else relabel(k, data.labels.copy(), held)
        train = data.relabelled(labels).subset(np.flatnonzero(~held))
        recipe = fit_recipe(train, target_recall, folds, seed + 10 * k, flip, grid, refit)
        probabilities = recipe.probabilities(data.real[held])
        scored.labels[held] = labels[held]
        scored.probabilities[held] = probabilities
        scored.predicted[held] = predicted_classes(probabilities, recipe.class_weights)
        scored.flagged[held] = probabilities[:, URGENT_CLASS] >= recipe.threshold
        if recipe.study_rule is not None and data.study_ids is not None:
            rule = recipe.study_rule
            names, study_label, score = study_labels_and_scores(
                labels[held], probabilities[:, URGENT_CLASS], data.study_ids[held], rule.top_k
            )
            for name, label, value in zip(names, study_label, score, strict=True):
                scored.study_flags[name] = (int(label), bool(value >= rule.threshold))
        scored.choices.append(
            {"C": recipe.c, "threshold": round(recipe.threshold, 4),
             "class_weights": recipe.class_weights,
             "study_top_k": None if recipe.study_rule is None else recipe.study_rule.top_k}
        )  # fmt: skip
    return scored


def nested_estimate(
    data: Features,
    target_recall: float,
    seeds: tuple[int, ...] = OUTER_SEEDS,
    outer: int = OUTER_FOLDS,
    folds: int = INNER_FOLDS,
    flip: bool = FLIP,
    relabel: Callable | None = None,
    refit: bool = False,
) -> tuple[dict, list[Scored]]:
    """`expected_unseen` from `nested_predictions` over several deals, and the deals."""
    deals = [
        nested_predictions(data, target_recall, seed, outer, folds, flip, relabel, refit)
        for seed in seeds
    ]
    return expected_unseen(deals, target_recall, grouped=data.groups is not None), deals


def _macro_f1(confusion: np.ndarray) -> np.ndarray:
    """Macro F1 of confusion matrices (..., 3, 3), rows true (classes absent count as 0)."""
    tp = np.diagonal(confusion, axis1=-2, axis2=-1)
    denominator = confusion.sum(axis=-1) + confusion.sum(axis=-2)
    f1 = np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 0.0)
    return f1.mean(axis=-1)


def deal_point(scored: Scored) -> dict:
    """Pooled slice-level numbers of one deal."""
    report = evaluate(scored.labels, np.eye(NUM_CLASSES)[scored.predicted])
    urgent = scored.labels == URGENT_CLASS
    hits = int((scored.flagged & urgent).sum())
    point = {
        "seed": scored.seed,
        "macro_f1": report["macro_f1"],
        "f1_per_class": [report["per_class"][name]["f1"] for name in report["per_class"]],
        "urgent_recall": hits / max(int(urgent.sum()), 1),
        "urgent_precision": hits / max(int(scored.flagged.sum()), 1),
        "healthy_flagged": float(scored.flagged[scored.labels == 0].mean()),
        "choices": scored.choices,
    }
    if scored.study_flags:
        values = np.array(list(scored.study_flags.values()))
        point.update(study_metrics(values[:, 0], values[:, 1].astype(bool)))
    return point


def expected_unseen(deals: list[Scored], target_recall: float, grouped: bool = True) -> dict:
    """Point estimate (mean over deals of the pooled held-out numbers) and the `INTERVAL`
    range of what a fresh set of UNSEEN_PATIENTS patients would show: per deal, RESAMPLES
    draws of that many patients (with replacement) from the held-out predictions, all deals'
    draws pooled, so the range holds both the sampling of patients and the deal's spread."""
    rng = np.random.default_rng(0)
    samples: dict[str, list[np.ndarray]] = {
        "macro_f1": [],
        "urgent_recall": [],
        "urgent_precision": [],
    }
    for scored in deals:
        names, unit = np.unique(scored.groups, return_inverse=True)
        per_unit = np.zeros((len(names), NUM_CLASSES, NUM_CLASSES))
        np.add.at(per_unit, (unit, scored.labels, scored.predicted), 1)
        urgent = scored.labels == URGENT_CLASS
        tp = np.bincount(unit, weights=(scored.flagged & urgent), minlength=len(names))
        positives = np.bincount(unit, weights=urgent, minlength=len(names))
        flagged = np.bincount(unit, weights=scored.flagged, minlength=len(names))
        size = UNSEEN_PATIENTS if grouped else UNSEEN_SLICES
        draws = rng.multinomial(size, np.full(len(names), 1 / len(names)), size=RESAMPLES)
        confusion = np.einsum("bu,uij->bij", draws, per_unit)
        samples["macro_f1"].append(_macro_f1(confusion))
        samples["urgent_recall"].append((draws @ tp) / np.maximum(draws @ positives, 1))
        samples["urgent_precision"].append((draws @ tp) / np.maximum(draws @ flagged, 1))
    points = [deal_point(scored) for scored in deals]
    low_q, high_q = (1 - INTERVAL) / 2, 1 - (1 - INTERVAL) / 2
    result: dict = {}
    for key, values in samples.items():
        pooled = np.concatenate(values)
        result[key] = {
            "estimate": round(float(np.mean([p[key] for p in points])), 3),
            "low": round(float(np.quantile(pooled, low_q)), 3),
            "high": round(float(np.quantile(pooled, high_q)), 3),
        }
    result["meets_target"] = bool(result["urgent_recall"]["low"] >= target_recall - 1e-9)
    result["per_deal"] = [
        {k: (round(v, 3) if isinstance(v, float) else v) for k, v in p.items()} for p in points
    ]
    if all("study_recall" in p for p in points):
        result["study"] = {
            key: round(float(np.mean([p[key] for p in points])), 3)
            for key in ("study_recall", "study_precision")
        }
    return result


# -- the published Keras model ------------------------------------------------------------


def heads_model(heads: list[Head], name: str = RECIPE):  # noqa: ANN201 - keras.Model
    """One Keras model: the fixed trunk once, all heads in one Dense layer, softmax per head,
    mean over heads. Built-in layers only."""
    import keras
    from keras import layers

    from trainer.candidates import hog_feature_layers

    scan = keras.Input(INPUT_SHAPE)
    features, set_fixed_weights = hog_feature_layers(scan)
    dense = layers.Dense(NUM_CLASSES * len(heads), name="heads")
    logits = layers.Reshape((len(heads), NUM_CLASSES))(dense(features))
    output = layers.GlobalAveragePooling1D(name="mean_over_heads")(layers.Softmax(axis=-1)(logits))
    model = keras.Model(scan, output, name=name)
    set_fixed_weights()
    dense.set_weights(
        [
            np.concatenate([head.kernel for head in heads], axis=1),
            np.concatenate([head.bias for head in heads]),
        ]
    )
    return model


def describe_range(unseen: dict) -> str:
    """One line: the three ranges."""
    parts = []
    for key, label in (
        ("macro_f1", "macro F1"),
        ("urgent_recall", "urgent recall"),
        ("urgent_precision", "urgent precision"),
    ):
        value = unseen[key]
        parts.append(f"{label} {value['estimate']:.2f} ({value['low']:.2f}-{value['high']:.2f})")
    return ", ".join(parts)


def _is_nan(value: float) -> bool:
    return isinstance(value, float) and math.isnan(value)
