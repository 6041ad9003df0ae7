"""`key_sharing_chunks`: every row once, in staged order within a chunk, no key shared across chunks, no chunk
but the last shorter than the size."""

from collections import Counter

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from outreach_pipeline.engine.chunks import key_sharing_chunks
from outreach_pipeline.mapping.models import load_mapping_set

PROSPECTS = load_mapping_set().entity("prospects")
EMAIL = PROSPECTS.match.natural_keys[0]
LINK = PROSPECTS.match.link_key

rows = st.lists(st.tuples(st.sampled_from([None, "a@x.com", "A@x.com ", "b@x.com", "c@x.com", "d@x.com"]),
                          st.sampled_from([None, "1", "2", "2.0", "3"])), max_size=40)


@settings(max_examples=200, deadline=None)
@given(rows=rows, size=st.integers(min_value=1, max_value=12))
def test_chunks_keep_every_key_in_one_chunk(rows: list[tuple], size: int) -> None:
    staged = pd.DataFrame({"outreach_id": range(len(rows)), EMAIL: [r[0] for r in rows], LINK: [r[1] for r in rows]})
    chunks = list(key_sharing_chunks(staged, PROSPECTS, size))
    seen = [i for chunk in chunks for i in chunk["outreach_id"]]
    assert sorted(seen) == list(range(len(rows)))
    for chunk in chunks:
        assert list(chunk["outreach_id"]) == sorted(chunk["outreach_id"])
    chunk_of = {i: n for n, chunk in enumerate(chunks) for i in chunk["outreach_id"]}
    emails = {i: e.strip().lower() for i, (e, _) in enumerate(rows) if e}
    links = {i: str(int(float(k))) for i, (_, k) in enumerate(rows) if k}
    for keys in (emails, links):
        holders: dict[str, set[int]] = {}
        for i, key in keys.items():
            holders.setdefault(key, set()).add(chunk_of[i])
        assert all(len(found) == 1 for found in holders.values())
    # A chunk closes once it holds `size` rows (later rows of its groups may still join it), so no chunk but the
    # last is short and there are never more chunks than rows / size.
    sizes = Counter(chunk_of.values())
    assert all(sizes[n] >= size for n in range(len(chunks) - 1))
    assert len(chunks) <= max(1, -(-len(rows) // size))
