"""What a query stands for: label ids, ontology classes outside the vocabulary, free text and audio examples (CLAP).

:class:`ClearSepQueryMixin` gives :class:`ClearSepModel` its query side: display names and MIDs map to label ids, an
ontology class outside the vocabulary to its nearest vocabulary labels (``config.ontology``, see
:mod:`.label_hierarchy`), and with ``query_encoder="clap"`` any other text and audio examples to CLAP embeddings.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


class ClearSepQueryMixin:
    """Query look-up and embedding for :class:`ClearSepModel` (uses its ``config``, ``label_hierarchy``,
    ``query_encoder`` and ``clap_processors``)."""

    def _label_index(self, query: str) -> int | None:
        """The label id of a display name (case-insensitive) or MID; ``None`` for anything else."""
        mid = self.label_hierarchy.mid(query) if isinstance(query, str) else None
        return self.label_hierarchy.label_index.get(mid)

    def query_ids(self, queries: str | Sequence[str]) -> torch.LongTensor:
        """Label ids of display names (case-insensitive) or MIDs, e.g. ``["Speech", "/m/0bt9lr"]``."""
        if isinstance(queries, str):
            queries = [queries]
        ids = [self._label_index(query) for query in queries]
        self._raise_unknown([query for query, index in zip(queries, ids) if index is None])
        return torch.tensor(ids, dtype=torch.long, device=self.device)

    def _raise_unknown(self, unknown: list) -> None:
        if unknown:
            examples = ", ".join(repr(name) for name in list(self.config.id2label.values())[:5])
            raise ValueError(
                f"unknown queries {unknown}: not a display name or MID of this model's {self.config.num_labels} labels"
                + (" or of a class above them" if self.config.ontology else "")
                + (f" (e.g. {examples})" if examples else "")
            )

    def expand_queries(self, queries: str | Sequence[str]) -> tuple[list[int | str], list[int]]:
        """What the network is asked for each query, and which query each item belongs to.

        A vocabulary label is one item (its id); an ontology class outside the vocabulary (``"Animal"``, with
        ``config.ontology``) is its nearest vocabulary labels, whose outputs :meth:`separate` sums; with
        ``query_encoder="clap"`` any other text is one item (the text).
        """
        queries = [queries] if isinstance(queries, str) else list(queries)
        items: list[int | str] = []
        groups: list[int] = []
        unknown = []
        for position, query in enumerate(queries):
            ids = self.label_hierarchy.resolve(query)
            if ids is None and self.config.query_encoder == "clap" and isinstance(query, str):
                ids = [query]
            if ids is None:
                unknown.append(query)
                continue
            items += ids
            groups += [position] * len(ids)
        self._raise_unknown(unknown)
        return items, groups

    def query_embeddings(self, queries: str | Sequence[str]) -> torch.Tensor:
        """The ``(N, query_dim)`` embeddings that condition the decoder, one per item of :meth:`expand_queries`.

        Display names and MIDs of the vocabulary use the label table (or, with ``query_encoder="clap"``, the cached
        CLAP embeddings of the names); with ``"clap"`` any other text goes through the CLAP text tower.
        """
        items, _ = self.expand_queries(queries)
        if all(isinstance(item, int) for item in items):
            return self.query_encoder(torch.tensor(items, dtype=torch.long, device=self.device))
        encoder = self.query_encoder
        texts = [item for item in items if isinstance(item, str)]
        free = iter(encoder.embed_texts(self.clap_processors.require("text", self.name_or_path), texts))
        clap = [encoder.label_embeddings[item, 0] if isinstance(item, int) else next(free) for item in items]
        return encoder.projection(torch.stack(clap))

    def audio_query_embeddings(self, examples: Sequence, sampling_rate: int) -> torch.Tensor:
        """The ``(N, query_dim)`` embeddings of audio examples (``query_encoder="clap"``: the CLAP audio tower)."""
        if self.config.query_encoder != "clap":
            raise ValueError(f"audio queries need query_encoder='clap', this model's is {self.config.query_encoder!r}")
        extractor = self.clap_processors.require("audio", self.name_or_path)
        return self.query_encoder.projection(self.query_encoder.embed_audio(extractor, examples, sampling_rate))

    def cache_label_embeddings(self, tokenizer) -> None:
        """Compute the CLAP text embedding of every label's display name (``query_encoder="clap_text"`` or ``"clap"``).

        ``tokenizer`` is the text tower's tokenizer (e.g. loaded with ``AutoTokenizer.from_pretrained``); save it next
        to the model with ``tokenizer.save_pretrained(folder)`` to recompute embeddings for a new vocabulary later.
        """
        names = [self.config.id2label[index] for index in range(self.config.num_labels)]
        self.query_encoder.cache_label_embeddings(tokenizer, names)


__all__ = ["ClearSepQueryMixin"]
