"""How sure the model is of a suggestion: a probability in [0, 1] that it is exactly right.

The features come from the log-probabilities of the generated tokens, which every engine reports
the same way (`Completion.token_logprobs`), from the size of the edit, from how much of the edit
the review comment names and, where several answers were sampled (`--samples`), from how many of
them agree. A `Calibration` maps
them to a probability with a logistic fit on a dev split (`revisor calibrate`); without one, the
confidence is the answer's geometric-mean token probability, which ranks answers as well but is
not calibrated.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from revisor.model.errors import RevisorError

FEATURES = ("mean_logprob", "min_logprob", "log_tokens", "edit_size", "agreement", "grounding")
CALIBRATION_FILE = "calibration.json"
"""Where a calibration lives: beside the adapter it was fitted for."""

_TOKEN = re.compile(r"\w+|[^\w\s]")
"""Words (identifiers, numbers, keywords) and single symbols, of code and of comments alike."""


def features(token_logprobs: Sequence[float], original: str, revised: str,
             agreement: float = math.nan, comment: str = "") -> tuple[float, ...]:
    """Mean and least token log-probability, log of the answer's length in tokens, the fraction of
    the original's lines the revision changes, the fraction of the sampled answers that give the
    same code (NaN where only one answer was asked for), and the revision's `grounding` in the
    comment."""
    logprobs = list(token_logprobs) or [0.0]
    before, after = original.strip("\n").split("\n"), revised.strip("\n").split("\n")
    matcher = difflib.SequenceMatcher(None, [s.strip() for s in before], [s.strip() for s in after],
                                      autojunk=False)
    return (sum(logprobs) / len(logprobs), min(logprobs), math.log(len(logprobs)),
            1.0 - matcher.ratio(), agreement, grounding(comment, original, revised))


def grounding(comment: str, original: str, revised: str) -> float:
    """The share of the words the revision adds or removes that the comment names (of the symbols,
    where it changes no word); 0 without a comment.

    A revision the comment spells out ("rename `listner` to `listener`", a suggestion block) is
    far more often the reviewer's own than one the model had to invent.
    """
    before, after = Counter(_TOKEN.findall(original)), Counter(_TOKEN.findall(revised))
    changed = list(((after - before) + (before - after)).elements())
    words = [token for token in changed if token[0].isalnum() or token[0] == "_"] or changed
    if not words:
        return 0.0
    named = set(_TOKEN.findall(comment))
    return sum(token in named for token in words) / len(words)


@dataclass(frozen=True)
class Calibration:
    """A logistic fit of exact-match correctness on some of the standardized `FEATURES` (those
    named in `uses`), and the threshold chosen for a target precision on the dev split."""

    weights: tuple[float, ...]
    bias: float
    means: tuple[float, ...]
    scales: tuple[float, ...]
    uses: tuple[str, ...] = FEATURES
    threshold: float = 0.0
    figures: dict = field(default_factory=dict)
    """Where it came from: dev split, target precision, coverage and precision there."""

    def confidence(self, values: Sequence[float]) -> float:
        """`values` are all of `FEATURES`, as `features()` gives them. Where a value it weighs is
        not a number (an infinite log-probability, agreement where one answer was asked for), or
        its own weights are not, the confidence is 0: never suggested, where NaN would pass any
        threshold."""
        chosen = [values[FEATURES.index(name)] for name in self.uses]
        z = self.bias + sum(w * (v - m) / s for w, v, m, s in
                            zip(self.weights, chosen, self.means, self.scales, strict=True))
        if not math.isfinite(z):
            return 0.0
        return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z))))

    @property
    def samples(self) -> int:
        """How many answers per request it was fitted on (`--samples`)."""
        return int(self.figures.get("samples", 1))

    def save(self, path: Path) -> None:
        """Written whole or not at all; a fit that is not a number is refused."""
        if not all(math.isfinite(v) for v in (*self.weights, self.bias, *self.means, *self.scales)):
            raise RevisorError("the fit's weights are not numbers: a feature value was infinite")
        partial = path.with_name(path.name + ".partial")
        partial.write_text(json.dumps(asdict(self), indent=2) + "\n")
        os.replace(partial, path)

    @classmethod
    def load(cls, path: str | Path) -> Calibration:
        try:
            data = json.loads(Path(path).read_text())
        except OSError as error:
            raise RevisorError(f"cannot read the calibration {path}: {error.strerror}") from None
        except json.JSONDecodeError as error:
            raise RevisorError(f"{path} is not a calibration file ({error.msg})") from None
        uses = tuple(data.get("uses", ()))
        if not uses or not set(uses) <= set(FEATURES):
            raise RevisorError(f"{path} was fitted on other features: run `revisor calibrate` again")
        return cls(tuple(data["weights"]), data["bias"], tuple(data["means"]), tuple(data["scales"]), uses,
                   data.get("threshold", 0.0), data.get("figures", {}))


def uncalibrated_confidence(values: Sequence[float]) -> float:
    """The geometric-mean probability of the answer's tokens."""
    return math.exp(values[0])


def fit(rows: Sequence[Sequence[float]], labels: Sequence[bool], uses: Sequence[str] = FEATURES,
        l2: float = 1.0) -> Calibration:
    """Logistic regression on the features named in `uses` (`rows` hold all of `FEATURES`) by
    Newton's method, with an L2 penalty so a few hundred dev rows with a handful of exact answers
    give stable weights."""
    import numpy as np

    columns = [FEATURES.index(name) for name in uses]
    x = np.asarray(rows, dtype=float).reshape(len(rows), len(FEATURES))[:, columns]
    y = np.asarray(labels, dtype=float)
    if len(x) == 0:
        raise RevisorError("nothing to calibrate on: the model changed none of the dev records")
    if not np.isfinite(x).all():
        raise RevisorError(f"cannot fit on feature values that are not numbers ({', '.join(uses)})")
    means, scales = x.mean(axis=0), x.std(axis=0)
    scales[scales == 0] = 1.0
    design = np.hstack([np.ones((len(x), 1)), (x - means) / scales])
    beta = np.zeros(design.shape[1])
    penalty = np.diag([0.0] + [l2] * x.shape[1])
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-design @ beta))
        gradient = design.T @ (p - y) + penalty @ beta
        hessian = design.T @ (design * (p * (1 - p))[:, None]) + penalty + 1e-9 * np.eye(len(beta))
        step = np.linalg.solve(hessian, gradient)
        beta -= step
        if np.abs(step).max() < 1e-8:
            break
    return Calibration(tuple(beta[1:].tolist()), float(beta[0]), tuple(means.tolist()),
                       tuple(scales.tolist()), tuple(uses))
