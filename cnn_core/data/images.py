"""Reading images people hand us (uploads, files in folders) safely, and turning them into arrays.

Every page that accepts an image goes through `read_image`: it refuses non-images, truncated files and
decompression bombs with a message a person can act on, and hands back a plain 8-bit "L" or "RGB" image
whatever came in (16-bit scans, palette GIFs, RGBA screenshots, CMYK JPEGs, rotated phone photos).
"""

from __future__ import annotations

import io
import math
import os
import re
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, JpegImagePlugin, UnidentifiedImageError

from ..errors import DataError, ImageError

#: Largest image (width x height) read by default: a 40-megapixel photo is fine, a 20000x20000 bomb is not.
DEFAULT_MAX_PIXELS = 40_000_000
#: Largest image file read (bytes): a 200-megapixel phone JPEG is about 100 MB, 40 megapixels of 16-bit RGB in an
#: uncompressed TIFF 240 MB. A larger file is refused before it is read into memory.
MAX_IMAGE_FILE_BYTES = 320 * 2**20

try:  # iPhone photos (HEIC) through pillow-heif, a maintained Pillow plugin; without it they get a clear message
    from pillow_heif import register_heif_opener
except ImportError:  # pragma: no cover - pillow-heif is a dependency; a trimmed install may lack it
    HEIF_SUPPORTED = False
else:
    register_heif_opener()
    HEIF_SUPPORTED = True

#: Formats we let Pillow decode (multi-picture JPEGs come through "JPEG", HEIC photos through "HEIF"). Others
#: (EPS runs Ghostscript, for one) are refused on purpose.
ALLOWED_FORMATS = ("PNG", "JPEG", "BMP", "DIB", "GIF", "TIFF", "WEBP", "PPM", "HEIF", "AVIF", "TGA")


def _image_suffixes() -> tuple[str, ...]:
    """Every file name ending this Pillow build maps to an allowed format (.jfif, .jpe, .heic, .pnm, ...)."""
    Image.init()
    return tuple(sorted(ext for ext, fmt in Image.registered_extensions().items() if fmt in ALLOWED_FORMATS))


#: File name endings for upload widgets and folder scans; files with other names are still read when their
#: content is an image (see `maybe_image_name`), whatever they are called.
IMAGE_SUFFIXES = _image_suffixes()
#: The same endings without their dot, for upload widgets (Windows saves JPEGs as .jfif, iPhones as .heic).
UPLOAD_EXTENSIONS = tuple(suffix.lstrip(".") for suffix in IMAGE_SUFFIXES)

#: Endings of files that are surely not images: not even opened when a folder or zip is scanned.
NOT_IMAGE_SUFFIXES = frozenset((
    ".txt", ".md", ".csv", ".tsv", ".json", ".xml", ".html", ".htm", ".pdf", ".py", ".ipynb", ".doc", ".docx",
    ".xls", ".xlsx", ".zip", ".rar", ".7z", ".gz", ".tar", ".mp4", ".mov", ".avi", ".db", ".ini", ".log", ".yaml",
    ".yml", ".npz", ".npy", ".pt", ".pth", ".safetensors", ".dcm", ".nii",
))  # fmt: skip
#: Archives: Kaggle's downloads wrap the data in more zips (Dogs vs. Cats: train.zip, test1.zip).
ARCHIVE_SUFFIXES = (".zip", ".rar", ".7z", ".tar", ".gz", ".tgz")
_HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1")


def maybe_image_name(name: str) -> bool:
    """Whether a file with this name may hold an image: an image ending, or one that is not surely something
    else (no ending, `.dat`, a camera's own): those are told by their content."""
    suffix = os.path.splitext(name)[1].lower()
    return suffix in IMAGE_SUFFIXES or suffix not in NOT_IMAGE_SUFFIXES


def is_heif(head: bytes) -> bool:
    """An HEIC/HEIF file by its first 12 bytes (an ISO box `ftyp` with a HEIF brand), whatever its name."""
    return head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS

ImageSource = bytes | bytearray | memoryview | str | os.PathLike | BinaryIO


def read_image(
    source: ImageSource,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    name: str | None = None,
    keep_alpha: bool = False,
) -> Image.Image:
    """Decode `source` (bytes, a path or a binary file object) into an 8-bit "L" or "RGB" image.

    With `keep_alpha`, an image with transparent pixels comes back as "RGBA" instead of composited over
    white (a white digit on a transparent background must not vanish before its ink is looked for).

    The pixel count is checked from the file header before any pixel is decoded, so a small file that
    claims to be 20000x20000 costs nothing. Raises `ImageError` with a message that names the file.
    """
    data, label = _read_bytes(source, name)
    if not data:
        raise ImageError(f"{label} is empty (0 bytes): choose an image file such as a PNG or JPEG.")
    try:
        image = open_image(io.BytesIO(data), _openable_formats())
    except UnidentifiedImageError as exc:
        if is_heif(data[:12]):
            raise ImageError(f"{label} is an HEIC photo (an iPhone's format) and this installation cannot read HEIC: "
                             "install pillow-heif (`pip install pillow-heif`) or export the photo as JPEG.") from exc
        if kind := _signature_kind(data[:12]):  # a PNG whose header chunk fails its checksum, say
            raise ImageError(f"{label} starts like a {kind} file but is damaged: its header cannot be read. Get an "
                             "undamaged copy of it.") from exc
        raise ImageError(
            f"{label} is not an image this app can read. Use one of: {', '.join(_format_names())}."
        ) from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        declared = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(declared.group(1)) / 1e6:.0f} megapixels" if declared else "so many pixels"
        raise ImageError(
            f"{label} declares {size}: decoding it could exhaust memory (a 'decompression bomb'). The limit "
            f"here is {max_pixels / 1e6:.0f} megapixels; shrink the image and try again."
        ) from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageError(f"{label} could not be opened as an image ({exc}).") from exc

    width, height = image.size
    if width < 1 or height < 1:
        raise ImageError(f"{label} has no pixels ({width}x{height}).")
    if width * height > max_pixels and is_jpeg(image):
        draft_within(image, max_pixels)  # a phone's 48 or 200 MP photo decodes at 1/2 or 1/4 of its side, cheaply
        width, height = image.size
    if width * height > max_pixels:
        raise ImageError(
            f"{label} is {width}x{height} pixels ({width * height / 1e6:.0f} megapixels), more than the "
            f"limit of {max_pixels / 1e6:.0f} megapixels. Decoding it could exhaust memory (a "
            "'decompression bomb'); shrink the image and try again."
        )
    try:
        image.load()
    except Exception as exc:  # noqa: BLE001 - Pillow's decoders raise many types on damaged input
        detail = str(exc) or type(exc).__name__
        if "truncated" in detail.lower() or isinstance(exc, EOFError):
            raise ImageError(
                f"{label} is truncated: the file ends before the image does ({detail}). "
                "The upload or download was probably cut short; get a complete copy."
            ) from exc
        raise ImageError(f"{label} is damaged and could not be decoded ({detail}).") from exc
    frames = int(getattr(image, "n_frames", 1) or 1)  # an animated GIF, a multi-page TIFF: the first is read
    standard = to_standard_mode(image, keep_alpha=keep_alpha)
    if frames > 1:
        standard.info[FRAMES_KEY] = frames
    return standard


#: `read_image`'s note in an image's `info`: how many frames (pages) its file holds, when more than one.
FRAMES_KEY = "cnn_explorer_frames"
_SIGNATURES = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF8", "GIF"), (b"II*\x00", "TIFF"),
               (b"MM\x00*", "TIFF"), (b"BM", "BMP"))


def _signature_kind(head: bytes) -> str | None:
    """The format a file's first bytes announce ("PNG", ...), None for none of those."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    return next((kind for signature, kind in _SIGNATURES if head.startswith(signature)), None)


def open_image(fp: BinaryIO | Path, formats: list[str]) -> Image.Image:
    """`Image.open` (the header only, nothing decoded) for callers that check the pixel count themselves.

    Pillow warns above its MAX_IMAGE_PIXELS (~89 MP) and refuses twice that (~179 MP) before anyone can ask for
    a smaller decode; a JPEG over that (a 200 MP phone photo, 16320x12240) is opened by its own plugin, since
    JPEG decodes at 1/2, 1/4 or 1/8 of its side (`draft_within`). Raises what `Image.open` raises."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            warnings.simplefilter("ignore", UserWarning)  # damaged metadata ("Possibly corrupt EXIF data"): pixels count
            return Image.open(fp, formats=formats)
    except Image.DecompressionBombError:
        if "JPEG" not in formats:
            raise
        stream = io.BytesIO(fp.read_bytes()) if isinstance(fp, Path) else fp  # the image owns no file handle
        stream.seek(0)
        if stream.read(3) != b"\xff\xd8\xff":
            raise
        stream.seek(0)
        return JpegImagePlugin.jpeg_factory(stream)


def is_jpeg(image: Image.Image) -> bool:
    """A JPEG, also one with several pictures in it (MPO: Samsung photos, iPhone HDR gain maps) that Pillow
    opens as format "MPO": both decode with JPEG's scaled `draft`."""
    return isinstance(image, JpegImagePlugin.JpegImageFile)


def draft_within(image: Image.Image, max_pixels: int) -> None:
    """Make a JPEG decode at the largest of 1/2, 1/4, 1/8 of its side (the scales its decoder offers: Pillow's
    `Image.draft`) that fits `max_pixels`; nothing when even 1/8 does not fit or the image is no JPEG."""
    width, height = image.size
    for scale in (2, 4, 8):  # the decoder's side is ceil(side / scale); Pillow picks min(W // w, H // h) as scale
        if math.ceil(width / scale) * math.ceil(height / scale) <= max_pixels:
            image.draft(image.mode, (width // scale, height // scale))
            return


def _openable_formats() -> list[str]:
    """ALLOWED_FORMATS that this Pillow build can open (WebP needs libwebp, for one)."""
    Image.init()
    return [name for name in ALLOWED_FORMATS if name in Image.OPEN]


def to_standard_mode(image: Image.Image, keep_alpha: bool = False) -> Image.Image:
    """Bring any Pillow image to 8-bit "L" (grayscale) or "RGB", the two modes the rest of the app uses.

    EXIF rotation is applied; transparency is composited over white (what a viewer shows), or with
    `keep_alpha` kept as "RGBA" when some pixel is not fully opaque; 16-bit and
    floating-point images are stretched from their darkest to their brightest value, so a 12-bit scan
    stored in 16 bits does not come out black.
    """
    image = upright(image)
    mode = image.mode
    if mode in ("L", "RGB"):
        return image
    if mode == "1":
        return image.convert("L")
    if mode in ("I", "F") or mode.startswith("I;16"):
        return _stretch_to_uint8(image)
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    if mode == "PA":
        image = image.convert("RGBA")
        mode = image.mode
    if mode in ("RGBA", "LA", "RGBa", "La"):
        has_colour = mode.startswith("RGB")
        rgba = image.convert("RGBA")
        if keep_alpha and rgba.getextrema()[3][0] < 255:
            return rgba
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        flat = Image.alpha_composite(background, rgba).convert("RGB")
        return flat if has_colour else flat.convert("L")
    return image.convert("RGB")


#: EXIF orientation (tag 0x0112, values 2-8) -> the transpose that shows the picture upright, as Pillow's
#: `ImageOps.exif_transpose` maps them (EXIF 2.32, "Orientation").
EXIF_ORIENTATION = 0x0112
_UPRIGHT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
            5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
            8: Image.Transpose.ROTATE_90}


def upright(image: Image.Image) -> Image.Image:
    """The picture as a viewer shows it: its EXIF orientation applied (a phone photo taken upright is stored
    sideways with orientation 6). Read here rather than by `ImageOps.exif_transpose`, which also rewrites the
    EXIF block and raises on damaged ones (TypeError, struct.error, SyntaxError: python-pillow/Pillow#3973, #7839,
    #8348, #8965) though the pixels are fine; an EXIF block that cannot be read counts as no rotation."""
    try:
        with warnings.catch_warnings():  # "Possibly corrupt EXIF data": said once per tag, on stderr
            warnings.simplefilter("ignore", UserWarning)
            orientation = image.getexif().get(EXIF_ORIENTATION)
    except Exception:  # noqa: BLE001 - Pillow's EXIF parser raises many types on damaged blocks
        return image
    method = _UPRIGHT.get(orientation) if isinstance(orientation, int) else None
    if method is None:
        return image
    turned = image.transpose(method)
    for key in EXIF_INFO_KEYS:  # turned once: a second call (fit_image after read_image) must not turn it again
        turned.info.pop(key, None)
    return turned


#: Where Pillow keeps a picture's EXIF (and the XMP copy of its orientation) in `Image.info`.
EXIF_INFO_KEYS = ("exif", "Raw profile type exif", "XML:com.adobe.xmp", "xmp")


def _stretch_to_uint8(image: Image.Image) -> Image.Image:
    values = np.asarray(image, dtype=np.float64)
    if values.ndim == 3:  # multi-channel high-bit-depth: stretch all channels together
        values = values[..., :3]
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        raise ImageError("The image holds no finite pixel values (all NaN or infinite).")
    low, high = float(finite.min()), float(finite.max())
    scaled = np.zeros_like(values) if high <= low else (values - low) / (high - low) * 255.0
    scaled = np.nan_to_num(scaled, nan=0.0, posinf=255.0, neginf=0.0)
    array = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    return Image.fromarray(array, mode="RGB" if array.ndim == 3 else "L")


def _read_bytes(source: ImageSource, name: str | None) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), _label(name or "The file")
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        label = _label(name or path.name)
        if path.is_dir():
            raise ImageError(f"{label} is a folder, not an image file.")
        if not path.is_file():
            raise ImageError(f"{label} was not found at {path}.")
        try:
            if (size := path.stat().st_size) > MAX_IMAGE_FILE_BYTES:
                raise ImageError(f"{label} is {size / 2**20:,.0f} MB, more than the {MAX_IMAGE_FILE_BYTES / 2**20:.0f} MB "
                                 "an image file may be here; it is not read. Shrink the image and try again.")
            return path.read_bytes(), label
        except OSError as exc:
            raise ImageError(f"{label} could not be read ({exc.strerror or exc}).") from exc
    if hasattr(source, "read"):
        label = _label(name or getattr(source, "name", None) or "The file")
        if hasattr(source, "seek"):
            source.seek(0)
        return source.read(), label
    raise ImageError(f"Cannot read an image from a {type(source).__name__}; give bytes or a file path.")


def _label(name: str) -> str:
    return name if name == "The file" else f"'{os.path.basename(str(name))}'"


def _format_names() -> list[str]:
    return ["PNG", "JPEG", "BMP", "GIF", "TIFF", "WebP", "PPM/PGM", "TGA"] + (["HEIC", "AVIF"] if HEIF_SUPPORTED else ["AVIF"])


def to_grayscale_float(image: Image.Image | np.ndarray) -> np.ndarray:
    """A float32 [H, W] array in [0, 1]: the luma of a PIL image, or of an array.

    Integer arrays are taken as 0-255, float arrays as already in [0, 1]. Arrays may be [H, W],
    [H, W, C] or [C, H, W] with C in (1, 3); colour is mixed with ITU-R 601-2 weights, the same as
    Pillow's "L" conversion.
    """
    if isinstance(image, Image.Image):
        gray = to_standard_mode(image)
        if gray.mode != "L":
            gray = gray.convert("L")
        return np.asarray(gray, dtype=np.float32) / 255.0
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3):
        array = np.moveaxis(array, 0, -1)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 3 and array.shape[-1] == 3:
        weights = np.array([0.299, 0.587, 0.114], dtype=np.float64)
        array = array.astype(np.float64) @ weights
    elif array.ndim != 2:
        raise ImageError(f"Expected a grayscale or RGB image array, got shape {tuple(array.shape)}.")
    scale = 255.0 if np.issubdtype(np.asarray(image).dtype, np.integer) else 1.0
    return (np.asarray(array, dtype=np.float64) / scale).astype(np.float32)


def to_uint8_array(image: Image.Image, mode: str = "L") -> np.ndarray:
    """[H, W] uint8 for mode "L", [H, W, 3] uint8 for mode "RGB"."""
    if mode not in ("L", "RGB"):
        raise ValueError(f"mode must be 'L' or 'RGB', not {mode!r}")
    return np.asarray(to_standard_mode(image).convert(mode), dtype=np.uint8)


def fit_within(image: Image.Image, max_side: int) -> Image.Image:
    """The image shrunk (never enlarged) so that neither side exceeds `max_side`, keeping its aspect."""
    if max_side < 1:
        raise ValueError("max_side must be at least 1")
    width, height = image.size
    scale = max_side / max(width, height)
    if scale >= 1:
        return image
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def tensor_to_image(chw: np.ndarray) -> Image.Image:
    """A uint8 [C, H, W] array (a data set sample, C = 1 or 3) as a PIL "L" or "RGB" image."""
    array = np.asarray(chw)
    if array.ndim != 3 or array.shape[0] not in (1, 3):
        raise ImageError(f"Expected a [C, H, W] image with 1 or 3 channels, got shape {tuple(array.shape)}.")
    array = np.clip(array, 0, 255).astype(np.uint8)
    if array.shape[0] == 1:
        return Image.fromarray(array[0], mode="L")
    return Image.fromarray(np.moveaxis(array, 0, -1), mode="RGB")


#: Photos that ship inside scikit-image (no download): name -> (loader name, what it shows).
SAMPLE_PHOTOS: dict[str, tuple[str, str]] = {
    "camera": ("camera", "A cameraman on a field: strong edges against a smooth sky."),
    "coins": ("coins", "Greek coins on a dark background: round edges and texture."),
    "moon": ("moon", "The moon's surface: low contrast craters."),
    "text": ("text", "Printed and handwritten text photographed at an angle."),
    "checkerboard": ("checkerboard", "A checkerboard: only horizontal and vertical edges."),
    "brick": ("brick", "A brick wall: a repeating texture."),
    "astronaut": ("astronaut", "Astronaut Eileen Collins: a colour portrait (converted to gray)."),
    "cat": ("chelsea", "Chelsea the cat: fur texture and whiskers (colour, converted to gray)."),
    "immunohistochemistry": (
        "immunohistochemistry",
        "A stained tissue slide, like PathMNIST's patches but larger.",
    ),
    "retina": ("retina", "A fundus photograph of a human retina: thin vessels to find."),
    "shepp_logan_phantom": ("shepp_logan_phantom", "The Shepp-Logan phantom, a standard test image for CT."),
}


def load_sample_photo(name: str) -> Image.Image:
    """One of `SAMPLE_PHOTOS` as an "L" or "RGB" image (scikit-image ships these files; no network)."""
    if name not in SAMPLE_PHOTOS:
        raise ImageError(f"Unknown sample photo {name!r}; choose one of {', '.join(SAMPLE_PHOTOS)}.")
    try:
        import skimage.data
    except ImportError as exc:
        raise ImageError("Sample photos need scikit-image (pip install scikit-image).") from exc
    loader = getattr(skimage.data, SAMPLE_PHOTOS[name][0], None)
    if loader is None:
        raise ImageError(f"This scikit-image version has no sample {name!r}.")
    try:
        array = np.asarray(loader())
    except Exception as exc:  # noqa: BLE001 - scikit-image raises several types when a file needs a download
        raise ImageError(f"The sample photo {name!r} is not available offline here ({exc}).") from exc
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    elif array.dtype != np.uint8:
        low, high = float(array.min()), float(array.max())
        array = np.zeros(array.shape, np.uint8) if high <= low else ((array - low) / (high - low) * 255).round()
        array = array.astype(np.uint8)
    if array.ndim == 3 and array.shape[-1] == 4:
        array = array[..., :3]
    return Image.fromarray(array, mode="RGB" if array.ndim == 3 else "L")


def fit_image(image: Image.Image, image_size: int, channels: int) -> np.ndarray:
    """A PIL image as uint8 [C, image_size, image_size], the way folder data sets are prepared.

    EXIF rotation, transparency, palettes and 16-bit depth are handled by `to_standard_mode`;
    the image is then scaled so its *shorter* side is `image_size` and center-cropped to a square
    (`ImageOps.fit`, bicubic), which keeps the aspect ratio and loses only the margins of the longer
    side. Prediction uses the same function so that uploads look like the training images.
    """
    if channels not in (1, 3):
        raise DataError(f"channels must be 1 or 3, not {channels}.")
    standard = to_standard_mode(image).convert("L" if channels == 1 else "RGB")
    fitted = ImageOps.fit(standard, (image_size, image_size), method=Image.Resampling.BICUBIC)
    array = np.asarray(fitted, dtype=np.uint8)
    array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    return np.ascontiguousarray(array)
