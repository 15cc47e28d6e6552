"""Colour preservation (Gatys, Bethge, Hertzmann, Shechtman 2016, "Preserving
Color in Neural Artistic Style Transfer"), shared by both methods.

Works on numpy HxWx3 arrays or torch tensors (N, 3, H, W) in [0, 1], so the
torch-free ONNX path can use it too.
"""

from __future__ import annotations

import numpy as np

# RGB -> YIQ (NTSC), the colour space the paper uses for luminance-only transfer.
_RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ)


def transfer_luminance(stylized, content):
    """Keep the stylised luminance, take the chroma (I, Q) of the content.

    The content is resized by the caller to the stylised image's size.
    """
    return _on_arrays(_transfer_luminance, stylized, content)


def match_color(source, reference):
    """Give `source` the colour mean and covariance of `reference`.

    Used on the style image before stylising, so the painting's texture is
    transferred in the photo's colours. Uses the symmetric matrix square root
    (as in image analogies), which keeps hues from rotating.
    """
    return _on_arrays(_match_color, source, reference)


def _transfer_luminance(stylized: np.ndarray, content: np.ndarray) -> np.ndarray:
    y = stylized @ _RGB_TO_YIQ[0]
    iq = content @ _RGB_TO_YIQ[1:].T
    yiq = np.concatenate([y[..., None], iq], axis=-1)
    return np.clip(yiq @ _YIQ_TO_RGB.T, 0.0, 1.0)


def _match_color(source: np.ndarray, reference: np.ndarray) -> np.ndarray:
    src = source.reshape(-1, 3).astype(np.float64)
    ref = reference.reshape(-1, 3).astype(np.float64)
    src_mean, ref_mean = src.mean(0), ref.mean(0)
    src_cov = np.cov(src - src_mean, rowvar=False) + 1e-5 * np.eye(3)
    ref_cov = np.cov(ref - ref_mean, rowvar=False) + 1e-5 * np.eye(3)
    transform = _sqrtm(ref_cov) @ np.linalg.inv(_sqrtm(src_cov))
    out = (src - src_mean) @ transform.T + ref_mean
    return np.clip(out, 0.0, 1.0).reshape(source.shape).astype(np.float32)


def _sqrtm(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh(matrix)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def _on_arrays(function, image, other):
    """Apply an HxWx3 numpy function to arrays or to (N, 3, H, W) tensors, returning the same kind."""
    if isinstance(image, np.ndarray):
        return function(image, other).astype(np.float32)
    import torch

    def to_hwc(t):
        return t.detach().float().cpu().permute(0, 2, 3, 1).numpy()

    out = np.stack([function(a, b) for a, b in zip(to_hwc(image), _broadcast(to_hwc(other), len(image)))])
    return torch.from_numpy(out.astype(np.float32)).permute(0, 3, 1, 2).to(image.device, image.dtype)


def _broadcast(batch: np.ndarray, count: int) -> np.ndarray:
    return batch if len(batch) == count else np.repeat(batch[:1], count, axis=0)
