"""Camera messages to packed RGB24 and back, without per-pixel Python.

``sensor_msgs/Image`` in rgb8, bgr8, rgba8, bgra8 and mono8 (and the cv_bridge aliases 8UC1,
8UC3, 8UC4, plus mono16/16UC1 scaled to 8 bits and yuv422/yuv422_yuy2) become an ``(H, W, 3)``
uint8 array through numpy views and one vectorised channel step, honouring ``step`` (row
padding) and ``is_bigendian``. rgb8 without padding is a zero-copy view. ``CompressedImage``
(jpeg, png) is decoded with Pillow. Anything else raises :class:`ImageConversionError` with the
encoding named, so the node can count and log it once.
"""

from __future__ import annotations

import array
import io

import numpy as np
from PIL import Image as PILImage
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

__all__ = ['ImageConversionError', 'image_to_rgb', 'compressed_to_rgb', 'compressed_format', 'rgb_to_image']

_CHANNELS = {
    'rgb8': 3, 'bgr8': 3, '8UC3': 3, 'rgba8': 4, 'bgra8': 4, '8UC4': 4, 'mono8': 1, '8UC1': 1,
    'mono16': 1, '16UC1': 1, 'yuv422': 2, 'uyvy': 2, 'yuv422_yuy2': 2, 'yuyv': 2,
}  # fmt: skip
_BYTES_PER_CHANNEL = {'mono16': 2, '16UC1': 2}


class ImageConversionError(ValueError):
    """An image that cannot become RGB24; ``reason`` is a short key for counting."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _rows(msg: Image, bytes_per_pixel: int) -> np.ndarray:
    h, w, step = msg.height, msg.width, msg.step
    row_bytes = w * bytes_per_pixel
    if w == 0 or h == 0:
        raise ImageConversionError('empty-image', f'image has zero size {w}x{h}')
    if step < row_bytes:
        raise ImageConversionError('bad-step', f'step {step} is smaller than width*{bytes_per_pixel}={row_bytes}')
    buf = np.frombuffer(msg.data, dtype=np.uint8)
    if buf.size < step * (h - 1) + row_bytes:
        raise ImageConversionError('short-data', f'{buf.size} data bytes cannot hold {h} rows of step {step}')
    # A strided view: rows may be padded beyond width*bpp.
    return np.lib.stride_tricks.as_strided(buf, shape=(h, row_bytes), strides=(step, 1), writeable=False)


def _yuv422_to_rgb(packed: np.ndarray, h: int, w: int, order: str) -> np.ndarray:
    if w % 2:
        raise ImageConversionError('odd-width', f'{order} needs an even width, got {w}')
    p = packed.reshape(h, w // 2, 4).astype(np.float32)
    if order == 'uyvy':
        u, y0, v, y1 = p[..., 0], p[..., 1], p[..., 2], p[..., 3]
    else:  # yuyv
        y0, u, y1, v = p[..., 0], p[..., 1], p[..., 2], p[..., 3]
    y = np.stack([y0, y1], axis=-1).reshape(h, w)
    u = np.repeat(u, 2, axis=1) - 128.0
    v = np.repeat(v, 2, axis=1) - 128.0
    rgb = np.stack([y + 1.402 * v, y - 0.344136 * u - 0.714136 * v, y + 1.772 * u], axis=-1)
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)


def image_to_rgb(msg: Image) -> np.ndarray:
    """Return the image as a C-contiguous ``(H, W, 3)`` uint8 RGB array."""
    enc = msg.encoding
    channels = _CHANNELS.get(enc)
    if channels is None:
        raise ImageConversionError('unsupported-encoding', f"image encoding '{enc}' is not supported")
    bpc = _BYTES_PER_CHANNEL.get(enc, 1)
    h, w = msg.height, msg.width
    rows = _rows(msg, channels * bpc)
    if enc in ('mono16', '16UC1'):
        px = np.ascontiguousarray(rows).view('>u2' if msg.is_bigendian else '<u2').reshape(h, w)
        gray = (px >> 8).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if enc in ('yuv422', 'uyvy'):
        return _yuv422_to_rgb(np.ascontiguousarray(rows), h, w, 'uyvy')
    if enc in ('yuv422_yuy2', 'yuyv'):
        return _yuv422_to_rgb(np.ascontiguousarray(rows), h, w, 'yuyv')
    px = rows.reshape(h, w, channels)
    if enc in ('rgb8',):
        return np.ascontiguousarray(px)  # a view when rows are unpadded
    if enc in ('bgr8', '8UC3'):
        return np.ascontiguousarray(px[:, :, ::-1])
    if enc == 'rgba8':
        return np.ascontiguousarray(px[:, :, :3])
    if enc in ('bgra8', '8UC4'):
        return np.ascontiguousarray(px[:, :, 2::-1])
    return np.repeat(px, 3, axis=2)  # mono8 / 8UC1


def compressed_format(msg: CompressedImage) -> str | None:
    """'jpeg' or 'png' from a CompressedImage ``format`` ("bgr8; jpeg compressed bgr8", "png", ...)."""
    fmt = msg.format.lower()
    if 'compresseddepth' in fmt:
        return None
    if 'png' in fmt:
        return 'png'
    if 'jpeg' in fmt or 'jpg' in fmt or not fmt.strip():
        return 'jpeg'  # image_transport treats an empty format as JPEG
    return None


def compressed_to_rgb(msg: CompressedImage) -> np.ndarray:
    """Decode a jpeg/png CompressedImage to ``(H, W, 3)`` RGB."""
    if compressed_format(msg) is None:
        raise ImageConversionError('unsupported-encoding', f"compressed format '{msg.format}' is not jpeg or png")
    try:
        with PILImage.open(io.BytesIO(bytes(msg.data))) as img:
            if img.mode == 'I' or img.mode.startswith('I;16'):
                # 16-bit grey (mono16/16UC1 sent as png): Pillow's convert('RGB') would clip every
                # value above 255 to white; keep the high byte instead, as image_to_rgb does.
                gray = np.clip(np.asarray(img).astype(np.int64) >> 8, 0, 255).astype(np.uint8)
                return np.repeat(gray[:, :, None], 3, axis=2)
            return np.asarray(img.convert('RGB'))
    except Exception as exc:
        raise ImageConversionError('decode-failed', f'cannot decode {msg.format or "jpeg"} image: {exc}') from None


def compressed_size(msg: CompressedImage) -> tuple[int, int]:
    """Width and height from the compressed header, without decoding pixels."""
    try:
        with PILImage.open(io.BytesIO(bytes(msg.data))) as img:
            return img.size
    except Exception as exc:
        raise ImageConversionError('decode-failed', f'cannot read {msg.format or "jpeg"} header: {exc}') from None


def rgb_to_image(data, width: int, height: int, header: Header) -> Image:
    """An rgb8 ``sensor_msgs/Image`` from packed RGB24 bytes (one copy into the message)."""
    buf = array.array('B')
    buf.frombytes(data if isinstance(data, (bytes, bytearray)) else memoryview(data).cast('B'))
    msg = Image(header=header, height=height, width=width, encoding='rgb8', is_bigendian=0, step=width * 3)
    msg.data = buf
    return msg
