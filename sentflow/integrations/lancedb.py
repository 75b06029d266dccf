"""LanceDB: calibrated vectors (and, optionally, sentflow's compact codes) in a LanceDB table, indexed and searched
by LanceDB, for a corpus that outgrows one machine's index.

`write_table` streams the final vectors (calibrated and, for cosine, L2-normalised: what `CompactIndex` indexes)
into a table of an embedded LanceDB directory, in record batches, with an `id` column and, given a `CompactIndex`
built on the same rows, a `codes` column of its stage-1 codes (fixed-size binary). The same table can live on
object storage (`lancedb.connect("s3://...")`) or be indexed by LanceDB's distributed indexing; nothing here
depends on where. `build_index` trains LanceDB's IVF index on the vector column (`IVF_RQ`, its RaBitQ codes, by
default; dot-product distance), and `search_table` queries it: probes and a refine factor as LanceDB names them.

Needs the `lancedb` extra: `pip install 'sentflow[lancedb]'`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from sentflow.calibration.stats import as_matrix
from sentflow.errors import SentflowError
from sentflow.extras import require

require("lancedb", "lancedb")

import lancedb  # noqa: E402  (after the extra check)
import pyarrow as pa  # noqa: E402

ID, VECTOR, CODES = "id", "vector", "codes"
BATCH_ROWS = 65_536
INDEX_TYPES = ("IVF_RQ", "IVF_FLAT", "IVF_SQ", "IVF_PQ")


def write_table(
    directory: str | os.PathLike,
    name: str,
    vectors: np.ndarray | Iterable[np.ndarray],
    ids: Sequence[str] | None = None,
    codes=None,
    overwrite: bool = False,
):
    """Write vectors (an (n, d) array, or chunks of rows) to the table `name` of the LanceDB directory.

    Args:
        directory: The LanceDB database (a local directory here; LanceDB also takes object-storage URIs).
        name: The table.
        vectors: Final float vectors, as one array or an iterable of row chunks (streamed in record batches).
        ids: A name per row (default: row numbers).
        codes: A `CompactIndex` built on the same rows: its stage-1 codes are stored in a `codes` column.
        overwrite: Replace an existing table of that name (otherwise an existing table is refused).

    Returns:
        The LanceDB table.
    """
    database = lancedb.connect(str(directory))
    if not overwrite and name in database.list_tables().tables:
        raise SentflowError(f"{directory}: already has a table {name!r}; pass overwrite=True to replace it")
    if isinstance(vectors, np.ndarray):
        vectors = [as_matrix(vectors, "vectors")]
        for label, values in (("ids", ids), ("codes", codes)):
            if values is not None and len(values) != len(vectors[0]):
                raise SentflowError(f"{len(values):,} {label} for {len(vectors[0]):,} vectors")
    chunks = vectors
    batches = _batches(chunks, ids, _row_codes(codes))
    first = next(batches, None)
    if first is None:
        raise SentflowError("no vectors to write")
    return database.create_table(
        name, data=_chain(first, batches), schema=first.schema, mode="overwrite" if overwrite else "create"
    )


def build_index(table, index_type: str = "IVF_RQ", partitions: int | None = None, bits: int = 1) -> None:
    """Train LanceDB's IVF index on the vector column, dot-product distance (for L2-normalised vectors: cosine).

    Args:
        table: A table from `write_table`.
        index_type: IVF_RQ (RaBitQ codes of `bits` bits a dimension), IVF_FLAT, IVF_SQ or IVF_PQ.
        partitions: IVF lists (default: LanceDB's choice from the table's size).
        bits: IVF_RQ only: bits a dimension.
    """
    from lancedb import index as configs

    if index_type not in INDEX_TYPES:
        raise SentflowError(f"unknown LanceDB index {index_type!r}; use one of {', '.join(INDEX_TYPES)}")
    options: dict[str, Any] = {"distance_type": "dot", "num_partitions": partitions}
    config: Any
    if index_type == "IVF_RQ":
        config = configs.IvfRq(num_bits=bits, **options)
    elif index_type == "IVF_FLAT":
        config = configs.IvfFlat(**options)
    elif index_type == "IVF_SQ":
        config = configs.IvfSq(**options)
    else:
        config = configs.IvfPq(**options)
    table.create_index(VECTOR, config=config)


def search_table(
    table, queries, k: int = 10, probes: int | None = None, refine: int | None = None
) -> tuple[np.ndarray, list[list[str]]]:
    """The k best rows per query through LanceDB (its index, when built): (scores float32 (nq, k) as inner
    products, ids), best first; rows missing (fewer than k found) score -inf and have no id.

    Args:
        table: A table from `write_table`.
        queries: Query vectors (nq, d), made like the table's vectors.
        k: Results per query.
        probes: IVF lists searched per query (LanceDB's `nprobes`; default: LanceDB's).
        refine: LanceDB's refine factor: fetch refine x k candidates and rescore them with the stored floats.
    """
    queries = as_matrix(queries, "queries").astype(np.float32)
    scores = np.full((len(queries), k), -np.inf, np.float32)
    found: list[list[str]] = []
    for row, query in enumerate(queries):
        request = table.search(query, vector_column_name=VECTOR).distance_type("dot").limit(k).select([ID, "_distance"])
        if probes is not None:
            request = request.nprobes(probes)
        if refine is not None:
            request = request.refine_factor(refine)
        result = request.to_arrow()
        distances = result["_distance"].to_numpy()
        scores[row, : len(distances)] = 1.0 - distances  # LanceDB's dot distance is 1 - <q, x>
        found.append([str(v) for v in result[ID].to_pylist()])
    return scores, found


def _row_codes(index) -> np.ndarray | None:
    """A CompactIndex's stage-1 codes in row order (an inverted file holds them in slot order)."""
    if index is None:
        return None
    codes = np.asarray(index.codes)
    if index.lists is not None:
        rows = np.empty_like(index.lists.order)
        rows[index.lists.order] = np.arange(len(rows))
        codes = codes[rows]
    return codes


def _batches(
    chunks: Iterable[np.ndarray], ids: Sequence[str] | None, codes: np.ndarray | None
) -> Iterator[pa.RecordBatch]:
    """Record batches of (id, vector[, codes]) from row chunks, at most BATCH_ROWS rows each."""
    start, width = 0, None
    for chunk in chunks:
        chunk = as_matrix(chunk, "vectors").astype(np.float32)
        width = width or chunk.shape[1]
        if chunk.shape[1] != width:
            raise SentflowError(f"vectors from row {start:,} have {chunk.shape[1]} dimensions, earlier ones {width}")
        for low in range(0, len(chunk), BATCH_ROWS):
            part = chunk[low : low + BATCH_ROWS]
            yield _batch(part, start + low, ids, codes)
        start += len(chunk)
    for name, values in (("ids", ids), ("codes", codes)):
        if values is not None and len(values) != start:
            raise SentflowError(f"{len(values):,} {name} for {start:,} vectors")


def _batch(part: np.ndarray, start: int, ids: Sequence[str] | None, codes: np.ndarray | None) -> pa.RecordBatch:
    stop = start + len(part)
    if (ids is not None and len(ids) < stop) or (codes is not None and len(codes) < stop):
        raise SentflowError(f"more vectors than ids or codes: row {stop - 1:,} has none")
    names = [str(i) for i in ids[start:stop]] if ids is not None else [str(i) for i in range(start, stop)]
    columns = {
        ID: pa.array(names, pa.string()),
        VECTOR: pa.FixedSizeListArray.from_arrays(pa.array(part.ravel(), pa.float32()), part.shape[1]),
    }
    if codes is not None:
        data = pa.py_buffer(np.ascontiguousarray(codes[start:stop]).tobytes())
        columns[CODES] = pa.FixedSizeBinaryArray.from_buffers(pa.binary(codes.shape[1]), len(part), [None, data])
    return pa.RecordBatch.from_pydict(columns)


def _chain(first: pa.RecordBatch, rest: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    yield first
    yield from rest
