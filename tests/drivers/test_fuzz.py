"""Property tests of the pure decoders: garbage, corruption, truncation and drops.

For the checksummed protocols (Dynamixel, FT 300, LD06) the properties are: no exception, every
emitted frame is one of the frames that were sent (in order), and every frame whose bytes
arrived intact is emitted (the decoder resynchronizes by the next intact frame), whatever
the chunking. The RPLIDAR scan format has no checksum; its framing is tested for exact
output on clean streams in any chunking and for never raising on garbage (its false-accept
rate under dropped bytes is measured in test_lidar.py).
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmrobot.drivers.protocols import dynamixel as dxl
from mmrobot.drivers.protocols import ft300, ld06, rplidar

SETTINGS = settings(
    max_examples=120, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)


# -------------------------------------------------------------------- frame factories


def _dxl_frames(seed: int, n: int) -> tuple[list[bytes], list[tuple]]:
    rng = np.random.default_rng(seed)
    frames, keys = [], []
    for _ in range(n):
        dxl_id = int(rng.integers(0, 253))
        params = (
            bytes([0]) + rng.integers(0, 256, int(rng.integers(0, 20)), dtype=np.uint8).tobytes()
        )
        if rng.random() < 0.3:
            params += b"\xff\xff\xfd"  # exercise stuffing
        frames.append(dxl.build_packet(dxl_id, dxl.Inst.STATUS, params))
        keys.append((dxl_id, dxl.Inst.STATUS, params))
    return frames, keys


def _ft_frames(seed: int, n: int) -> tuple[list[bytes], list[tuple]]:
    rng = np.random.default_rng(seed)
    frames, keys = [], []
    for _ in range(n):
        w = np.round(rng.uniform(-300, 300, 6), 2)
        w[3:] = np.round(w[3:] / 100, 3)
        f = ft300.encode_frame(w)
        frames.append(f)
        keys.append(tuple(ft300.decode_frame(f).tolist()))
    return frames, keys


def _ld06_frames(seed: int, n: int) -> tuple[list[bytes], list[tuple]]:
    rng = np.random.default_rng(seed)
    frames, keys = [], []
    for k in range(n):
        start = float(rng.uniform(0, 360))
        d = rng.integers(0, 12000, 12).astype(float)
        f = ld06.encode_packet(3600, start, start + 8.8, d, rng.integers(0, 255, 12), k * 3)
        frames.append(f)
        keys.append((k * 3, tuple(d.tolist())))
    return frames, keys


def _key(kind: str, out: object) -> tuple:
    if kind == "dxl":
        return (out.id, out.instruction, out.params)  # type: ignore[attr-defined]
    if kind == "ft":
        return tuple(out.tolist())  # type: ignore[attr-defined]
    return (out.timestamp_ms, tuple(out.distance_mm.tolist()))  # type: ignore[attr-defined]


DECODERS = {
    "dxl": (dxl.PacketDecoder, _dxl_frames, 1100),  # a corrupted length may claim up to 1 KiB
    "ft": (ft300.FrameDecoder, _ft_frames, 0),
    "ld06": (ld06.LD06Decoder, _ld06_frames, 0),
}

mutation = st.tuples(
    st.sampled_from(["insert", "flip", "drop", "truncate"]),
    st.integers(0, 10_000),
    st.binary(min_size=1, max_size=12),
    st.integers(1, 255),
)


def _mutate(frames: list[bytes], muts: list[tuple]) -> tuple[bytes, list[bool]]:
    """Apply mutations frame-wise; returns the wire bytes and which frames stayed intact."""
    pieces: list[bytes] = [bytes(f) for f in frames]
    between: dict[int, bytes] = {}
    for op, where, junk, mask in muts:
        i = where % len(frames)
        f = bytearray(pieces[i])
        pos = where % len(f)
        if op == "insert":
            between[i] = between.get(i, b"") + junk  # garbage between frames i-1 and i
            continue
        if op == "flip":
            f[pos] ^= mask
        elif op == "drop":
            del f[pos : pos + 1 + (mask % 3)]
        elif op == "truncate":
            del f[max(1, pos) :]
        pieces[i] = bytes(f)
    intact = [p == f for p, f in zip(pieces, frames, strict=True)]
    wire = b"".join(between.get(i, b"") + p for i, p in enumerate(pieces))
    return wire, intact


def _feed(dec: object, wire: bytes, cuts: list[int]) -> list:
    out: list = []
    edges = sorted({0, len(wire), *(c % (len(wire) + 1) for c in cuts)})
    for a, b in zip(edges, edges[1:], strict=False):
        got = dec.feed(wire[a:b])  # type: ignore[attr-defined]
        out += got if isinstance(got, list) else [got] * bool(len(got))
    return out


def _check(kind: str, seed: int, muts: list, cuts: list[int]) -> None:
    cls, factory, tail = DECODERS[kind]
    frames, keys = factory(seed, 12)
    wire, intact = _mutate(frames, muts)
    dec = cls()
    got = [_key(kind, x) for x in _feed(dec, wire + bytes(tail), cuts)]
    # every emitted frame is a sent frame, in order (a subsequence of what was sent)
    it = iter(keys)
    assert all(any(g == k for k in it) for g in got), "a frame that was never sent was emitted"
    # every intact frame came through
    want = [k for k, ok in zip(keys, intact, strict=True) if ok]
    assert [g for g in got if g in want] == want
    if not all(intact[:-1]) and kind != "dxl":  # a damaged last frame may just be pending
        assert dec.checksum_errors + dec.resyncs + dec.pending > 0  # type: ignore[attr-defined]


@SETTINGS
@given(
    seed=st.integers(0, 2**16),
    muts=st.lists(mutation, max_size=5),
    cuts=st.lists(st.integers(0, 10_000), max_size=8),
)
def test_dynamixel_decoder_under_corruption(seed, muts, cuts):
    _check("dxl", seed, muts, cuts)


@SETTINGS
@given(
    seed=st.integers(0, 2**16),
    muts=st.lists(mutation, max_size=5),
    cuts=st.lists(st.integers(0, 10_000), max_size=8),
)
def test_ft300_decoder_under_corruption(seed, muts, cuts):
    _check("ft", seed, muts, cuts)


@SETTINGS
@given(
    seed=st.integers(0, 2**16),
    muts=st.lists(mutation, max_size=5),
    cuts=st.lists(st.integers(0, 10_000), max_size=8),
)
def test_ld06_decoder_under_corruption(seed, muts, cuts):
    _check("ld06", seed, muts, cuts)


@SETTINGS
@given(garbage=st.binary(max_size=2000), cuts=st.lists(st.integers(0, 3000), max_size=8))
def test_every_decoder_survives_pure_garbage(garbage, cuts):
    for cls in (dxl.PacketDecoder, ft300.FrameDecoder, ld06.LD06Decoder, rplidar.NodeDecoder):
        dec = cls()
        out = _feed(dec, garbage, cuts)
        if cls is not rplidar.NodeDecoder:
            assert out == []  # random bytes never pass a CRC here
        # every byte is accounted for: skipped, or still buffered, or inside a frame
        assert dec.skipped_bytes + dec.pending <= len(garbage)
        assert (
            dec.skipped_bytes + dec.pending + 5 * dec.frames
            >= len(garbage) - 5 * dec.checksum_errors - 20
        )


@SETTINGS
@given(cuts=st.lists(st.integers(0, 5000), max_size=20), offset=st.floats(0, 359))
def test_rplidar_clean_stream_decodes_exactly_in_any_chunking(cuts, offset):
    n = 900
    angles = (offset + np.arange(n) * 0.8) % 360.0
    dists = np.arange(n) * 4.0
    start = np.r_[False, np.diff(angles) < 0]
    wire = rplidar.encode_nodes(angles, dists, np.full(n, 30), start)
    dec = rplidar.NodeDecoder()
    edges = sorted({0, len(wire), *(c % (len(wire) + 1) for c in cuts)})
    a_out, d_out = [], []
    for a, b in zip(edges, edges[1:], strict=False):
        nodes = dec.feed(wire[a:b])
        a_out += nodes.angle_deg.tolist()
        d_out += nodes.distance_mm.tolist()
    q = np.rint(angles * 64) / 64
    assert a_out == q[: n - 1].tolist()  # the last node waits for its successor
    assert d_out == dists[: n - 1].tolist()
    assert dec.checksum_errors == 0


@SETTINGS
@given(data=st.binary(max_size=300), init=st.integers(0, 0xFFFF))
def test_word_table_crc_equals_the_bytewise_reference(data, init):
    from mmrobot.drivers.protocols.crc import crc16_dynamixel, crc16_dynamixel_bytewise

    assert crc16_dynamixel(data, init) == crc16_dynamixel_bytewise(data, init)
    assert crc16_dynamixel(memoryview(bytearray(data)), init) == crc16_dynamixel_bytewise(
        data, init
    )
