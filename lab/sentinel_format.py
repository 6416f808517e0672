"""The sentinel page format of guests/progs/kj-sentinel.c: the reference for host-side checks.

A sentinel page is 4096 bytes, little-endian:

    offset  0  8 bytes  MAGIC b"KJLABSNT"
    offset  8  u64      run_token
    offset 16  u32      page_index   (0..N-1 within its region)
    offset 20  u32      region       (REGION_TMPFS 0: a tmpfs file; REGION_ANON 1: anonymous memory)
    offset 24  u32      body_seed
    offset 28  1017 u32 words, word j = (page_index*0x9E3779B1 + (j+7)*0x85EBCA77
                                         + body_seed + region*0x27D4EB2F) mod 2**32

Every page names its run, region and place, and its body depends on all three, so a page
found at the wrong place, from another run or half overwritten can be told apart.
"""

from __future__ import annotations

import struct

import numpy as np

MAGIC = b"KJLABSNT"
PAGE_SIZE = 4096
REGION_TMPFS = 0
REGION_ANON = 1
HEADER = struct.Struct("<8sQIII")  # magic, run_token, page_index, region, body_seed
HEADER_SIZE = HEADER.size  # 28
BODY_WORDS = (PAGE_SIZE - HEADER_SIZE) // 4  # 1017
K_INDEX = 0x9E3779B1
K_WORD = 0x85EBCA77
K_REGION = 0x27D4EB2F

_J7 = np.arange(7, 7 + BODY_WORDS, dtype=np.uint64)

assert HEADER_SIZE == 28 and HEADER_SIZE + 4 * BODY_WORDS == PAGE_SIZE


def _check(run_token: int, index: int, region: int, seed: int) -> None:
    if not 0 <= run_token < 1 << 64:
        raise ValueError(f"run_token {run_token}: not a u64")
    for name, value in (("index", index), ("region", region), ("seed", seed)):
        if not 0 <= value < 1 << 32:
            raise ValueError(f"{name} {value}: not a u32")


def body_words(index: int, region: int, seed: int) -> np.ndarray:
    """The 1017 body words of a page, as a little-endian uint32 array."""
    base = (index * K_INDEX + seed + region * K_REGION) & 0xFFFFFFFF
    # every product fits in 64 bits (< 2**32 * 2**11), so uint64 arithmetic then a mask is exact
    words = (_J7 * np.uint64(K_WORD) + np.uint64(base)) & np.uint64(0xFFFFFFFF)
    return words.astype("<u4")


def sentinel_page(run_token: int, index: int, region: int, seed: int) -> bytes:
    """The 4096 bytes kj-sentinel writes for page `index` of `region`."""
    _check(run_token, index, region, seed)
    page = HEADER.pack(MAGIC, run_token, index, region, seed) + body_words(index, region, seed).tobytes()
    assert len(page) == PAGE_SIZE
    return page


def parse_header(page: bytes) -> tuple[int, int, int, int] | None:
    """(run_token, page_index, region, body_seed) of a page that starts with MAGIC, else None."""
    if len(page) < HEADER_SIZE or page[:8] != MAGIC:
        return None
    _, token, index, region, seed = HEADER.unpack_from(page)
    return token, index, region, seed
