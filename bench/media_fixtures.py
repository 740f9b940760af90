"""Writes the encoder benchmarks' inputs into a directory: img448.png, img336.png, img224.png (a
smooth RGB pattern, PNG by hand so that no imaging library is needed) and clip30.wav (30 s of
16 kHz mono PCM16: two tones)."""
import struct, sys, wave, zlib
import numpy as np

out = sys.argv[1]


def png(path, w, h):
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x * 255 // w, y * 255 // h, ((x + y) * 7) % 256], -1).astype(np.uint8)
    raw = b"".join(b"\x00" + img[r].tobytes() for r in range(h))

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


for s in (448, 336, 224):
    png(f"{out}/img{s}.png", s, s)
t = np.arange(16000 * 30) / 16000
sig = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.1 * np.sin(2 * np.pi * 1234 * t) * np.sin(t)).astype(np.float32)
with wave.open(f"{out}/clip30.wav", "wb") as w:
    w.setnchannels(1)
    w.setsampwidth(2)
    w.setframerate(16000)
    w.writeframes((sig * 32767).astype("<i2").tobytes())
