"""`distill generate --logprobs K`: the teacher's top-K logprobs of every completion token, stored beside each trace.

    record["logprobs"] = encode(sample.logprobs)   # partial dir: exact, compact (base64 of the arrays)
    row.update(row_arrays(record, k))              # artifact: the three columns below
    features(), manifest_record(cfg, teacher)

Columns (the trainer of ``distill train --method logit`` reads these names):

- ``completion_token_ids`` list<int32> (T): the generated token ids exactly as the engine sampled them. A
  template's generation prefill (``<think>\\n``) is the end of the prompt, not part of these, although
  the ``completion`` text shows it.
- ``top_logprob_ids`` list<list<int32>> (T x K): the K most likely ids at each position, most likely first.
- ``top_logprobs`` list<list<float16>> (T x K): their log-probabilities under the teacher's own
  distribution (before temperature / top-p), float16: relative error <= 2^-11 (0.005 at a logprob of -10),
  below a bf16 teacher's own. Measured (bundled model, 5,975 tokens): the three columns take 132 bytes per
  token at K = 20 (172 with float32: -23 %) and 30 at K = 3 (36): the ids are most of it. Arrow,
  ``save_to_disk`` / ``load_dataset``, parquet export and the numpy / torch formats (which give float32)
  round-trip float16 unchanged.

A sample without tokens (its prompt longer than the context) has empty lists. The manifest's
``logprobs`` key records K and the tokenizer (vocabulary) the ids belong to.
"""

from __future__ import annotations

import base64
from typing import Any

COLUMNS = ("completion_token_ids", "top_logprob_ids", "top_logprobs")
VALUE_DTYPE = "float16"
# Rows per arrow batch while the artifact is built: a 32k-token trace with K = 20 is ~4 MB here, and the
# datasets default of 1,000 rows per batch would hold gigabytes at once.
WRITER_BATCH_ROWS = 64


def _b64(array) -> str:
    return base64.b64encode(array.astype(array.dtype.newbyteorder("<")).tobytes()).decode("ascii")


def encode(token_logprobs) -> dict[str, Any]:
    """A partial-dir record's ``logprobs``: the arrays as base64 (float32 kept exact until the artifact is built;
    JSON numbers would take ~3x the space for a 32k-token trace's 640k values)."""
    import numpy as np

    top_ids = np.asarray(token_logprobs.top_ids, np.int32)
    return {"t": int(top_ids.shape[0]), "k": int(top_ids.shape[1]) if top_ids.ndim == 2 else 0,
            "ids": _b64(np.asarray(token_logprobs.token_ids, np.int32)), "top_ids": _b64(top_ids),
            "top": _b64(np.asarray(token_logprobs.top_logprobs, np.float32))}


def decode(record: dict[str, Any], k: int):
    """(ids (T,), top ids (T, K), top logprobs (T, K) float32) of one partial-dir record generated with ``k``."""
    import numpy as np

    from distill.errors import UserError

    where = f"sample {record.get('id')}/{record.get('sample_index')} in the partial dir"
    stored = record.get("logprobs")
    if stored is None:
        if record.get("completion_tokens"):
            raise UserError(f"{where} has no logprobs: delete the partial dir (HOME/data/NAME/.partial-*) and "
                            "generate again")
        return np.zeros(0, np.int32), np.zeros((0, k), np.int32), np.zeros((0, k), np.float32)
    if int(stored["k"]) != k:
        raise UserError(f"{where} holds top-{stored['k']} logprobs, not {k}: delete the partial dir "
                        "(HOME/data/NAME/.partial-*) and generate again")
    length = int(stored["t"])

    def array(key: str, dtype: str):
        return np.frombuffer(base64.b64decode(stored[key]), dtype=np.dtype(dtype).newbyteorder("<"))

    return (array("ids", "int32"), array("top_ids", "int32").reshape(length, k),
            array("top", "float32").reshape(length, k))


def row_arrays(record: dict[str, Any], k: int) -> dict[str, Any]:
    """The three cells of one row as one-row arrow arrays, built from the numpy arrays: ``ArrowWriter`` joins
    them as they are, where Python lists would cost ~30 bytes per value (640k values for a 32k-token trace)."""
    import numpy as np
    import pyarrow as pa

    ids, top_ids, top = decode(record, k)
    length = len(ids)

    def nested(values):  # (T, K) -> one row of list<list<...>>
        inner = pa.ListArray.from_arrays(pa.array(np.arange(0, length * k + 1, k, dtype=np.int32)), values)
        return pa.ListArray.from_arrays(pa.array([0, length], pa.int32()), inner)

    return {"completion_token_ids": pa.ListArray.from_arrays(pa.array([0, length], pa.int32()),
                                                             pa.array(ids.astype(np.int32), pa.int32())),
            "top_logprob_ids": nested(pa.array(top_ids.reshape(-1).astype(np.int32), pa.int32())),
            "top_logprobs": nested(pa.array(top.reshape(-1).astype(VALUE_DTYPE), pa.float16()))}


def features() -> dict[str, Any]:
    import datasets

    return {"completion_token_ids": datasets.List(datasets.Value("int32")),
            "top_logprob_ids": datasets.List(datasets.List(datasets.Value("int32"))),
            "top_logprobs": datasets.List(datasets.List(datasets.Value(VALUE_DTYPE)))}


def manifest_record(cfg, teacher) -> dict[str, Any]:
    """The traces manifest's ``logprobs``: what a trainer checks before reading the columns."""
    tokenizer = (cfg.tokenizer or teacher.model) if cfg.engine == "openai" else teacher.model
    return {"k": cfg.logprobs, "tokenizer": tokenizer, "columns": list(COLUMNS), "values": VALUE_DTYPE,
            "distribution": "the teacher's own (before temperature and top-p)",
            "positions": "completion_token_ids: generated tokens only; a template prefill ends the prompt"}
