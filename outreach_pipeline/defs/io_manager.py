"""Range-aware hand-off of DataFrames between windowed assets: one Parquet file per run range, indexed by window.

Dagster's default filesystem IO manager refuses a multi-partition output in a single-run backfill, and
a backfill must extract a whole range at once (one paged read per range, not one per hour). This IO
manager writes a run's output over its windows as ONE file, `<asset path>/<first>~<last>~<stamp>.parquet`,
with one row group per window that has rows (sorted by the `sync_window` column) and the window -> row group
index in the file's metadata; a window without rows has no row group and reads back empty. A 720-window quiet
backfill so writes one file per asset instead of 720 (the per-window files were about a fifth of its cost).

Rules that keep any later run over any sub-range reading exactly its windows:

* The file name says which windows it covers (`first`..`last`, keys without ":"; a run's windows are
  contiguous, a non-contiguous set is written as one file per window) and when it was written (`stamp`:
  nanoseconds since the epoch, then a random suffix). The stored output of a window is the one of the
  NEWEST file covering it: a later rerun of one window supersedes that window only, and two runs writing
  the same window at once end with the later stamp's data, as the last rename did with a file per window.
* Nothing is ever rewritten in place, so there is no manifest to update under a lock: each file appears
  whole (written under a temporary name and renamed; an object store's single upload is atomic by itself).
* A file whose whole range a single newer file covers is deleted after the newer one is in place (and so is a
  superseded file of the earlier one-file-per-window layout, which stays readable). A reader that listed
  the directory just before such a delete lists again and retries.

`base_dir` is a local path or an fsspec URL (`file:///shared/windows`, `s3://bucket/windows`, ...; the
protocol's fsspec package must be installed): with Celery workers on several machines it must be a store
every worker reaches (and their clocks in step, since the stamp orders writes).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from upath import UPath

from outreach_pipeline.defs.partitions import WINDOW_COLUMN

#: Input metadata (`dg.AssetIn(metadata={INPUT_COLUMNS: [...]})`): the columns a consumer reads, the rest left on disk.
INPUT_COLUMNS = "columns"
_JSON_COLUMNS_KEY = b"outreach_pipeline.json_columns"
_ROW_GROUPS_KEY = b"outreach_pipeline.window_row_groups"  # {window key: row group index}
_RANGE_SEPARATOR = "~"
_READ_ATTEMPTS = 3  # a listed file may be deleted as superseded before it is opened: list again


def window_store(setting: str | None, default: Path) -> str:
    """Where the window files live: the `window_store` setting (a path or an fsspec URL), else `default`."""
    return setting or str(default)


@dataclass(frozen=True)
class RangeFile:
    """One stored output of a run: the windows `first`..`last` (keys without ":"), written at `stamp`."""

    path: UPath
    first: str
    last: str
    stamp: str

    def covers(self, name: str) -> bool:
        return self.first <= name <= self.last

    @classmethod
    def parse(cls, path: UPath) -> RangeFile | None:
        parts = path.name.removesuffix(".parquet").split(_RANGE_SEPARATOR)
        if len(parts) != 3 or not path.name.endswith(".parquet"):
            return None
        return cls(path=path, first=parts[0], last=parts[1], stamp=parts[2])


def _file_name(key: str) -> str:
    return key.replace(":", "")


class WindowedParquetIOManager(dg.ConfigurableIOManager):
    """Stores `<base_dir>/<asset path>/<first>~<last>~<stamp>.parquet` per run (see the module docstring);
    unpartitioned outputs as `all.parquet`."""

    base_dir: str

    def _dir(self, asset_key: dg.AssetKey) -> UPath:
        return UPath(self.base_dir).joinpath(*asset_key.path)

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame | None) -> None:
        if obj is None:
            return
        if not context.has_asset_partitions:
            _write(self._dir(context.asset_key) / "all.parquet", obj)
            return
        partitions_def = context.asset_partitions_def
        keys = sorted(context.asset_partition_keys)
        if WINDOW_COLUMN not in obj.columns:
            raise ValueError(f"{context.asset_key.to_user_string()}: a windowed output needs a {WINDOW_COLUMN!r} column")
        # Each distinct window start once (a range has few), not once per row.
        starts = obj[WINDOW_COLUMN]
        key_of_start = {ts: partitions_def.get_partition_key_for_timestamp(ts.timestamp()) for ts in starts.unique()}
        window_keys = starts.map(key_of_start).astype(object)
        stray = sorted(set(window_keys) - set(keys))
        if stray:
            raise ValueError(
                f"{context.asset_key.to_user_string()}: rows belong to windows {stray[:3]} outside this run's {keys[0]}..{keys[-1]}"
            )
        contiguous = len(keys) == len(
            partitions_def.get_partition_keys_in_range(dg.PartitionKeyRange(keys[0], keys[-1]))
        )
        segments = [keys] if contiguous else [[key] for key in keys]
        directory = self._dir(context.asset_key)
        for segment in segments:
            rows = (window_keys == segment[0]).to_numpy() if not contiguous else slice(None)
            written = _write_range(directory, segment, obj.iloc[rows], window_keys.iloc[rows])
            _delete_superseded(directory, written, segment)
        context.add_output_metadata({"windows_written": len(keys), "window_files_written": len(segments)})

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        """The stored rows of the input's windows; only the columns its `INPUT_COLUMNS` metadata names, if any
        (a named column the stored output lacks is left out, as a frame without it would have it)."""
        asset_key = context.asset_key
        directory = self._dir(asset_key)
        columns = (context.definition_metadata or {}).get(INPUT_COLUMNS)
        if not context.has_asset_partitions:
            path = directory / "all.parquet"
            if not path.exists():
                raise FileNotFoundError(f"{asset_key.to_user_string()} has no stored output: materialize it first")
            return _read(path, columns)
        keys = sorted(context.asset_partition_keys)
        for attempt in range(_READ_ATTEMPTS):
            try:
                return _read_windows(directory, keys, asset_key, columns)
            except FileNotFoundError:
                if attempt == _READ_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")


def _list(directory: UPath) -> tuple[list[RangeFile], set[str]]:
    """The range files of an asset, newest first, and the names of its one-file-per-window files."""
    if not directory.exists():
        return [], set()
    ranges, singles = [], set()
    for path in directory.iterdir():
        if path.name.startswith("."):
            continue  # a temporary file being written
        parsed = RangeFile.parse(path)
        if parsed is not None:
            ranges.append(parsed)
        elif path.name.endswith(".parquet"):
            singles.add(path.name.removesuffix(".parquet"))
    ranges.sort(key=lambda f: f.stamp, reverse=True)
    return ranges, singles


def _read_windows(
    directory: UPath, keys: Sequence[str], asset_key: dg.AssetKey, columns: Sequence[str] | None = None
) -> pd.DataFrame:
    """The rows of `keys` (sorted), each window from the newest file covering it, in window order."""
    ranges, singles = _list(directory)
    # Consecutive windows served by the same file are read together: one read per file in the usual case.
    sources: list[tuple[RangeFile | UPath, list[str]]] = []
    for key in keys:
        name = _file_name(key)
        source: RangeFile | UPath | None = next((f for f in ranges if f.covers(name)), None)
        if source is None and name in singles:
            source = directory / f"{name}.parquet"
        if source is None:
            raise FileNotFoundError(f"{asset_key.to_user_string()} has no stored output for window {key}: materialize it first")
        if sources and sources[-1][0] == source:
            sources[-1][1].append(key)
        else:
            sources.append((source, [key]))
    frames = [_read_range(source.path, window, columns) if isinstance(source, RangeFile) else _read(source, columns)
              for source, window in sources]
    if len(frames) == 1:
        return frames[0]
    return pd.concat(frames, ignore_index=True)


def _write_range(directory: UPath, keys: Sequence[str], frame: pd.DataFrame, window_keys: pd.Series) -> RangeFile:
    """Write `frame` (rows of `keys` only) as one file, one row group per window with rows."""
    order = pd.Series(range(len(keys)), index=list(keys))
    position = window_keys.map(order).to_numpy()
    frame = frame.iloc[position.argsort(kind="stable")]
    counts = pd.Series(position).value_counts().sort_index()
    row_groups = {keys[int(i)]: group for group, i in enumerate(counts.index)}
    table = _to_table(frame, {_ROW_GROUPS_KEY: json.dumps(row_groups).encode()})
    stamp = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
    written = RangeFile(
        path=directory / f"{_file_name(keys[0])}{_RANGE_SEPARATOR}{_file_name(keys[-1])}{_RANGE_SEPARATOR}{stamp}.parquet",
        first=_file_name(keys[0]), last=_file_name(keys[-1]), stamp=stamp,
    )

    def write(where: str | object) -> None:
        with pq.ParquetWriter(where, table.schema) as writer:
            offset = 0
            for count in counts:
                writer.write_table(table.slice(offset, int(count)), row_group_size=int(count))
                offset += int(count)

    _atomically(written.path, write)
    return written


def _read_range(path: UPath, keys: Sequence[str], columns: Sequence[str] | None = None) -> pd.DataFrame:
    """The row groups of `keys` from a range file (none: an empty frame with the file's columns)."""
    with _opened(path) as source:
        parquet = pq.ParquetFile(source)
        schema = parquet.schema_arrow
        row_groups = json.loads((schema.metadata or {}).get(_ROW_GROUPS_KEY, b"{}"))
        wanted = [row_groups[key] for key in keys if key in row_groups]
        present = _present(schema, columns)
        table = parquet.read_row_groups(wanted, columns=present) if wanted else _empty(schema, present)
    return _to_frame(table)


def _present(schema: pa.Schema, columns: Sequence[str] | None) -> list[str] | None:
    """The `columns` (all when None) that a stored output has."""
    return None if columns is None else [name for name in columns if name in schema.names]


def _empty(schema: pa.Schema, columns: list[str] | None) -> pa.Table:
    table = schema.empty_table()
    return table if columns is None else table.select(columns)


def _delete_superseded(directory: UPath, written: RangeFile, keys: Sequence[str]) -> None:
    """Delete what `written` supersedes whole: older range files inside its range, and per-window files of its
    windows. Best effort: another run may be deleting the same file."""
    ranges, singles = _list(directory)
    doomed = [f.path for f in ranges
              if f.stamp < written.stamp and written.first <= f.first and f.last <= written.last]
    doomed += [directory / f"{name}.parquet" for name in map(_file_name, keys) if name in singles]
    for path in doomed:
        with suppress(FileNotFoundError):
            path.unlink()


def _to_table(frame: pd.DataFrame, extra_metadata: dict[bytes, bytes] | None = None) -> pa.Table:
    """The frame as an Arrow table. Lists of scalars stay Arrow lists; anything more nested goes as JSON text.

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
    metadata.update(extra_metadata or {})
    return table.replace_schema_metadata(metadata)


def _write(path: UPath, frame: pd.DataFrame) -> None:
    """Write one frame as one file, atomically."""
    table = _to_table(frame)
    _atomically(path, lambda where: pq.write_table(table, where))


def _atomically(path: UPath, write: Callable[[Any], None]) -> None:
    """Call `write` with where to write `path`'s content so that the file appears whole or not at all."""
    if not _is_local(path):
        with path.open("wb") as stream:
            write(stream)
        return
    local = Path(path.path)
    local.parent.mkdir(parents=True, exist_ok=True)
    # A unique temporary name: two runs may write the same windows at once (max_concurrent_runs > 1).
    handle, tmp_name = tempfile.mkstemp(dir=local.parent, prefix=f".{local.stem}.", suffix=".tmp")
    os.close(handle)
    try:
        write(tmp_name)
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


@contextmanager
def _opened(path: UPath) -> Iterator[Any]:
    """What pyarrow reads `path` from: the local file name, or an open stream of a remote object."""
    if _is_local(path):
        yield path.path
        return
    with path.open("rb") as stream:
        yield stream


def _read(path: UPath, columns: Sequence[str] | None = None) -> pd.DataFrame:
    with _opened(path) as source:
        parquet = pq.ParquetFile(source)
        table = parquet.read(columns=_present(parquet.schema_arrow, columns))
    return _to_frame(table)


def _to_frame(table: pa.Table) -> pd.DataFrame:
    """The DataFrame a table was written from (`_to_table`): list cells as lists, JSON columns decoded."""
    json_columns = json.loads((table.schema.metadata or {}).get(_JSON_COLUMNS_KEY, b"[]"))
    frame = table.to_pandas()
    # Arrow hands list cells back as numpy arrays; the transforms expect the lists they were given.
    for arrow_field in table.schema:
        if pa.types.is_list(arrow_field.type) or pa.types.is_large_list(arrow_field.type):
            frame[arrow_field.name] = pd.Series(table.column(arrow_field.name).to_pylist(), dtype=object)
    for column in (c for c in json_columns if c in frame.columns):
        frame[column] = frame[column].map(lambda v: json.loads(v) if isinstance(v, str) else None).astype(object)
    return frame
