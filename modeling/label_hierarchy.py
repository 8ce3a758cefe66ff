"""The label hierarchy a model carries: which vocabulary labels lie below an ontology class.

``config.ontology`` holds the ontology entries (``ontology.json``'s ``id``, ``name``, ``child_ids``) of the vocabulary's
labels and of every class above them. It serves two purposes:

* a query for a class outside the vocabulary (``"Animal"``, ``"Domestic animals, pets"``) means the sum of the
  separations of its *nearest vocabulary descendants*: the vocabulary labels below it with no other vocabulary label in
  between (``Dog`` and ``Bird`` for ``Animal`` when ``Bark`` lies below ``Dog``), so no sound is counted twice;
* with ``query_encoder="embedding"``, a vocabulary class's embedding is its own table row plus the mean embedding of
  its nearest vocabulary descendants (:meth:`LabelHierarchy.composition`), so a parent query starts as its children's
  and trains together with them.

Models without ``config.ontology`` (saved before it existed) know no hierarchy: a query must name a vocabulary label.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


class LabelHierarchy:
    """Ontology look-ups over a model's vocabulary (``label_mids``, display names) and ``ontology`` entries."""

    def __init__(self, label_mids: Sequence[str], names: Sequence[str], ontology: Sequence[dict] | None):
        self.label_index = {mid: index for index, mid in enumerate(label_mids)}
        self.children = {entry["id"]: list(entry.get("child_ids", ())) for entry in ontology or ()}
        by_name = {entry["name"].casefold(): entry["id"] for entry in ontology or ()}
        self.by_name = {**by_name, **{name.casefold(): mid for mid, name in zip(label_mids, names, strict=True)}}

    def mid(self, query: str) -> str | None:
        """The MID of a MID or display name (case-insensitive) of the vocabulary or the ontology; ``None`` otherwise."""
        if query in self.label_index or query in self.children:
            return query
        return self.by_name.get(query.casefold())

    def nearest_labels(self, mid: str) -> list[int]:
        """Vocabulary ids of the labels below ``mid`` with no other vocabulary label in between, in vocabulary order."""
        found: set[int] = set()
        seen: set[str] = set()
        pending = list(self.children.get(mid, ()))
        while pending:
            node = pending.pop()
            if node in seen:
                continue
            seen.add(node)
            if node in self.label_index:
                found.add(self.label_index[node])
            else:
                pending.extend(self.children.get(node, ()))
        return sorted(found)

    def resolve(self, query: str) -> list[int] | None:
        """The vocabulary ids a query stands for: its own label, or an ontology class's nearest vocabulary labels;
        ``None`` for anything else (a class with no vocabulary label below it included)."""
        mid = self.mid(query) if isinstance(query, str) else None
        if mid is None:
            return None
        if mid in self.label_index:
            return [self.label_index[mid]]
        return self.nearest_labels(mid) or None

    def depth(self) -> int:
        """Levels of vocabulary labels above vocabulary labels (0 when none lies below another): how many times
        :meth:`composition` must be applied to reach every descendant."""
        below = {index: self.nearest_labels(mid) for mid, index in self.label_index.items()}
        levels: dict[int, int] = {}

        def level(index: int) -> int:
            if index not in levels:
                levels[index] = 1 + max(map(level, below[index])) if below[index] else 0
            return levels[index]

        return max(map(level, below), default=0)

    def composition(self) -> torch.Tensor:
        """``(L, L)`` matrix ``A`` with ``A[p, c] = 1 / k`` for each of the ``k`` nearest vocabulary labels ``c``
        below vocabulary label ``p`` (zero rows for leaves)."""
        size = len(self.label_index)
        matrix = torch.zeros(size, size)
        for mid, parent in self.label_index.items():
            below = self.nearest_labels(mid)
            if below:
                matrix[parent, below] = 1.0 / len(below)
        return matrix


__all__ = ["LabelHierarchy"]
