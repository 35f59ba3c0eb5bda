"""Language and action tokenizers (numpy only; shared by the torch and ONNX Runtime policies).

* :class:`ByteTokenizer` maps an instruction to its UTF-8 bytes (RFC 3629), offset past three
  special ids. It needs no vocabulary file and never fails on an unseen word.
* :class:`ActionTokenizer` discretizes each action dimension into bins (uniform between the
  action bounds, or from dataset quantiles); the bin index is the action token and a token
  decodes to its bin centre, so the round-trip error is at most half a bin width.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mmrobot.core.errors import ConfigError
from mmrobot.policies.config import ActionConfig, LanguageConfig
from mmrobot.policies.lexicon import Lexicon

__all__ = ["ByteTokenizer", "ActionTokenizer"]


class ByteTokenizer:
    """UTF-8 byte tokenizer: ``PAD = 0``, ``BOS = 1``, ``EOS = 2``, byte ``b`` -> ``3 + b``.

    Args:
        max_len: tokens per instruction, BOS and EOS included; longer text is truncated
            (at a byte boundary: the model sees bytes, not characters). Text from a user is
            checked against :attr:`max_text_bytes` first (``mmrobot run`` refuses longer text).
        lexicon: when given (and not empty), each instruction is rewritten into the
            training words first (:meth:`Lexicon.normalize`).
    """

    PAD, BOS, EOS = 0, 1, 2
    OFFSET = 3
    vocab_size = 256 + OFFSET

    def __init__(self, max_len: int = 64, lexicon: Lexicon | None = None) -> None:
        if max_len < 2:
            raise ConfigError(f"ByteTokenizer max_len must be >= 2 (BOS + EOS), got {max_len}")
        self.max_len = max_len
        self.lexicon = lexicon if lexicon else None

    @classmethod
    def from_config(cls, language: LanguageConfig) -> ByteTokenizer:
        """The tokenizer a policy config describes, with its lexicon if it has one."""
        lexicon = Lexicon(language.vocabulary, language.lexicon) if language.vocabulary else None
        return cls(language.max_len, lexicon)

    @property
    def max_text_bytes(self) -> int:
        """UTF-8 bytes of text an instruction keeps: ``max_len`` less BOS and EOS."""
        return self.max_len - 2

    def encode(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """Tokenize one instruction.

        Returns:
            ids: (max_len,) int64, BOS, bytes, EOS, then PAD.
            mask: (max_len,) bool, True on real tokens.
        """
        if not isinstance(text, str):
            raise TypeError(f"instruction must be a str, got {type(text).__name__}")
        if self.lexicon is not None:
            text = self.lexicon.normalize(text)
        body = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)[: self.max_text_bytes]
        ids = np.full(self.max_len, self.PAD, dtype=np.int64)
        n = body.size
        ids[0] = self.BOS
        ids[1 : n + 1] = body.astype(np.int64) + self.OFFSET
        ids[n + 1] = self.EOS
        mask = np.zeros(self.max_len, dtype=bool)
        mask[: n + 2] = True
        return ids, mask

    def encode_batch(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Tokenize a batch: ids (B, max_len) int64 and mask (B, max_len) bool."""
        pairs = [self.encode(t) for t in texts]
        if not pairs:
            return np.zeros((0, self.max_len), np.int64), np.zeros((0, self.max_len), bool)
        return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])

    def decode(self, ids: np.ndarray) -> str:
        """Text of (L,) ids; special ids are skipped, a cut multi-byte character is replaced."""
        ids = np.asarray(ids)
        body = ids[ids >= self.OFFSET] - self.OFFSET
        return bytes(body.astype(np.uint8).tolist()).decode("utf-8", errors="replace")


class ActionTokenizer:
    """Per-dimension binning of actions into tokens in ``[0, bins)``.

    Args:
        edges: (D, bins + 1) strictly increasing bin edges per dimension. Values outside
            ``[edges[:, 0], edges[:, -1]]`` are clipped to the first or last bin.
    """

    def __init__(self, edges: np.ndarray) -> None:
        edges = np.asarray(edges, dtype=np.float64)
        if edges.ndim != 2 or edges.shape[1] < 3:
            raise ConfigError(
                f"action bin edges must be (D, bins + 1) with bins >= 2, got shape {edges.shape}"
            )
        if not np.all(np.isfinite(edges)) or not np.all(np.diff(edges, axis=1) > 0):
            raise ConfigError(
                "action bin edges must be finite and strictly increasing along each dim"
            )
        self.edges = edges
        self.centers = 0.5 * (edges[:, 1:] + edges[:, :-1])

    @property
    def dim(self) -> int:
        return int(self.edges.shape[0])

    @property
    def bins(self) -> int:
        return int(self.edges.shape[1] - 1)

    @property
    def bin_widths(self) -> np.ndarray:
        """(D, bins) width of every bin."""
        return np.diff(self.edges, axis=1)

    @classmethod
    def from_config(cls, action: ActionConfig) -> ActionTokenizer:
        return cls(action.edges_array)

    @classmethod
    def uniform(
        cls, low: Sequence[float], high: Sequence[float], bins: int = 256
    ) -> ActionTokenizer:
        """Equal-width bins between ``low`` and ``high`` (each (D,))."""
        return cls(np.linspace(np.asarray(low, float), np.asarray(high, float), bins + 1, axis=1))

    @classmethod
    def from_quantiles(
        cls,
        actions: np.ndarray,
        low: Sequence[float],
        high: Sequence[float],
        bins: int = 256,
        uniform_mix: float = 0.02,
    ) -> ActionTokenizer:
        """Bins with (nearly) equal counts of ``actions`` (N, D), clipped to ``[low, high]``.

        Quantile edges are mixed with uniform edges (weight ``uniform_mix`` > 0) so they stay
        strictly increasing when the data has repeated values (a binary gripper command).
        """
        actions = np.asarray(actions, dtype=np.float64)
        low_a, high_a = np.asarray(low, float), np.asarray(high, float)
        if actions.ndim != 2 or actions.shape[1] != low_a.size or actions.shape[0] < 2:
            raise ConfigError(
                f"from_quantiles needs actions (N >= 2, D={low_a.size}), got {actions.shape}"
            )
        if not 0 < uniform_mix <= 1:
            raise ConfigError(f"uniform_mix must be in (0, 1], got {uniform_mix}")
        clipped = np.clip(actions, low_a, high_a)
        q = np.quantile(clipped, np.linspace(0.0, 1.0, bins + 1), axis=0).T  # (D, bins+1)
        q[:, 0], q[:, -1] = low_a, high_a
        uni = np.linspace(low_a, high_a, bins + 1, axis=1)
        return cls((1.0 - uniform_mix) * q + uniform_mix * uni)

    def encode(self, actions: np.ndarray) -> np.ndarray:
        """Actions (..., D) float -> tokens (..., D) int64 in ``[0, bins)``."""
        a = np.asarray(actions, dtype=np.float64)
        if a.shape[-1:] != (self.dim,):
            raise ValueError(f"actions must end in the action dim {self.dim}, got shape {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError("actions to tokenize contain NaN or inf")
        flat = a.reshape(-1, self.dim)
        out = np.empty(flat.shape, dtype=np.int64)
        for d in range(self.dim):
            # searchsorted on the inner edges gives the bin index directly, clipped at both ends.
            out[:, d] = np.searchsorted(self.edges[d, 1:-1], flat[:, d], side="right")
        return out.reshape(a.shape)

    def decode_logits(self, logits: np.ndarray, how: str | Sequence[str] = "argmax") -> np.ndarray:
        """Logits (..., D, bins) -> actions (..., D) float32.

        ``"argmax"``: the most probable bin's centre (:meth:`decode` of the argmax tokens).
        ``"median"``: the centre of the bin where the distribution's CDF reaches 0.5.
        ``"mean"``: the probability-weighted mean of the bin centres.
        ``how`` is one of these for every dimension, or a sequence of D of them.

        A bin distribution learned from an expert whose deltas sit on point masses (0 and the
        2 cm clip) puts mass on both for a fine final approach; its argmax is one of them,
        its median and mean lie between (docs/policy-trials.md, "Decoding the action bins").
        """
        lg = np.asarray(logits, dtype=np.float64)
        if lg.ndim < 2 or lg.shape[-2:] != (self.dim, self.bins):
            raise ValueError(
                f"logits must end in (action dim, bins) = ({self.dim}, {self.bins}), "
                f"got shape {lg.shape}"
            )
        if not isinstance(how, str):
            if len(how) != self.dim:
                raise ValueError(f"give one decoding per action dim ({self.dim}), got {list(how)}")
            out = np.empty(lg.shape[:-1], np.float32)
            for h in dict.fromkeys(how):  # each decoding once, on its own dimensions
                dims = [d for d, hd in enumerate(how) if hd == h]
                out[..., dims] = self._decode_dims(lg[..., dims, :], h, self.centers[dims])
            return out
        return self._decode_dims(lg, how, self.centers)

    @staticmethod
    def _decode_dims(lg: np.ndarray, how: str, centers: np.ndarray) -> np.ndarray:
        """Logits (..., k, bins) decoded one way at ``centers`` (k, bins)."""
        if how == "argmax":
            idx = lg.argmax(-1)
        else:
            p = np.exp(lg - lg.max(-1, keepdims=True))
            p /= p.sum(-1, keepdims=True)
            if how == "mean":
                return (p * centers).sum(-1).astype(np.float32)
            if how != "median":
                raise ValueError(
                    f"unknown action decoding {how!r}; use 'argmax', 'median' or 'mean'"
                )
            idx = np.minimum((np.cumsum(p, axis=-1) < 0.5).sum(-1), lg.shape[-1] - 1)
        table = np.broadcast_to(centers, (*idx.shape, centers.shape[-1]))
        return np.take_along_axis(table, idx[..., None], axis=-1)[..., 0].astype(np.float32)

    def decode(self, tokens: np.ndarray) -> np.ndarray:
        """Tokens (..., D) int -> actions (..., D) float32 at the bin centres."""
        t = np.asarray(tokens)
        if t.shape[-1:] != (self.dim,):
            raise ValueError(f"tokens must end in the action dim {self.dim}, got shape {t.shape}")
        if t.size and (t.min() < 0 or t.max() >= self.bins):
            raise ValueError(
                f"action tokens must be in [0, {self.bins}), got [{t.min()}, {t.max()}]"
            )
        return (
            np.take_along_axis(self.centers.T, t.reshape(-1, self.dim), axis=0)
            .reshape(t.shape)
            .astype(np.float32)
        )
