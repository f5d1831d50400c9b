import io
import time

import numpy as np
import pytest
from PIL import Image

from classifier.contract import InputSpec
from classifier.preprocess import Decoded, batch, decode, flatten_to_rgb, letterbox_params, to_tensor

RED, GREEN, BLUE, GREY = (255, 0, 0), (0, 255, 0), (0, 0, 255), (114, 114, 114)

# A 2x2 image with distinct known pixels: rows top to bottom, pixels left to right.
PIXELS = np.array([[[10, 20, 30], [40, 50, 60]], [[70, 80, 90], [100, 110, 120]]], dtype=np.uint8)


def spec(**changes) -> InputSpec:
    values = {
        "name": "x",
        "layout": "NCHW",
        "height": 2,
        "width": 2,
        "dtype": "float32",
        "channels": "RGB",
        "scale": 1 / 255,
        "mean": (0.0, 0.0, 0.0),
        "std": (1.0, 1.0, 1.0),
        "resize": "stretch",
    }
    values.update(changes)
    return InputSpec(**values)


def jpeg_bytes(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=95, **options)
    return buffer.getvalue()


def png_bytes(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", **options)
    return buffer.getvalue()


# --- to_tensor -------------------------------------------------------------------------------------------


def test_nchw_rgb_with_scale_mean_and_std():
    tensor = to_tensor(Image.fromarray(PIXELS), spec(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)))

    expected = ((PIXELS / 255 - 0.5) / 0.5).transpose(2, 0, 1)[None]
    assert tensor.shape == (1, 3, 2, 2)
    assert tensor.dtype == np.float32
    np.testing.assert_allclose(tensor, expected, atol=1e-6)
    # Channel 0, row 0: the red values of the top row, (10, 40).
    np.testing.assert_allclose(tensor[0, 0, 0], [(10 / 255 - 0.5) * 2, (40 / 255 - 0.5) * 2], atol=1e-6)


def test_nhwc_rgb_per_channel_mean_and_std():
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 2.0)

    tensor = to_tensor(Image.fromarray(PIXELS), spec(layout="NHWC", scale=1 / 255, mean=mean, std=std))

    expected = ((PIXELS / 255 - np.array(mean)) / np.array(std))[None]
    assert tensor.shape == (1, 2, 2, 3)
    np.testing.assert_allclose(tensor, expected, atol=1e-6)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_bgr_reverses_channels_and_mean_follows_the_tensor_order(layout):
    # Caffe style: raw 0-255 pixels minus a per-channel mean given in BGR order.
    mean = (103.939, 116.779, 123.68)

    tensor = to_tensor(Image.fromarray(PIXELS), spec(layout=layout, channels="BGR", scale=1.0, mean=mean))

    expected = PIXELS[..., ::-1].astype(np.float64) - np.array(mean)
    if layout == "NCHW":
        expected = expected.transpose(2, 0, 1)
    np.testing.assert_allclose(tensor[0], expected, atol=1e-4)
    assert tensor.flags["C_CONTIGUOUS"]


@pytest.mark.parametrize(("layout", "shape"), [("NCHW", (1, 3, 2, 2)), ("NHWC", (1, 2, 2, 3))])
def test_uint8_is_raw_pixels(layout, shape):
    tensor = to_tensor(Image.fromarray(PIXELS), spec(layout=layout, dtype="uint8", scale=1.0))

    assert tensor.dtype == np.uint8
    assert tensor.shape == shape
    expected = PIXELS.transpose(2, 0, 1) if layout == "NCHW" else PIXELS
    np.testing.assert_array_equal(tensor[0], expected)
    assert tensor.flags["C_CONTIGUOUS"]


def test_stretch_ignores_the_aspect_ratio():
    image = Image.new("RGB", (8, 4), RED)

    tensor = to_tensor(image, spec(layout="NHWC", height=4, width=4, dtype="uint8"))

    assert tensor.shape == (1, 4, 4, 3)
    assert (tensor[0] == RED).all()


def test_stretch_is_a_bilinear_resize_to_the_contract_size():
    # A horizontal ramp stays a ramp: each output pixel interpolates the two nearest source columns.
    ramp = np.tile(np.arange(0, 240, 10, dtype=np.uint8)[None, :, None], (6, 1, 3))  # 6 x 24, values 0..230
    image = Image.fromarray(ramp)

    tensor = to_tensor(image, spec(layout="NHWC", height=3, width=12, dtype="uint8"))[0]

    assert tensor.shape == (3, 12, 3)
    # Output column x samples source x' = (x + 0.5) * 2 - 0.5, between columns 2x and 2x+1: 10 * (2x + 0.5).
    expected = np.round(10 * (2 * np.arange(12) + 0.5)).astype(np.uint8)
    np.testing.assert_allclose(tensor[1, :, 0], expected, atol=1)
    assert (tensor[:, :, 0] == tensor[:, :, 1]).all()
    # A PIL image and its pixels give the same tensor (callers pass the array to read an image once).
    np.testing.assert_array_equal(tensor, to_tensor(ramp, spec(layout="NHWC", height=3, width=12, dtype="uint8"))[0])


def test_letterbox_wide_image_pads_top_and_bottom():
    image = Image.new("RGB", (8, 4), RED)  # 2:1 into 4x4 -> 4x2 centred, one grey row above and below

    tensor = to_tensor(image, spec(layout="NHWC", height=4, width=4, dtype="uint8", resize="letterbox"))[0]

    assert (tensor[0] == GREY).all()
    assert (tensor[1:3] == RED).all()
    assert (tensor[3] == GREY).all()


def test_letterbox_tall_image_pads_left_and_right_in_nchw_float():
    image = Image.new("RGB", (2, 4), BLUE)  # 1:2 into 4x4 -> 2x4 centred, one grey column each side

    tensor = to_tensor(image, spec(layout="NCHW", height=4, width=4, resize="letterbox"))[0]

    np.testing.assert_allclose(tensor[:, :, 0], 114 / 255, atol=1e-6)
    np.testing.assert_allclose(tensor[:, :, 3], 114 / 255, atol=1e-6)
    np.testing.assert_allclose(tensor[0, :, 1:3], 0.0)
    np.testing.assert_allclose(tensor[2, :, 1:3], 1.0)


def test_letterbox_params():
    assert letterbox_params((8, 4), (4, 4)) == (0.5, 0, 1)
    assert letterbox_params((1600, 1200), (192, 192)) == (0.12, 0, 24)
    assert letterbox_params((100, 100), (192, 192)) == (1.92, 0, 0)


def test_box_crops_before_resizing():
    pixels = np.zeros((4, 4, 3), dtype=np.uint8)
    pixels[:, :] = RED
    pixels[0:2, 2:4] = GREEN  # the top-right quarter
    image = Image.fromarray(pixels)

    tensor = to_tensor(image, spec(layout="NHWC", height=3, width=3, dtype="uint8"), box=(2, 0, 4, 2))

    assert (tensor[0] == GREEN).all()


def test_box_outside_the_image_is_refused():
    with pytest.raises(ValueError, match="outside the 2x2 image"):
        to_tensor(Image.fromarray(PIXELS), spec(), box=(0, 0, 3, 2))


def test_non_rgb_images_are_converted():
    gray = Image.new("L", (2, 2), 200)

    tensor = to_tensor(gray, spec(dtype="uint8", layout="NHWC"))

    assert (tensor == 200).all()


def test_batch_concatenates_batches_of_one():
    image = Image.fromarray(PIXELS)
    tensors = [to_tensor(image, spec()), to_tensor(image, spec())]

    assert batch(tensors).shape == (2, 3, 2, 2)
    with pytest.raises(ValueError, match="empty"):
        batch([])


# --- decode ----------------------------------------------------------------------------------------------


def halves(size: tuple[int, int], left, right) -> Image.Image:
    image = Image.new("RGB", size, left)
    image.paste(right, (size[0] // 2, 0, size[0], size[1]))
    return image


def close(pixel, colour, tolerance=40) -> bool:
    return all(abs(int(a) - int(b)) <= tolerance for a, b in zip(pixel, colour, strict=True))


def test_exif_orientation_is_applied():
    # Stored 40x20, red left half, blue right half; orientation 6 means "rotate 90 degrees clockwise to view".
    image = halves((40, 20), RED, BLUE)
    exif = Image.Exif()
    exif[0x0112] = 6

    decoded = decode(jpeg_bytes(image, exif=exif.tobytes()), min_size=(20, 40))

    assert decoded.original_size == (20, 40)
    assert decoded.image.size == (20, 40)
    assert decoded.scale == 1.0
    assert close(decoded.image.getpixel((10, 5)), RED)  # the left half is now on top
    assert close(decoded.image.getpixel((10, 35)), BLUE)


def test_png_exif_orientation_is_applied():
    exif = Image.Exif()
    exif[0x0112] = 8  # rotate 90 degrees counter-clockwise to view: the left half ends at the bottom
    data = png_bytes(halves((40, 20), RED, BLUE), exif=exif.tobytes())

    decoded = decode(data, min_size=1)

    assert decoded.original_size == (20, 40)
    assert decoded.image.getpixel((10, 35)) == RED
    assert decoded.image.getpixel((10, 5)) == BLUE


def test_draft_reduces_a_big_jpeg_but_never_below_min_size():
    data = jpeg_bytes(halves((1600, 1200), RED, BLUE))

    small = decode(data, min_size=224)
    medium = decode(data, min_size=(500, 300))
    full = decode(data, min_size=(2000, 2000))

    assert small.image.size == (400, 300)  # 1/4: 1/8 would be 200x150, below 224
    assert small.scale == 0.25
    assert small.original_size == (1600, 1200)
    assert medium.image.size == (800, 600)  # 1/4 would be 400 wide, below 500
    assert full.image.size == (1600, 1200)
    assert full.scale == 1.0
    assert close(small.image.getpixel((10, 150)), RED)


def test_draft_accounts_for_an_orientation_that_swaps_axes():
    exif = Image.Exif()
    exif[0x0112] = 6
    data = jpeg_bytes(Image.new("RGB", (1600, 1200), GREEN), exif=exif.tobytes())

    decoded = decode(data, min_size=(224, 400))  # in the viewed orientation: 1200 wide, 1600 tall

    assert decoded.original_size == (1200, 1600)
    assert decoded.image.size == (300, 400)
    assert decoded.scale == 0.25


def test_to_original_maps_boxes_back():
    decoded = Decoded(image=Image.new("RGB", (400, 300)), original_size=(1600, 1200), scale=0.25)

    assert decoded.to_original((10, 20, 399, 300)) == (40, 80, 1596, 1200)


def test_rgba_is_flattened_on_white():
    pixels = np.zeros((1, 3, 4), dtype=np.uint8)
    pixels[0, 0] = (0, 0, 0, 0)  # fully transparent black
    pixels[0, 1] = (255, 0, 0, 128)  # half transparent red
    pixels[0, 2] = (0, 0, 255, 255)  # opaque blue
    data = png_bytes(Image.fromarray(pixels, mode="RGBA"))

    image = decode(data, min_size=1).image

    assert image.mode == "RGB"
    assert image.getpixel((0, 0)) == (255, 255, 255)
    assert close(image.getpixel((1, 0)), (255, 127, 127), tolerance=1)
    assert image.getpixel((2, 0)) == BLUE


def test_palette_transparency_is_flattened_on_white():
    palette_image = Image.new("P", (2, 1), 0)
    palette_image.putpalette([0, 0, 0, 255, 0, 0] + [0] * (256 * 3 - 6))
    palette_image.putpixel((1, 0), 1)
    data = png_bytes(palette_image, transparency=0)

    image = decode(data, min_size=1).image

    assert image.getpixel((0, 0)) == (255, 255, 255)
    assert image.getpixel((1, 0)) == RED


def test_grey_with_alpha_and_sixteen_bit_grey():
    grey_alpha = Image.new("LA", (1, 1), (0, 0))
    deep = Image.fromarray(np.array([[65535, 32768, 0]], dtype=np.uint16))

    assert decode(png_bytes(grey_alpha), min_size=1).image.getpixel((0, 0)) == (255, 255, 255)
    assert [decode(png_bytes(deep), min_size=1).image.getpixel((x, 0)) for x in range(3)] == [
        (255, 255, 255),
        (128, 128, 128),
        (0, 0, 0),
    ]


def test_flatten_keeps_an_rgb_image_as_is():
    image = Image.new("RGB", (2, 2))

    assert flatten_to_rgb(image) is image


# --- costs (printed, never asserted) -----------------------------------------------------------------------


def test_print_to_tensor_cost_for_a_1600x1200_jpeg():
    rng = np.random.default_rng(1)
    # Smooth noise, so the JPEG has photo-like content rather than flat colour.
    small = Image.fromarray(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8))
    data = jpeg_bytes(small.resize((1600, 1200), Image.Resampling.BICUBIC))
    target = spec(layout="NCHW", height=224, width=224, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))

    def best_of(function, repeat=15) -> float:
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            function()
            times.append(time.perf_counter() - start)
        return min(times) * 1000

    full = Image.open(io.BytesIO(data)).convert("RGB")
    drafted = decode(data, min_size=224)
    figures = {
        "decode full 1600x1200": best_of(lambda: Image.open(io.BytesIO(data)).convert("RGB")),
        f"decode draft -> {drafted.image.size}": best_of(lambda: decode(data, min_size=224)),
        "to_tensor 1600x1200 -> 224 NCHW": best_of(lambda: to_tensor(full, target)),
        f"to_tensor {drafted.image.size} -> 224 NCHW": best_of(lambda: to_tensor(drafted.image, target)),
        f"to_tensor {drafted.image.size} -> 224 NHWC": best_of(
            lambda: to_tensor(drafted.image, spec(layout="NHWC", height=224, width=224))
        ),
    }
    for label, milliseconds in figures.items():
        print(f"{label}: {milliseconds:.2f} ms")  # noqa: T201
