"""Parent and absent queries of a benchmark clip, and their summaries in ``eval.json``.

The engine and the main metrics use a clip's mutually exclusive queries (``Dog`` + ``Bark`` -> ``Bark``). A model
is also asked, per clip:

* **parent queries**: every vocabulary class above one of the clip's queries (``Dog`` on a clip with ``Bark``); its
  target is the sum of the targets of the queries below it. They are scored like the others and summarised apart,
  with the SI-SDR difference to the child's own query where the parent covers a single query;
* **absent queries**: vocabulary classes unrelated to every label of the clip (neither above nor below any); the
  answer should be silence, so the summary is the output level relative to the mixture.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from clearsep_data.ontology import Ontology

PARENT = "parent"
LABEL = "label"


@dataclass(frozen=True)
class AbsentScore:
    """The output of a query for a class the clip does not hold."""

    clip_id: str
    query: str
    name: str
    level_db: float
    """Energy of the output relative to the mixture (dB)."""

    def to_dict(self) -> dict:
        return asdict(self)


def parent_queries(
    ontology: Ontology, queries: Sequence[str], targets: np.ndarray, vocabulary: set[str]
) -> tuple[list[str], list[str | None], np.ndarray]:
    """Vocabulary classes above the clip's ``queries``, the child each covers alone (else ``None``), their targets."""
    parents = sorted({mid for query in queries for mid in ontology.ancestors(query) if mid in vocabulary} - set(queries))
    children, parent_targets = [], []
    for parent in parents:
        below = [i for i, query in enumerate(queries) if query in ontology.descendants(parent)]
        children.append(queries[below[0]] if len(below) == 1 else None)
        parent_targets.append(targets[below].sum(axis=0))
    return parents, children, np.asarray(parent_targets, dtype=targets.dtype).reshape(len(parents), targets.shape[-1])


def absent_queries(
    ontology: Ontology, labels: Sequence[str], vocabulary: Sequence[str], count: int, seed: int
) -> list[str]:
    """Up to ``count`` vocabulary classes neither equal to, above nor below any of ``labels`` (drawn with ``seed``)."""
    related = set(labels)
    for label in labels:
        if label in ontology:
            related |= ontology.ancestors(label) | ontology.descendants(label)
    candidates = [mid for mid in vocabulary if mid not in related]
    if not candidates or count <= 0:
        return []
    picked = np.random.default_rng(seed).choice(len(candidates), size=min(count, len(candidates)), replace=False)
    return [candidates[i] for i in sorted(picked)]


def parent_summary(items: Sequence) -> dict | None:
    """Mean SI-SDR of the parent items, per parent class, and the mean gap to the child's own query."""
    parents = [item for item in items if item.kind == PARENT]
    if not parents:
        return None
    own = {(item.clip_id, item.query): item.si_sdr for item in items if item.kind == LABEL}
    gaps = [item.si_sdr - own[(item.clip_id, item.child)] for item in parents if (item.clip_id, item.child) in own]
    per_class: dict[str, list[float]] = {}
    for item in parents:
        per_class.setdefault(item.name, []).append(item.si_sdr)
    return {
        "num_items": len(parents),
        "si_sdr": float(np.mean([item.si_sdr for item in parents])),
        "si_sdr_minus_child": float(np.mean(gaps)) if gaps else None,
        "per_class": {name: {"count": len(v), "si_sdr": float(np.mean(v))} for name, v in sorted(per_class.items())},
    }


def absent_summary(scores: Sequence[AbsentScore]) -> dict | None:
    """Median and 90th percentile of the absent queries' output levels (dB relative to the mixture)."""
    if not scores:
        return None
    levels = np.asarray([score.level_db for score in scores])
    return {
        "num_items": len(scores),
        "median_level_db": float(np.median(levels)),
        "p90_level_db": float(np.percentile(levels, 90)),
        "share_below_-30_db": float(np.mean(levels <= -30.0)),
    }
