"""Key/value cache for incremental decoding.

One preallocated (B, max_len, H_kv, D) key and value tensor per layer. A layer
gets its own view (``cache.layer(i)``) and writes the keys of positions
``start_pos .. start_pos + T - 1``; attention then runs over the first
``start_pos + T`` cached positions. A decoder layer with cross-attention also
keeps the encoder output's keys and values in ``layer(i).cross_attn``:
projected on the first step, reused by every later one.
"""

from __future__ import annotations

import torch

from bigseq.errors import BigseqError


class StaticKVCache:
    """Keys/values of an input that does not grow while decoding (the encoder output)."""

    def __init__(self):
        self.keys_BSHD: torch.Tensor | None = None
        self.values_BSHD: torch.Tensor | None = None
        self.key_padding_mask_BS: torch.Tensor | None = None

    @property
    def filled(self) -> bool:
        return self.keys_BSHD is not None

    def store(self, k_BSHD: torch.Tensor, v_BSHD: torch.Tensor, key_padding_mask_BS: torch.Tensor | None) -> None:
        """Kept head-major in memory ((B, H, S, D) transposed) on CPU: there a decode step attends to them
        with two batched matrix products over views (bigseq.kernels.reference), 1.5x faster than SDPA."""
        if k_BSHD.device.type == "cpu":
            k_BSHD, v_BSHD = (t.transpose(1, 2).contiguous().transpose(1, 2) for t in (k_BSHD, v_BSHD))
        self.keys_BSHD, self.values_BSHD, self.key_padding_mask_BS = k_BSHD, v_BSHD, key_padding_mask_BS

    def reorder(self, index: torch.Tensor) -> None:
        """Keep rows ``index``, each tensor in its memory layout."""
        def rows(t: torch.Tensor) -> torch.Tensor:
            return torch.index_select(t, 0, index, out=torch.empty_like(t[:len(index)]))  # strides' order kept
        mask = self.key_padding_mask_BS
        self.keys_BSHD, self.values_BSHD = rows(self.keys_BSHD), rows(self.values_BSHD)
        self.key_padding_mask_BS = None if mask is None else mask.index_select(0, index)


def _source_rows(index: torch.Tensor, group: int) -> torch.Tensor:
    """The encoder rows to keep when each holds the keys of ``group`` consecutive query rows: groups
    move whole (beams stay within their sentence), so each new group's first row names its source."""
    if group == 1:
        return index
    if len(index) % group:
        raise ValueError(f"reorder of {len(index)} rows over encoder keys shared by groups of {group}: "
                         f"keep or drop whole groups")
    return torch.div(index.view(-1, group)[:, 0], group, rounding_mode="floor")


class LayerKVCache:
    def __init__(self, keys_BSHD: torch.Tensor, values_BSHD: torch.Tensor):
        self.keys_BSHD = keys_BSHD
        self.values_BSHD = values_BSHD
        self.length = 0
        """Positions written so far (the end of the last update)."""
        self.cross_attn = StaticKVCache()  # the encoder keys/values of a cross-attention layer
        self._spare: tuple[torch.Tensor, torch.Tensor] | None = None
        """Buffers with at least as many rows that a reorder writes into (then the two pairs swap roles)."""

    def reorder(self, index: torch.Tensor, *, cross_attn: bool = True) -> None:
        """Keep rows ``index`` (beams reordered, finished sentences dropped). Only the written
        positions move: a beam step costs O(length), not O(max_len), and one copy, gathered straight
        into the first rows of the spare buffers (twice as fast as gathering into a temporary and
        copying it back; positions past ``length`` are never read before written).
        cross_attn=False leaves the encoder keys alone, right when each row's replacement comes from
        the same source sentence (beams of one sentence share its encoder output). Encoder keys stored
        once per group of rows (CrossAttention with fewer encoder rows) keep the groups' sources."""
        rows, m, n = self.keys_BSHD.shape[0], len(index), self.length
        if self._spare is None or self._spare[0].shape[0] < m:
            self._spare = tuple(t.new_empty((m, *t.shape[1:])) for t in (self.keys_BSHD, self.values_BSHD))
        # the first m rows of the spare pair: dropping sentences needs no new buffers either
        spare_k, spare_v = (t[:m] for t in self._spare)
        torch.index_select(self.keys_BSHD[:, :n], 0, index, out=spare_k[:, :n])
        torch.index_select(self.values_BSHD[:, :n], 0, index, out=spare_v[:, :n])
        self._spare = (self.keys_BSHD, self.values_BSHD)
        self.keys_BSHD, self.values_BSHD = spare_k, spare_v
        if cross_attn and self.cross_attn.filled:
            self.cross_attn.reorder(_source_rows(index, rows // self.cross_attn.keys_BSHD.shape[0]))

    def update(self, start_pos: int, k_BTHD: torch.Tensor, v_BTHD: torch.Tensor):
        """Store k, v at start_pos; return all keys/values up to start_pos + T."""
        end = start_pos + k_BTHD.shape[1]
        if end > self.keys_BSHD.shape[1]:
            raise BigseqError(f"KV cache holds {self.keys_BSHD.shape[1]} positions, decoding reached {end}; "
                              f"make the cache longer (max_len) or generate fewer tokens")
        if k_BTHD.shape[0] != self.keys_BSHD.shape[0]:
            raise ValueError(f"batch of {k_BTHD.shape[0]} rows for a KV cache of {self.keys_BSHD.shape[0]}")
        self.keys_BSHD[:, start_pos:end] = k_BTHD
        self.values_BSHD[:, start_pos:end] = v_BTHD
        self.length = max(self.length, end)
        return self.keys_BSHD[:, :end], self.values_BSHD[:, :end]


class KVCache:
    def __init__(self, num_layers: int, batch_size: int, max_len: int, num_kv_heads: int, head_dim: int,
                 dtype: torch.dtype = torch.float32, device: torch.device | str | None = None):
        shape = (batch_size, max_len, num_kv_heads, head_dim)
        # uninitialized: a layer reads only the positions it has written (update returns them), and
        # zero-filling every layer's cache cost a beam search on CPU 2% of its time
        self.layers = [LayerKVCache(torch.empty(shape, dtype=dtype, device=device),
                                    torch.empty(shape, dtype=dtype, device=device)) for _ in range(num_layers)]
        self.max_len = max_len

    def reorder(self, index: torch.Tensor, *, cross_attn: bool = True) -> "KVCache":
        """Every layer's ``LayerKVCache.reorder``, in place."""
        for layer in self.layers:
            layer.reorder(index, cross_attn=cross_attn)
        return self

    def layer(self, index: int) -> LayerKVCache:
        return self.layers[index]

    def __len__(self) -> int:
        return len(self.layers)
