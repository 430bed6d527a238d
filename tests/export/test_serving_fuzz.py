"""A served model survives any request: hundreds of malformed ones, sent as TF-Serving sends them.

Each task's SavedModel is loaded in a child process the TF1 way TF-Serving's C++ server does (a session fed
by tensor name: no Python-side shape check), and sent malformed requests of every kind: ranks 0-6, other
channel counts, zero and huge sides, other dtypes, garbage, truncated and bomb-sized encoded images, mixed
sizes. The process must survive them all, and each answer must be either an error or outputs of the right
shapes; an empty batch is answered with empty outputs.
"""

import io
import json
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

import kseg
from kseg.export import MAX_SIDE, export_saved_model

CHILD = r"""
import json, sys
import numpy as np
import tensorflow as tf

path, cases_file = sys.argv[1:3]
cases = np.load(cases_file, allow_pickle=True)["cases"]
answers = []
with tf.compat.v1.Session(graph=tf.Graph()) as session:
    meta = tf.compat.v1.saved_model.loader.load(session, ["serve"], path)
    for name, signature, value in cases:
        definition = meta.signature_def[signature]
        feed_name = next(iter(definition.inputs.values())).name
        fetches = {key: info.name for key, info in definition.outputs.items()}
        try:
            result = session.run(fetches, {feed_name: value})
            answers.append({"case": name, "shapes": {k: list(v.shape) for k, v in result.items()}})
        except tf.errors.OpError as error:
            answers.append({"case": name, "error": type(error).__name__, "message": error.message.splitlines()[0]})
print(json.dumps(answers))
"""


def encode(image, fmt):
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=fmt)
    return buffer.getvalue()


def png_declaring(height, width):
    """A tiny PNG whose header declares ``height x width`` pixels (a decompression bomb)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + header
    ihdr = struct.pack(">I", len(header)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    data = zlib.compress(b"\x00" * 16)
    idat = struct.pack(">I", len(data)) + b"IDAT" + data + struct.pack(">I", zlib.crc32(b"IDAT" + data))
    end = struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
    return b"\x89PNG\r\n\x1a\n" + ihdr + idat + end


def malformed_requests():
    """``(name, signature, value, expected)``: expected is "ok", "empty", "error" or "any" (either an error or
    outputs of the right shapes)."""
    rng = np.random.default_rng(0)
    cases = []

    def images(name, value, expected):
        cases.append((name, "serving_default", value, expected))

    def encoded(name, value, expected):
        cases.append((name, "serving_bytes", np.asarray(value, dtype=object), expected))

    for rank in range(7):  # every rank, with 3 channels last where there is a last axis
        for size in (1, 5):
            shape = (3,) if rank == 1 else (size,) * max(rank - 1, 0) + ((3,) if rank else ())
            images(f"rank {rank} shape {shape}", np.zeros(shape, np.uint8), "ok" if rank == 4 else "error")
    for channels in (0, 1, 2, 4, 5, 6, 64):
        for batch in (1, 2):
            images(f"{channels} channels, batch {batch}", np.zeros((batch, 9, 11, channels), np.uint8), "error")
    for shape in ((1, 0, 11, 3), (1, 9, 0, 3), (2, 0, 0, 3), (1, 0, 0, 3), (1, 0, 0, 0)):
        images(f"zero side {shape}", np.zeros(shape, np.uint8), "error")
    for shape in ((0, 9, 11, 3), (0, 1, 1, 3), (0, 0, 0, 3), (0, 64, 64, 3)):
        images(f"empty batch {shape}", np.zeros(shape, np.uint8), "empty")
    for shape in ((1, MAX_SIDE + 1, 1, 3), (1, 1, MAX_SIDE + 1, 3), (1, 100_000, 1, 3), (3, 1, 40_000, 3)):
        images(f"huge side {shape}", np.zeros(shape, np.uint8), "error")
    for height, width in ((1, 1), (1, 2), (2, 1), (3, 17), (17, 3), (31, 29)):  # odd, tiny and thin images
        for batch in (1, 3):
            images(f"valid {batch}x{height}x{width}", rng.integers(0, 256, (batch, height, width, 3), np.uint8), "ok")
    for dtype in (np.float32, np.float64, np.int32, np.int64, np.bool_, np.int8, np.uint16):
        value = rng.integers(0, 2, (1, 9, 11, 3)).astype(dtype)  # the session casts a feed to uint8
        images(f"dtype {np.dtype(dtype).name}", value, "ok")
    for fill in (0, 255):
        images(f"constant {fill}", np.full((2, 13, 7, 3), fill, np.uint8), "ok")
    for index in range(80):  # random shapes of every rank, half of the rank-4 ones with 3 channels
        rank = int(rng.integers(0, 7))
        shape = tuple(int(d) for d in rng.integers(0, 6, rank))
        if rank == 4 and rng.random() < 0.5:
            shape = (*shape[:3], 3)
        if rank != 4 or shape[3] != 3:
            expected = "error"
        else:
            expected = "empty" if shape[0] == 0 else "ok" if min(shape[1:3]) > 0 else "error"
        images(f"random {index} {shape}", rng.integers(0, 256, shape, np.uint8), expected)

    picture = rng.integers(0, 256, (12, 16, 3), np.uint8)
    png, jpeg, bmp, gif = (encode(picture, fmt) for fmt in ("PNG", "JPEG", "BMP", "GIF"))
    for fmt, data in (("png", png), ("jpeg", jpeg), ("bmp", bmp), ("gif", gif)):
        encoded(f"{fmt}", [data], "ok")
        encoded(f"{fmt} twice", [data, data], "ok")
        for cut in (0, 1, 4, 8, 16, 24, len(data) // 3, len(data) // 2):
            encoded(f"{fmt} cut at {cut}", [data[:cut]], "error")
        # Without its last byte (a GIF's trailer, a JPEG's end marker) a file may still hold the whole image.
        encoded(f"{fmt} without its last byte", [data[:-1]], "any")
        encoded(f"{fmt} flipped bytes", [bytes(b ^ 0x5A for b in data)], "error")
    for length in (1, 3, 10, 100, 1000):
        encoded(f"garbage {length}", [bytes(rng.integers(0, 256, length, np.uint8))], "error")
    encoded("text", [b"hello, world"], "error")
    encoded("empty string", [b""], "error")
    encoded("no image", [], "empty")
    encoded("mixed sizes", [png, encode(picture[:5], "PNG")], "error")
    encoded("one good one bad", [png, b"garbage"], "error")
    for height, width in ((MAX_SIDE + 1, 1), (100_000, 100_000), (2**31 - 1, 2**31 - 1), (1, 2**32 - 1)):
        encoded(f"bomb {height}x{width}", [png_declaring(height, width)], "error")
    cases.append(("rank 2 bytes", "serving_bytes", np.asarray([[png]], dtype=object), "error"))
    cases.append(("rank 0 bytes", "serving_bytes", np.asarray(png, dtype=object), "error"))
    return cases


def tiny_semantic():
    backbone = kseg.models.ResNetV1Backbone(18, "v1b", base_width=8, output_stride=8, name="backbone")
    return kseg.models.SemanticSegmenter(backbone, head="fcn", num_classes=4, head_channels=8, name="tiny_fcn")


def tiny_instance():
    import dataclasses

    from kseg.models.mask_rcnn import MaskRCNN, MaskRCNNConfig
    from kseg.presets import Preprocessing, ShortSideResize, get_preset

    config = MaskRCNNConfig(depth=18, fpn=True, roi_size=7, mask_convs=2, rpn_pre_nms=100, rpn_post_nms=16,
                            max_detections=8)
    small = Preprocessing(resize=ShortSideResize(48, 64))
    metadata = dataclasses.replace(get_preset("mask_rcnn_fpn_resnet18_v1b_coco").model_metadata(), preprocessing=small)
    return MaskRCNN(config, metadata=metadata, name="tiny_mask_rcnn")


def expected_shapes(task, batch, height, width):
    if task == "semantic":
        return {"class_map": [batch, height, width], "probabilities": [batch, height, width, 4]}
    k = 8
    return {"detection_boxes": [batch, k, 4], "detection_classes": [batch, k], "detection_scores": [batch, k],
            "detection_masks": [batch, k, height, width], "num_detections": [batch]}


@pytest.mark.parametrize("task", ["semantic", "instance"])
def test_a_served_model_survives_every_malformed_request(task, tmp_path):
    model = tiny_semantic() if task == "semantic" else tiny_instance()
    path = export_saved_model(model, tmp_path / "serving", max_detections=8) if task == "instance" else \
        export_saved_model(model, tmp_path / "serving")
    cases = malformed_requests()
    assert len(cases) >= 200
    packed = np.empty(len(cases), dtype=object)
    packed[:] = [(name, signature, value) for name, signature, value, _ in cases]
    np.savez(tmp_path / "cases.npz", cases=packed, allow_pickle=True)
    child = subprocess.run([sys.executable, "-c", CHILD, str(path), str(tmp_path / "cases.npz")],
                           capture_output=True, text=True, timeout=1200, env={"TF_CPP_MIN_LOG_LEVEL": "3",
                                                                             **__import__("os").environ})
    assert child.returncode == 0, f"the serving process died (exit {child.returncode}):\n{child.stderr[-3000:]}"
    answers = json.loads(child.stdout.strip().splitlines()[-1])
    assert len(answers) == len(cases)
    wrong = []
    for (name, signature, value, expected), answer in zip(cases, answers, strict=True):
        if expected == "error":
            if "error" not in answer:
                wrong.append(f"{name}: answered {answer['shapes']} instead of an error")
            elif answer["error"] != "InvalidArgumentError":
                wrong.append(f"{name}: {answer['error']} ({answer['message']})")
            continue
        if "error" in answer:
            if expected != "any" or answer["error"] != "InvalidArgumentError":
                wrong.append(f"{name}: {answer['error']} {answer['message']}")
            continue
        if signature == "serving_default":
            batch, height, width = value.shape[:3]
        elif expected == "empty":
            batch, height, width = 0, 0, 0
        else:
            batch, height, width = len(value), 12, 16
        if answer["shapes"] != expected_shapes(task, batch, height, width):
            wrong.append(f"{name}: shapes {answer['shapes']}")
    assert not wrong, "\n".join(wrong)
