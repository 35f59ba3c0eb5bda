"""Corrupted MCAP chunks: reported with topic and time range, skipped, never replayed.

Every file is a real MCAP written by the Recorder; one chunk's compressed data then gets
bytes flipped, as a bad disk sector or a bad copy would do.
"""

from __future__ import annotations

import numpy as np
import pytest
from mcap.reader import make_reader

from mmrobot import cli
from mmrobot.core import StreamSpec
from mmrobot.drivers.recording import (
    Recorder,
    inspect_recording,
    read_recording,
    recover_recording,
)
from mmrobot.drivers.replay import Replay
from mmrobot.sync import StreamBuffer

T0 = 7_000_000_000
JOINTS = StreamSpec("joints", "joints", (7,), "float32", 1000.0)
FT = StreamSpec("ft", "force", (6,), "float32", 500.0)
N_JOINTS, N_FT = 2000, 1000


def _record(path, compression):
    """joints every 1 ms (value i), ft every 2 ms offset by 0.5 ms (value i); small chunks."""
    bufs = [StreamBuffer(JOINTS, capacity=4096), StreamBuffer(FT, capacity=4096)]
    ref = {
        "joints": T0 + 1_000_000 * np.arange(N_JOINTS),
        "ft": T0 + 500_000 + 2_000_000 * np.arange(N_FT),
    }
    with Recorder(path, bufs, compression=compression, chunk_size=8 * 1024) as rec:
        for b in bufs:
            for i, t in enumerate(ref[b.spec.name]):
                b.push(int(t), np.full(b.spec.shape, i, dtype=np.float32))
        rec.poll()
    return ref


def _chunk_indexes(path):
    with open(path, "rb") as f:
        return sorted(
            make_reader(f).get_summary().chunk_indexes, key=lambda c: c.chunk_start_offset
        )


def _flip(path, ci, n=4):
    """Flip n bytes in the middle of the chunk's compressed records."""
    data = bytearray(path.read_bytes())
    pos = ci.chunk_start_offset + 9 + 8 + 8 + 8 + 4  # opcode, length, times, size, crc
    pos += 4 + len(ci.compression) + 8  # compression string and records length
    mid = pos + ci.compressed_size // 2
    for k in range(n):
        data[mid + k] ^= 0xFF
    path.write_bytes(bytes(data))


def _outside(times, ci):
    return times[(times < ci.message_start_time) | (times > ci.message_end_time)]


@pytest.fixture(params=["zstd", "lz4", "none"])
def damaged(tmp_path, request):
    """A finished file with its third chunk corrupted: (path, reference stamps, chunk index)."""
    path = tmp_path / "log.mcap"
    ref = _record(path, request.param)
    chunks = _chunk_indexes(path)
    assert len(chunks) > 5
    bad = chunks[2]
    _flip(path, bad)
    return path, ref, bad


def _check_report(chunk, bad, ref):
    assert chunk.offset == bad.chunk_start_offset
    assert (chunk.start_ns, chunk.end_ns) == (bad.message_start_time, bad.message_end_time)
    assert chunk.topics == ("/ft", "/joints")
    lost = {n: len(t) - len(_outside(t, bad)) for n, t in ref.items()}
    assert dict(chunk.messages) == {"/ft": lost["ft"], "/joints": lost["joints"]}
    text = chunk.describe()
    assert "/joints" in text and f"{bad.message_start_time} .. {bad.message_end_time} ns" in text


def test_read_skips_the_corrupted_chunk_and_reports_it(damaged, caplog):
    path, ref, bad = damaged
    r = read_recording(path)
    assert r.info.complete
    [chunk] = r.info.corrupt_chunks
    _check_report(chunk, bad, ref)
    assert "corrupted chunk at byte" in caplog.text and "/ft" in caplog.text
    for name, times in ref.items():
        kept = _outside(times, bad)
        np.testing.assert_array_equal(r.times[name], kept)  # nothing from the bad chunk
        np.testing.assert_array_equal(
            r.values[name][:, 0], (kept - times[0]) // (times[1] - times[0])
        )
        assert r.info.messages[f"/{name}"] == len(kept)


def test_replay_never_pushes_the_corrupted_chunk(damaged):
    path, ref, bad = damaged
    replay = Replay.from_file(path, mode="manual", capacity=4096)
    with replay:
        replay.advance_to(int(ref["joints"][-1]))
        assert len(replay.corrupt_chunks) == 1
        _check_report(replay.corrupt_chunks[0], bad, ref)
        assert replay.stats.checksum_errors == 1
        for name, times in ref.items():
            got, _, _, _ = replay.buffers[name].read_since(0)
            np.testing.assert_array_equal(got, _outside(times, bad))


def test_info_checks_every_chunk(damaged, capsys):
    path, ref, bad = damaged
    quick = inspect_recording(path)  # summary only: cannot know
    assert not quick.chunks_checked and not quick.corrupt_chunks
    info = inspect_recording(path, check_chunks=True)
    assert info.chunks_checked
    [chunk] = info.corrupt_chunks
    _check_report(chunk, bad, ref)
    assert info.messages["/joints"] == len(_outside(ref["joints"], bad))
    assert cli.main(["replay", str(path), "--info"]) == 0
    out = capsys.readouterr().out
    assert "1 corrupted chunk(s) skipped" in out
    assert f"corrupted chunk at byte {bad.chunk_start_offset} (/ft, /joints;" in out
    assert f"{bad.message_start_time} .. {bad.message_end_time} ns" in out


def test_recover_leaves_the_chunk_out_and_says_so(damaged, tmp_path, capsys):
    path, ref, bad = damaged
    out = tmp_path / "fixed.mcap"
    info = recover_recording(path, out)
    [chunk] = info.corrupt_chunks
    _check_report(chunk, bad, ref)
    again = read_recording(out)
    assert again.info.complete and not again.info.corrupt_chunks
    for name, times in ref.items():
        np.testing.assert_array_equal(again.times[name], _outside(times, bad))
    out2 = tmp_path / "fixed2.mcap"
    assert cli.main(["replay", str(path), "--recover", str(out2)]) == 0
    printed = capsys.readouterr().out
    lost = chunk.message_count
    assert f"left out 1 corrupted chunk(s) ({lost} messages)" in printed
    assert f"corrupted chunk at byte {bad.chunk_start_offset}" in printed


def test_replay_cli_reports_the_skipped_chunk(damaged, capsys):
    path, ref, bad = damaged
    assert cli.main(["replay", str(path), "--fast"]) == 0
    out = capsys.readouterr().out
    kept = sum(len(_outside(t, bad)) for t in ref.values())
    assert f"replayed {kept} samples" in out
    assert f"corrupted chunk at byte {bad.chunk_start_offset} (/ft, /joints;" in out


def test_cut_off_file_with_a_corrupted_chunk(tmp_path):
    """No summary: the linear read checks each chunk and skips the bad one."""
    path = tmp_path / "log.mcap"
    ref = _record(path, "zstd")
    chunks = _chunk_indexes(path)
    bad, last = chunks[1], chunks[-1]
    _flip(path, bad)
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(path.read_bytes()[: last.chunk_start_offset + 10])
    r = read_recording(cut)
    assert not r.info.complete
    [chunk] = r.info.corrupt_chunks
    assert chunk.offset == bad.chunk_start_offset and chunk.topics == ("/ft", "/joints")
    assert "corrupted chunk" in r.info.describe()
    for name, times in ref.items():
        kept = _outside(times[times < last.message_start_time], bad)
        np.testing.assert_array_equal(r.times[name], kept)


def test_corrupted_first_chunk_loses_only_its_own_messages(tmp_path):
    """The first chunk holds the Schema and Channel records; the summary still has them."""
    path = tmp_path / "log.mcap"
    ref = _record(path, "zstd")
    bad = _chunk_indexes(path)[0]
    _flip(path, bad)
    r = read_recording(path)
    assert [c.offset for c in r.info.corrupt_chunks] == [bad.chunk_start_offset]
    out = tmp_path / "fixed.mcap"
    info = recover_recording(path, out)
    assert len(info.corrupt_chunks) == 1 and info.orphan_messages == 0
    again = read_recording(out)
    for name, times in ref.items():
        np.testing.assert_array_equal(r.times[name], _outside(times, bad))
        np.testing.assert_array_equal(again.times[name], _outside(times, bad))


def test_a_chunk_that_decompresses_but_fails_its_crc_is_skipped(tmp_path):
    """Damage a decompressor does not notice is caught by the chunk's CRC32."""
    path = tmp_path / "log.mcap"
    ref = _record(path, "zstd")
    bad = _chunk_indexes(path)[3]
    data = bytearray(path.read_bytes())
    data[bad.chunk_start_offset + 9 + 8 + 8 + 8] ^= 0x01  # the stored uncompressed_crc
    path.write_bytes(bytes(data))
    r = read_recording(path)
    [chunk] = r.info.corrupt_chunks
    _check_report(chunk, bad, ref)
    assert chunk.reason.startswith("CRC32 of the uncompressed records is")
    for name, times in ref.items():
        np.testing.assert_array_equal(r.times[name], _outside(times, bad))


def test_cut_off_file_whose_first_chunk_is_corrupted_says_what_it_lost(tmp_path):
    """No summary and the Channel records lost with the first chunk: later messages are
    counted as lost, not guessed at."""
    path = tmp_path / "log.mcap"
    _record(path, "zstd")
    chunks = _chunk_indexes(path)
    _flip(path, chunks[0])
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(path.read_bytes()[: chunks[-1].chunk_start_offset + 10])
    info = inspect_recording(cut)
    assert not info.complete and info.message_count == 0
    assert len(info.corrupt_chunks) == 1 and info.orphan_messages > 0
    text = info.describe()
    assert (
        "corrupted chunk at byte" in text
        and "their channel was defined in a corrupted chunk" in text
    )
