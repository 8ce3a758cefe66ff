"""The AudioSet ontology and the choice of mutually exclusive queries for a clip.

AudioSet labels a clip with every applicable node of a hierarchy, so ``Dog`` and ``Bark`` often
come together. The engine must query the separator once per *sound event*, so a clip's label set
is reduced to labels of which none is an ancestor or descendant of another, keeping the most
specific one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from clearsep_data.errors import ClearSepError


@dataclass(frozen=True)
class OntologyNode:
    """One entry of ``ontology.json``."""

    id: str
    name: str
    child_ids: tuple[str, ...] = ()
    restrictions: tuple[str, ...] = ()
    description: str = ""


@dataclass(frozen=True)
class QuerySelection:
    """The queries chosen for one clip, and what happened to each of its other labels."""

    queries: tuple[str, ...]
    redundant: tuple[str, ...] = ()
    """Labels dropped because a more specific label of the same clip lies below them."""
    lifted: dict[str, str] = field(default_factory=dict)
    """Labels outside the query vocabulary replaced by their nearest ancestor inside it."""
    out_of_vocabulary: tuple[str, ...] = ()
    """Labels with no ancestor in the query vocabulary: the clip cannot be fully separated."""
    unknown: tuple[str, ...] = ()
    """Labels that are not in the ontology at all."""


class OntologyError(ClearSepError):
    """A malformed ontology file."""


class Ontology:
    """Parents, children and ancestors of AudioSet classes, keyed by MID (``/m/09x0r``)."""

    def __init__(self, nodes: Iterable[OntologyNode]):
        self.nodes: dict[str, OntologyNode] = {}
        for node in nodes:
            if node.id in self.nodes:
                raise OntologyError(f"duplicate ontology id {node.id!r}")
            self.nodes[node.id] = node
        self._parents: dict[str, list[str]] = {mid: [] for mid in self.nodes}
        for node in self.nodes.values():
            for child in node.child_ids:
                if child in self._parents:
                    self._parents[child].append(node.id)
        cycle = self._find_cycle()
        if cycle:
            raise OntologyError(
                f"child_ids form a cycle: {' -> '.join(cycle)} (a class cannot be its own ancestor); "
                "remove one of these child links"
            )
        self._by_name = {node.name.casefold(): node.id for node in self.nodes.values()}

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> Ontology:
        """Load AudioSet's ``ontology.json`` (a list of objects with ``id``, ``name``, ``child_ids``)."""
        try:
            with open(path, encoding="utf-8") as handle:
                entries = json.load(handle)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise OntologyError(f"{os.fspath(path)}: cannot read ontology ({error})") from None
        return cls.from_entries(entries, source=os.fspath(path))

    @classmethod
    def from_entries(cls, entries: Sequence[dict], source: str = "ontology") -> Ontology:
        """Build an ontology from parsed ``ontology.json`` entries."""
        if not isinstance(entries, list):
            raise OntologyError(f"{source}: expected a JSON list of classes")
        nodes = []
        for position, entry in enumerate(entries):
            if not isinstance(entry, dict) or not isinstance(entry.get("id"), str) or not isinstance(entry.get("name"), str):
                raise OntologyError(f"{source}: entry {position} lacks a string 'id' or 'name'")
            for key in ("child_ids", "restrictions"):
                value = entry.get(key, [])
                if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
                    raise OntologyError(f"{source}: entry {position} ({entry['id']}): '{key}' must be a list of strings")
            nodes.append(
                OntologyNode(
                    id=entry["id"],
                    name=entry["name"],
                    child_ids=tuple(entry.get("child_ids", ())),
                    restrictions=tuple(entry.get("restrictions", ())),
                    description=entry.get("description", ""),
                )
            )
        try:
            return cls(nodes)
        except OntologyError as error:
            raise OntologyError(f"{source}: {error}") from None

    def _find_cycle(self) -> list[str] | None:
        """A loop of child links as MIDs (the first repeated at the end), else ``None``.

        Every class on such a loop is its own ancestor, so query selection would drop all of them as
        redundant and each clip would be skipped with "no labels to query" instead of one clear error.
        """
        done: set[str] = set()
        for root in self.nodes:
            if root in done:
                continue
            path, pending = [root], [iter(self.children(root))]  # depth-first, without recursion
            while pending:
                child = next(pending[-1], None)
                if child is None:
                    done.add(path.pop())
                    pending.pop()
                elif child in path:
                    return path[path.index(child) :] + [child]
                elif child not in done:
                    path.append(child)
                    pending.append(iter(self.children(child)))
        return None

    def to_entries(self) -> list[dict]:
        """The ontology as ``ontology.json`` entries."""
        return [
            {
                "id": node.id,
                "name": node.name,
                "description": node.description,
                "child_ids": list(node.child_ids),
                "restrictions": list(node.restrictions),
            }
            for node in self.nodes.values()
        ]

    def __contains__(self, mid: object) -> bool:
        return mid in self.nodes

    def __len__(self) -> int:
        return len(self.nodes)

    def name(self, mid: str) -> str:
        """Display name of ``mid``."""
        return self.nodes[mid].name

    def resolve(self, query: str) -> str:
        """The MID for a MID or a display name (case-insensitive); ``KeyError`` if neither."""
        if query in self.nodes:
            return query
        return self._by_name[query.casefold()]

    def children(self, mid: str) -> tuple[str, ...]:
        return tuple(child for child in self.nodes[mid].child_ids if child in self.nodes)

    def parents(self, mid: str) -> tuple[str, ...]:
        return tuple(self._parents[mid])

    def ancestors(self, mid: str) -> set[str]:
        """Every node above ``mid`` (the ontology is a DAG: a class may have several parents)."""
        return self._closure(mid, self.parents)

    def descendants(self, mid: str) -> set[str]:
        return self._closure(mid, self.children)

    def _closure(self, mid: str, step) -> set[str]:
        seen: set[str] = set()
        frontier = list(step(mid))
        while frontier:
            node = frontier.pop()
            if node not in seen:
                seen.add(node)
                frontier.extend(step(node))
        return seen

    def exclusive(self, labels: Iterable[str]) -> tuple[list[str], list[str]]:
        """Reduce ``labels`` to the most specific ones; returns ``(kept, redundant)``.

        No kept label is an ancestor of another; duplicates are removed; both lists keep the
        order of first appearance, so the result is deterministic.
        """
        unique = list(dict.fromkeys(labels))
        above = set().union(*(self.ancestors(label) for label in unique)) if unique else set()
        kept = [label for label in unique if label not in above]
        redundant = [label for label in unique if label in above]
        return kept, redundant

    def nearest_in(self, mid: str, vocabulary: set[str]) -> str | None:
        """The closest ancestor of ``mid`` (breadth first, ties by ontology order) in ``vocabulary``."""
        frontier = list(self.parents(mid))
        seen: set[str] = set()
        while frontier:
            for node in frontier:
                if node in vocabulary:
                    return node
            seen.update(frontier)
            frontier = [parent for node in frontier for parent in self.parents(node) if parent not in seen]
        return None

    def select_queries(self, labels: Sequence[str], vocabulary: Iterable[str] | None = None) -> QuerySelection:
        """Choose the mutually exclusive queries for a clip labelled ``labels``.

        The labels are first reduced to the most specific ones; those outside ``vocabulary`` (the
        model's query MIDs) are then lifted to their nearest ancestor inside it, or reported in
        ``out_of_vocabulary``; labels not in the ontology are reported in ``unknown``. Nothing is
        dropped without being named in the result.
        """
        unknown = tuple(label for label in dict.fromkeys(labels) if label not in self.nodes)
        kept, redundant = self.exclusive(label for label in labels if label in self.nodes)
        lifted: dict[str, str] = {}
        out_of_vocabulary: list[str] = []
        if vocabulary is not None:
            vocabulary = set(vocabulary)
            mapped = []
            for label in kept:
                if label in vocabulary:
                    mapped.append(label)
                elif (ancestor := self.nearest_in(label, vocabulary)) is not None:
                    lifted[label] = ancestor
                    mapped.append(ancestor)
                else:
                    out_of_vocabulary.append(label)
            kept, merged = self.exclusive(mapped)  # a lifted label may land on or above another one
            redundant += merged
        return QuerySelection(
            queries=tuple(kept),
            redundant=tuple(redundant),
            lifted=lifted,
            out_of_vocabulary=tuple(out_of_vocabulary),
            unknown=unknown,
        )

    def subset(self, mids: Iterable[str]) -> Ontology:
        """The sub-ontology holding ``mids`` and all their ancestors, child lists pruned to it."""
        keep: set[str] = set()
        for mid in mids:
            keep.add(mid)
            keep |= self.ancestors(mid)
        return Ontology(
            OntologyNode(
                id=node.id,
                name=node.name,
                child_ids=tuple(child for child in node.child_ids if child in keep),
                restrictions=node.restrictions,
                description=node.description,
            )
            for node in self.nodes.values()
            if node.id in keep
        )


def mid_slug(mid: str) -> str:
    """File-name form of a MID (``/m/09x0r`` -> ``m_09x0r``), used in track ids and reference paths."""
    return mid.strip("/").replace("/", "_")
