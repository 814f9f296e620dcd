"""The bounds request fields are checked against, declared in the OpenAPI document.

Ids and offsets fit the database's integers (an id outside them cannot name a row: 404, never a
database error); lists and strings have a length; numbers are finite and bounded so that no unit
conversion overflows (``memory_mb`` × 10^6 stays a finite number of bytes).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query
from pydantic import Field

__all__ = [
    "MAX_ID",
    "MAX_OFFSET",
    "MAX_SEED",
    "MAX_CANDIDATES",
    "MAX_NAME_CHARS",
    "MAX_CHECKPOINT_CHARS",
    "MAX_MEMORY_MB",
    "MAX_LATENCY_MS",
    "MAX_BOPS_G",
    "IdPath",
    "IdQuery",
    "Limit",
    "Offset",
    "Name",
    "CandidateId",
    "Candidates",
    "SiteOptions",
]

MAX_ID = 2**31 - 1  # ids are PostgreSQL `integer` (32-bit) columns
MAX_OFFSET = 2**31 - 1  # far past any table; PostgreSQL's OFFSET is a 64-bit integer
MAX_SEED = 2**31 - 1  # seeds are stored as 32-bit integers too (profiling.models.MAX_SEED)
MAX_CANDIDATES = 81  # every distinct (w, a) pair: w and a in 1..8 or 16
MAX_NAME_CHARS = 64  # model, method, solver, hardware and policy names
MAX_CHECKPOINT_CHARS = 4096  # Linux' PATH_MAX (profiling.models.check_checkpoint_path)
MAX_MEMORY_MB = 1e9  # a petabyte
MAX_LATENCY_MS = 1e9  # eleven days
MAX_BOPS_G = 1e12  # 10^21 bit operations

IdPath = Annotated[int, Path(ge=1, le=MAX_ID, description="a row id (1 to 2^31 - 1)")]
IdQuery = Annotated[int | None, Query(ge=1, le=MAX_ID)]
Limit = Annotated[int, Query(ge=1, le=500, description="page size")]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="rows to skip")]
Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME_CHARS)]
CandidateId = Annotated[str, Field(pattern=r"^w[0-9]{1,2}a[0-9]{1,2}$", examples=["w4a8"])]
Candidates = Annotated[
    list[CandidateId], Field(min_length=1, max_length=MAX_CANDIDATES, examples=[["w8a8", "w4a8"]])
]

SiteOptions = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=8)]],
    Field(min_length=1, max_length=8, examples=[["a8", "a4", "a8log"]]),
]  # attention site option ids, checked by the profiler (profiling.attention.check_site_option)
