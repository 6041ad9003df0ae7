"""Range-aware hand-off of DataFrames between windowed assets: one Parquet file per sync window.

Dagster's default filesystem IO manager refuses a multi-partition output in a single-run backfill, and
a backfill must extract a whole range at once (one paged read per range, not one per hour). This IO
manager splits an output over the run's windows by its `sync_window` column and writes one file per
window, including empty ones, so any later run over any sub-range reads exactly its windows.

`base_dir` is a local path or an fsspec URL (`file:///shared/windows`, `s3://bucket/windows`, ...; the
protocol's fsspec package must be installed): with Celery workers on several machines it must be a store
every worker reaches. A local file is written under a temporary name and renamed into place; an object
store's single upload is atomic by itself.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from upath import UPath

from outreach_pipeline.defs.partitions import WINDOW_COLUMN

_JSON_COLUMNS_KEY = b"outreach_pipeline.json_columns"


def window_store(setting: str | None, default: Path) -> str:
    """Where the window files live: the `window_store` setting (a path or an fsspec URL), else `default`."""
    return setting or str(default)


class WindowedParquetIOManager(dg.ConfigurableIOManager):
    """Stores `<base_dir>/<asset path>/<partition key>.parquet`; unpartitioned outputs as `all.parquet`."""

    base_dir: str

    def _path(self, asset_key: dg.AssetKey, partition_key: str | None) -> UPath:
        name = (partition_key or "all").replace(":", "")
        return UPath(self.base_dir).joinpath(*asset_key.path, f"{name}.parquet")

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame | None) -> None:
        if obj is None:
            return
        if not context.has_asset_partitions:
            _write(self._path(context.asset_key, None), obj)
            return
        partitions_def = context.asset_partitions_def
        keys = context.asset_partition_keys
        if WINDOW_COLUMN not in obj.columns:
            raise ValueError(f"{context.asset_key.to_user_string()}: a windowed output needs a {WINDOW_COLUMN!r} column")
        window_keys = pd.Series(
            [partitions_def.get_partition_key_for_timestamp(ts.timestamp()) for ts in obj[WINDOW_COLUMN]],
            index=obj.index,
            dtype=object,
        )
        stray = sorted(set(window_keys) - set(keys))
        if stray:
            raise ValueError(
                f"{context.asset_key.to_user_string()}: rows belong to windows {stray[:3]} outside this run's {keys[0]}..{keys[-1]}"
            )
        for key in keys:
            _write(self._path(context.asset_key, key), obj[window_keys == key])
        context.add_output_metadata({"windows_written": len(keys)})

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        asset_key = context.asset_key
        keys = context.asset_partition_keys if context.has_asset_partitions else [None]
        frames = []
        for key in keys:
            path = self._path(asset_key, key)
            if not path.exists():
                raise FileNotFoundError(f"{asset_key.to_user_string()} has no stored output for window {key}: materialize it first")
            frames.append(_read(path))
        if len(frames) == 1:
            return frames[0]
        return pd.concat(frames, ignore_index=True)


def _write(path: UPath, frame: pd.DataFrame) -> None:
    """Write atomically. Lists of scalars stay Arrow lists; anything more nested goes as JSON text.

    Arrow would store dicts as structs and hand them back with numpy arrays inside, so a value would not
    survive the round trip unchanged.
    """
    frame = frame.reset_index(drop=True)
    try:
        table = pa.Table.from_pandas(frame, preserve_index=False)
        json_columns = [f.name for f in table.schema if _is_nested(f.type)]
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        json_columns = [str(c) for c in frame.columns if not _arrow_can_store(frame[c])]
    if json_columns:
        frame = frame.assign(
            **{c: frame[c].map(lambda v: None if v is None else json.dumps(v, default=str)) for c in json_columns}
        )
        table = pa.Table.from_pandas(frame, preserve_index=False)
    metadata = dict(table.schema.metadata or {})
    metadata[_JSON_COLUMNS_KEY] = json.dumps(json_columns).encode()
    table = table.replace_schema_metadata(metadata)
    if not _is_local(path):
        with path.open("wb") as stream:
            pq.write_table(table, stream)
        return
    local = Path(path.path)
    local.parent.mkdir(parents=True, exist_ok=True)
    # A unique temporary name: two runs may write the same window at once (max_concurrent_runs > 1).
    handle, tmp_name = tempfile.mkstemp(dir=local.parent, prefix=f".{local.stem}.", suffix=".tmp")
    os.close(handle)
    try:
        pq.write_table(table, tmp_name)
        Path(tmp_name).replace(local)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def _is_nested(arrow_type: pa.DataType) -> bool:
    if pa.types.is_struct(arrow_type) or pa.types.is_map(arrow_type):
        return True
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type):
        return pa.types.is_nested(arrow_type.value_type)
    return False


def _arrow_can_store(column: pd.Series) -> bool:
    try:
        return not _is_nested(pa.array(column, from_pandas=True).type)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return False


def _is_local(path: UPath) -> bool:
    return path.protocol in ("", "file", "local")


def _read(path: UPath) -> pd.DataFrame:
    if _is_local(path):
        table = pq.read_table(path.path)
    else:
        with path.open("rb") as stream:
            table = pq.read_table(stream)
    json_columns = json.loads((table.schema.metadata or {}).get(_JSON_COLUMNS_KEY, b"[]"))
    frame = table.to_pandas()
    # Arrow hands list cells back as numpy arrays; the transforms expect the lists they were given.
    for arrow_field in table.schema:
        if pa.types.is_list(arrow_field.type) or pa.types.is_large_list(arrow_field.type):
            frame[arrow_field.name] = pd.Series(table.column(arrow_field.name).to_pylist(), dtype=object)
    for column in json_columns:
        frame[column] = frame[column].map(lambda v: json.loads(v) if isinstance(v, str) else None).astype(object)
    return frame
