"""Sliding windows over images (N, C, H, W): sizes and the strided view of one kernel offset.

Convolution and pooling visit a kh x kw window at every output pixel. Looping over the
kh * kw kernel offsets (i, j) instead of over pixels, the inputs that offset (i, j) meets
at all output pixels form one strided view ``x[:, :, i::sh, j::sw]`` of Ho x Wo pixels, so
each offset is one vectorised operation.
"""


def pair(value):
    """A size as (height, width): 3 -> (3, 3), [3, 5] -> (3, 5)."""
    return (value, value) if isinstance(value, int) else tuple(value)


def output_size(layer, in_shape, kernel, stride, padding=(0, 0)):
    """(Ho, Wo) of ``layer`` sliding a ``kernel`` window over a (C, H, W) sample.

    Raises:
        ValueError: the input is not an image, or the window does not fit the padded input.
    """
    height, width = image_size(layer, in_shape)
    padded = (height + 2 * padding[0], width + 2 * padding[1])
    if kernel[0] > padded[0] or kernel[1] > padded[1]:
        pad = f" (padding {padding[0]}x{padding[1]})" if any(padding) else ""
        raise ValueError(f"{layer!r}: the {kernel[0]}x{kernel[1]} window is larger than its "
                         f"input {padded[0]}x{padded[1]}{pad}; input (N, {', '.join(map(str, in_shape))})")
    return tuple((p - k) // s + 1 for p, k, s in zip(padded, kernel, stride, strict=True))


def image_size(layer, in_shape):
    """(H, W) of a (C, H, W) sample shape; ValueError naming ``layer`` for any other shape."""
    if len(in_shape) != 3:
        raise ValueError(f"{layer!r} needs images (N, C, H, W), got (N, {', '.join(map(str, in_shape))})")
    return in_shape[1:]


def offset_view(x, i, j, out_size, stride):
    """The (N, C, Ho, Wo) strided view of x that kernel offset (i, j) meets."""
    (ho, wo), (sh, sw) = out_size, stride
    return x[:, :, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw]
