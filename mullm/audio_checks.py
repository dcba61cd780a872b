"""Structural checks on audio container bytes: truncation that decoders forgive.

Decoders read what is there: libsndfile sizes a cut WAV or OGG by the bytes present, and
FFmpeg decodes a cut MP3 up to its last whole frame without a word. These checks read the
few bytes that declare a file's extent (a WAV ``data`` chunk size, the last OGG page, an
MP3's first and last frame headers) so that a damaged file is refused, not returned short.

Every check raises ``AudioError`` naming the file and what is missing; each is a no-op for
files of other formats. Layouts follow the RIFF/WAVE spec, RFC 3533 (Ogg) and ISO/IEC
11172-3 / 13818-3 (MPEG audio frame headers).
"""

from __future__ import annotations

from pathlib import Path

from mullm.errors import AudioError

# MPEG audio bit rates in kbit/s by (MPEG-1?, layer) and the header's 4-bit index
# (index 0 is "free format", 15 is invalid).
_BITRATES: dict[tuple[bool, int], tuple[int, ...]] = {
    (True, 1): (0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (False, 3): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
# Sample rates by the header's 2-bit version field: 3 = MPEG-1, 2 = MPEG-2, 0 = MPEG-2.5.
_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


def check_structure(path: Path) -> None:
    """Refuse a WAV whose data chunk is cut short or an OGG without its last page.

    Raises:
        AudioError: ``PATH: truncated WAV: ...`` or ``PATH: truncated OGG: ...``.
    """
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(4096)
        if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
            _check_wav(path, head, size)
        elif head[:4] == b"OggS":
            tail_len = min(size, 1 << 16)
            f.seek(size - tail_len)
            _check_ogg(path, f.read(tail_len))


def _check_wav(path: Path, head: bytes, size: int) -> None:
    pos = 12
    while pos + 8 <= len(head):
        cid, n = head[pos:pos + 4], int.from_bytes(head[pos + 4:pos + 8], "little")
        if cid == b"data":
            # 0 and 0xFFFFFFFF mark streamed files whose size was never filled in.
            if n not in (0, 0xFFFFFFFF) and pos + 8 + n > size + 1:
                raise AudioError(f"{path}: truncated WAV: data chunk declares {n} bytes, the "
                                 f"file holds {size - pos - 8}")
            return
        pos += 8 + n + (n & 1)


def _check_ogg(path: Path, tail: bytes) -> None:
    at = tail.rfind(b"OggS")
    if at < 0 or at + 27 > len(tail):
        raise AudioError(f"{path}: truncated OGG: no complete page at the end of the file")
    header_type, nseg = tail[at + 5], tail[at + 26]
    table = tail[at + 27:at + 27 + nseg]
    end = at + 27 + nseg + sum(table)
    if len(table) < nseg or end > len(tail):
        raise AudioError(f"{path}: truncated OGG: the last page is cut off "
                         f"({end - len(tail)} bytes missing)")
    if not header_type & 0x04:
        raise AudioError(f"{path}: truncated OGG: the stream has no end-of-stream page")


def mpeg_frame_size(header: bytes) -> int | None:
    """Bytes in the MPEG audio frame (layer I, II or III) that starts with ``header``.

    ``header`` is at least the frame's first 4 bytes. None when they are not a frame
    header or the frame's size is not stated (free-format bit rate).
    """
    if len(header) < 4 or header[0] != 0xFF or header[1] & 0xE0 != 0xE0:
        return None
    version, layer_bits = (header[1] >> 3) & 3, (header[1] >> 1) & 3
    rate_index, bitrate_index = (header[2] >> 2) & 3, header[2] >> 4
    if version == 1 or layer_bits == 0 or rate_index == 3 or bitrate_index in (0, 15):
        return None
    layer = 4 - layer_bits
    mpeg1 = version == 3
    bitrate = _BITRATES[(mpeg1, layer)][bitrate_index] * 1000
    rate = _RATES[version][rate_index]
    padding = (header[2] >> 1) & 1
    if layer == 1:
        return (12 * bitrate // rate + padding) * 4
    if layer == 3 and not mpeg1:
        return 72 * bitrate // rate + padding
    return 144 * bitrate // rate + padding


def mp3_declares_length(path: Path) -> bool:
    """True when an MP3's first frame is a Xing, Info or VBRI header: it states the frame
    count, so the length FFmpeg reports is exact. Without one (``-write_xing 0``, many
    streams and old encoders) the length is only an estimate from the bit rate."""
    with path.open("rb") as f:
        head = f.read(10)
        start = 0
        if head[:3] == b"ID3" and len(head) == 10:
            # ID3v2: a 28-bit "syncsafe" size (7 bits per byte), plus a footer if flagged.
            size = (head[6] << 21) | (head[7] << 14) | (head[8] << 7) | head[9]
            start = 10 + size + (10 if head[5] & 0x10 else 0)
        f.seek(start)
        frame = f.read(4 + 32 + 4 + 4)
    if mpeg_frame_size(frame) is None:
        return False
    mpeg1 = (frame[1] >> 3) & 3 == 3
    mono = frame[3] >> 6 == 3
    side_info = (17 if mono else 32) if mpeg1 else (9 if mono else 17)
    return (frame[4 + side_info:8 + side_info] in (b"Xing", b"Info")
            or frame[36:40] == b"VBRI")
