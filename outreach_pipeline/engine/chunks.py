"""Chunks of staged rows that a load can plan one at a time and still decide as it would all at once.

The planner judges some things among the rows it is given: two rows sharing a natural key (two prospects with
one email) both fail, and of rows sharing a link key only the latest is written. A load that plans a range in
chunks (so its memory is bounded by the chunk, not the range) must therefore give each chunk every row that
shares a key with one of its rows. Rules:

* Rows are grouped by "shares a natural key or a link key with", transitively (union-find), keys normalised as
  the planner normalises them; a blank key component shares nothing.
* A group is never split. Groups fill chunks in the order of their first row, and a chunk is closed once it
  holds `size` rows: a chunk holds at most `size` rows plus the rest of a group that started in it.
* Within a chunk, rows keep their staged order.
"""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd

from outreach_pipeline.mapping.models import EntityMapping
from outreach_pipeline.mapping.normalise import normalise_link_key, normalise_natural_key


def key_sharing_chunks(staged: pd.DataFrame, entity: EntityMapping, size: int) -> Iterator[pd.DataFrame]:
    """`staged` in chunks of about `size` rows, each holding every row that shares a key with one of its rows."""
    rows = len(staged)
    if rows <= size:
        yield staged
        return
    parent = list(range(rows))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for keys in _key_columns(staged, entity):
        first_holder: dict[object, int] = {}
        for position, key in enumerate(keys):
            if key is None:
                continue
            if (holder := first_holder.setdefault(key, position)) != position:
                low, high = sorted((root(holder), root(position)))
                parent[high] = low  # the root is always a group's first row
    chunks: list[list[int]] = []
    chunk_of_group: dict[int, int] = {}
    for position in range(rows):
        group = root(position)
        if group == position and (not chunks or len(chunks[-1]) >= size):
            chunks.append([])
        chunk = chunk_of_group.setdefault(group, len(chunks) - 1)
        chunks[chunk].append(position)
    for positions in chunks:
        yield staged.iloc[positions]


def _key_columns(staged: pd.DataFrame, entity: EntityMapping) -> Iterator[list[object]]:
    """Per row, its normalised link key, then its natural key (a tuple; None when any part is blank)."""
    link_key = entity.match.link_key
    if link_key in staged.columns:
        yield [normalise_link_key(value) for value in staged[link_key].tolist()]
    if entity.match.natural_keys:
        parts = [
            [normalise_natural_key(value) for value in staged[name].tolist()] if name in staged.columns
            else [None] * len(staged)
            for name in entity.match.natural_keys
        ]
        yield [None if any(part is None for part in key) else key for key in zip(*parts, strict=True)]
