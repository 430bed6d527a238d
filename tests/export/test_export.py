"""kseg.export and tools/export.py: TF-Serving SavedModels of a tiny model.

One SavedModel is exported per module; ``saved_model_cli`` (TF1-style loading,
as TF-Serving's C++ server does) and a fresh Python process (``tf.saved_model.load``,
without kseg) read it, and their outputs are compared with the Keras model's.
"""

import importlib.util
import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl import flags
from PIL import Image

from kseg.data.preprocessing import load_image, normalize_image
from kseg.export import METADATA_FILE, SAME_SIZE_MESSAGE, SemanticExportModule, export_saved_model, read_metadata
from kseg.models import ResNetV1Backbone, SemanticSegmenter

REPO = Path(__file__).resolve().parents[2]
SAVED_MODEL_CLI = Path(sys.executable).with_name("saved_model_cli")
REAL_IMAGES = Path("/work/shared/realdata/ADEChallengeData2016/images/validation")
CLASSES = ("sky", "road", "car", "person", "tree")
SIZE = (45, 61)  # height, width of the test images: odd sizes, not multiples of the stride


def tiny_model():
    """tests/models/test_segmentation.py's tiny PSPNet (with its aux head: the dict output)."""
    keras.utils.set_random_seed(0)
    backbone = ResNetV1Backbone(
        depth=None, variant="v1s", block="bottleneck", stage_depths=(1, 1, 2, 1), base_width=8, output_stride=8
    )
    return SemanticSegmenter(backbone, head="psp", num_classes=5, aux=True, head_channels=16, name="tiny_psp")


def sample_image():
    """A real photo, resized small, when the shared data are here; else random pixels."""
    photos = sorted(REAL_IMAGES.glob("*.jpg"))[:1]
    if photos:
        photo = Image.fromarray(load_image(photos[0]))
        return np.asarray(photo.resize(SIZE[::-1], Image.BILINEAR), dtype=np.uint8)
    return np.random.default_rng(0).integers(0, 256, (*SIZE, 3), dtype=np.uint8)


def keras_outputs(model, images):
    logits = model(normalize_image(images), training=False)["logits"]
    return {"class_map": np.argmax(logits, axis=-1), "probabilities": tf.nn.softmax(logits).numpy()}


def encode(image, fmt, **kwargs):
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def run(*command):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([str(c) for c in command], capture_output=True, text=True, env=env, timeout=300)


# Runs in a fresh interpreter: only TensorFlow and the SavedModel, no kseg.
SERVE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow as tf

    model_dir, inputs_path, out_path = sys.argv[1:4]
    loaded = tf.saved_model.load(model_dir)
    assert "kseg" not in sys.modules
    inputs = np.load(inputs_path, allow_pickle=True)
    results = {}
    outputs = loaded.signatures["serving_default"](images=tf.constant(inputs["images"]))
    for key, value in outputs.items():
        results["images_" + key] = value.numpy()
    for fmt in ("png", "jpeg"):
        data = [bytes(b) for b in inputs[fmt]]
        outputs = loaded.signatures["serving_bytes"](image_bytes=tf.constant(data))
        for key, value in outputs.items():
            results[fmt + "_" + key] = value.numpy()
    try:
        loaded.signatures["serving_bytes"](image_bytes=tf.constant([bytes(b) for b in inputs["mixed"]]))
        error = ""
    except tf.errors.InvalidArgumentError as e:
        error = e.message
    np.savez(out_path, **results)
    print(json.dumps({"mixed_error": error, "signatures": sorted(loaded.signatures)}))
    """
)


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def images():
    image = sample_image()
    return np.stack([image, image[::-1, ::-1]])


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    return export_saved_model(model, tmp_path_factory.mktemp("serving") / "tiny_psp", classes=CLASSES)


@pytest.fixture(scope="module")
def served(exported, images, tmp_path_factory):
    """The SavedModel's outputs, computed in a fresh process; JPEG inputs and PIL's decoding of them."""
    folder = tmp_path_factory.mktemp("served")
    jpegs = [encode(image, "JPEG", quality=90) for image in images]
    decoded = []
    for i, data in enumerate(jpegs):
        path = folder / f"image{i}.jpg"
        path.write_bytes(data)
        decoded.append(load_image(path))
    other_size = np.zeros((SIZE[0] + 1, SIZE[1], 3), np.uint8)
    np.savez(
        folder / "inputs.npz",
        images=images,
        png=np.array([encode(image, "PNG") for image in images], dtype=object),
        jpeg=np.array(jpegs, dtype=object),
        mixed=np.array([encode(images[0], "PNG"), encode(other_size, "PNG")], dtype=object),
        allow_pickle=True,
    )
    result = run(sys.executable, "-c", SERVE_SCRIPT, exported, folder / "inputs.npz", folder / "outputs.npz")
    assert result.returncode == 0, result.stderr[-3000:]
    info = json.loads(result.stdout.strip().splitlines()[-1])
    outputs = dict(np.load(folder / "outputs.npz"))
    return outputs, info, np.stack(decoded)


def signature_blocks(show_output):
    """``saved_model_cli show --all`` -> {signature name: its text}."""
    blocks = {}
    for block in show_output.split("signature_def['")[1:]:
        name, _, text = block.partition("']")
        blocks[name] = text.split("\n\n")[0]
    return blocks


def test_layout_and_metadata(exported):
    assert exported.name == "1"
    assert sorted(p.name for p in exported.parent.iterdir()) == ["1"]  # no temporary folder left
    assert {"saved_model.pb", "variables", "assets"} <= {p.name for p in exported.iterdir()}
    metadata = json.loads((exported / "assets" / METADATA_FILE).read_text())
    assert metadata["format"] == "kseg-saved-model/2" and metadata["task"] == "semantic_segmentation"
    assert metadata["model"] == "tiny_psp"
    assert metadata["num_classes"] == 5 and metadata["classes"] == list(CLASSES)
    assert metadata["preprocessing"]["mean"] == [0.485, 0.456, 0.406]
    assert metadata["preprocessing"]["resize"] == {"policy": "base_crop", "base_size": 520, "crop_size": 480}
    assert metadata["signatures"]["serving_default"]["outputs"]["probabilities"]["shape"] == [-1, -1, -1, 5]
    assert set(metadata["signatures"]) == {"serving_default", "serving_bytes"}
    assert metadata["xla"] is False and metadata["precision"] == "float32"
    # Without xla the graph has no XLA attribute: stock TF-Serving runs it.
    assert b"_XlaMustCompile" not in (exported / "saved_model.pb").read_bytes()


@pytest.mark.skipif(not SAVED_MODEL_CLI.is_file(), reason=f"saved_model_cli not found beside {sys.executable}")
def test_saved_model_cli_show(exported):
    result = run(SAVED_MODEL_CLI, "show", "--dir", exported, "--all")
    assert result.returncode == 0, result.stderr[-3000:]
    blocks = signature_blocks(result.stdout)
    assert {"serving_default", "serving_bytes"} <= set(blocks)
    outputs = [
        "outputs['class_map'] tensor_info:\n        dtype: DT_INT32\n        shape: (-1, -1, -1)\n",
        "outputs['probabilities'] tensor_info:\n        dtype: DT_FLOAT\n        shape: (-1, -1, -1, 5)\n",
    ]
    default, encoded = blocks["serving_default"], blocks["serving_bytes"]
    # Declared of any rank: the graph checks the rank itself (a declared one would be taken on trust).
    assert "inputs['images'] tensor_info:\n        dtype: DT_UINT8\n        shape: unknown_rank\n" in default
    assert "inputs['image_bytes'] tensor_info:\n        dtype: DT_STRING\n        shape: unknown_rank\n" in encoded
    for block in (default, encoded):
        assert block.count("inputs['") == 1
        for output in outputs:
            assert output in block
        assert "Method name is: tensorflow/serving/predict" in block


@pytest.mark.skipif(not SAVED_MODEL_CLI.is_file(), reason=f"saved_model_cli not found beside {sys.executable}")
def test_saved_model_cli_run(exported, tmp_path):
    # TF 2.21's saved_model_cli reads --input_exprs with ast.literal_eval, so
    # 'images=np.zeros(...)' is refused there; a .npy file via --inputs is the same input.
    np.save(tmp_path / "zeros.npy", np.zeros((1, 33, 47, 3), dtype=np.uint8))
    result = run(
        SAVED_MODEL_CLI, "run", "--dir", exported, "--tag_set", "serve", "--signature_def", "serving_default",
        "--inputs", f"images={tmp_path / 'zeros.npy'}", "--outdir", tmp_path / "out",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Result for output key class_map" in result.stdout
    class_map = np.load(tmp_path / "out" / "class_map.npy")
    probabilities = np.load(tmp_path / "out" / "probabilities.npy")
    assert class_map.shape == (1, 33, 47) and class_map.dtype == np.int32
    assert probabilities.shape == (1, 33, 47, 5) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, atol=1e-5)


def test_reloaded_model_matches_keras(model, images, served):
    outputs, info, _ = served
    assert {"serving_default", "serving_bytes"} <= set(info["signatures"])
    expected = keras_outputs(model, images)
    assert outputs["images_class_map"].dtype == np.int32
    assert outputs["images_class_map"].shape == (2, *SIZE)
    assert outputs["images_probabilities"].shape == (2, *SIZE, 5)
    np.testing.assert_array_equal(outputs["images_class_map"], expected["class_map"])
    np.testing.assert_allclose(outputs["images_probabilities"], expected["probabilities"], atol=1e-5, rtol=1e-5)


def test_png_bytes_match_pixels(served):
    outputs, _, _ = served
    np.testing.assert_array_equal(outputs["png_class_map"], outputs["images_class_map"])
    np.testing.assert_array_equal(outputs["png_probabilities"], outputs["images_probabilities"])


def test_jpeg_bytes_decode_as_pil_does(model, served):
    outputs, _, pil_decoded = served
    expected = keras_outputs(model, pil_decoded)
    np.testing.assert_array_equal(outputs["jpeg_class_map"], expected["class_map"])
    np.testing.assert_allclose(outputs["jpeg_probabilities"], expected["probabilities"], atol=1e-5, rtol=1e-5)


def test_bytes_of_mixed_sizes_are_refused(served):
    _, info, _ = served
    assert SAME_SIZE_MESSAGE in info["mixed_error"]


def test_existing_version_is_not_overwritten(model, exported):
    before = (exported / "saved_model.pb").stat().st_mtime_ns
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export_saved_model(model, exported.parent, version=1)
    assert (exported / "saved_model.pb").stat().st_mtime_ns == before


def test_overwrite_replaces_the_version(model, tmp_path):
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "stale.txt").write_text("old")
    path = export_saved_model(model, tmp_path, version=1, overwrite=True, include_probabilities=False)
    assert not (path / "stale.txt").exists() and (path / "saved_model.pb").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1"]
    metadata = json.loads((path / "assets" / METADATA_FILE).read_text())
    assert list(metadata["signatures"]["serving_default"]["outputs"]) == ["class_map"]


def test_failed_export_leaves_nothing(model, tmp_path, monkeypatch):
    def broken_save(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(tf.saved_model, "save", broken_save)
    with pytest.raises(RuntimeError, match="disk full"):
        export_saved_model(model, tmp_path / "serving", version=3)
    assert list((tmp_path / "serving").iterdir()) == []

    (tmp_path / "serving" / "3").mkdir()
    (tmp_path / "serving" / "3" / "old.txt").write_text("old")
    with pytest.raises(RuntimeError, match="disk full"):
        export_saved_model(model, tmp_path / "serving", version=3, overwrite=True)
    assert sorted(p.name for p in (tmp_path / "serving").iterdir()) == ["3"]
    assert (tmp_path / "serving" / "3" / "old.txt").read_text() == "old"


@pytest.mark.parametrize("version", [-1, True, "1", 1.0])
def test_bad_versions(model, tmp_path, version):
    with pytest.raises((TypeError, ValueError), match="version must be"):
        export_saved_model(model, tmp_path, version=version)
    assert list(tmp_path.iterdir()) == []


def test_class_names_must_match(model, tmp_path):
    with pytest.raises(ValueError, match="2 class names given, but the model predicts 5"):
        export_saved_model(model, tmp_path, classes=["a", "b"])


def test_serving_functions(model, images):
    """In process: signature outputs, probabilities left out on request, XLA only when asked."""
    plain = SemanticExportModule(model, include_probabilities=False)
    assert set(plain.serving_default.get_concrete_function().structured_outputs) == {"class_map"}
    jitted = SemanticExportModule(model, xla=True)
    graph = jitted.serving_default.get_concrete_function().graph.as_graph_def()
    assert any(f.attr["_XlaMustCompile"].b for f in graph.library.function)
    out = jitted.serving_default(tf.constant(images[:1, :33, :47]))
    expected = keras_outputs(model, images[:1, :33, :47])
    np.testing.assert_allclose(out["probabilities"], expected["probabilities"], atol=1e-5, rtol=1e-5)


def load_tool():
    spec = importlib.util.spec_from_file_location("export_tool", REPO / "tools" / "export.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tool(model, tmp_path, monkeypatch, capsys):
    import kseg

    tool = load_tool()
    calls = []

    def get(name, weights=None, num_classes=None, **options):
        calls.append((name, weights, num_classes))
        return model

    monkeypatch.setattr(kseg.models, "get", get)
    out = tmp_path / "fcn_resnet50_ade"
    flag_values = flags.FlagValues()
    tool.define_flags(flag_values)
    flag_values(["export", "--model", "fcn_resnet50_ade", "--weights", "none", "--num-classes", "5", "--out", str(out)])
    assert tool.main(["export"], flag_values) == 0
    assert calls == [("fcn_resnet50_ade", "none", 5)]
    printed = capsys.readouterr().out
    assert f"wrote {out / '1'}: tiny_psp (random weights), 5 classes" in printed
    assert f"saved_model_cli show --dir {(out / '1').resolve()} --all" in printed
    assert f"-v {out.resolve()}:/models/tiny_psp -e MODEL_NAME=tiny_psp tensorflow/serving" in printed
    classes = json.loads((out / "1" / "assets" / METADATA_FILE).read_text())["classes"]
    assert classes == [f"class_{i}" for i in range(5)]  # the model's own, not the zoo's 150
    # A second run refuses to overwrite, before building anything.
    assert tool.main(["export"], flag_values) == 1
    assert "already exists" in capsys.readouterr().err and len(calls) == 1


def test_tool_usage_errors(tmp_path):
    tool = load_tool()
    flag_values = flags.FlagValues()
    tool.define_flags(flag_values)
    flag_values(["export", "--model", "fcn_resnet50_ade"])
    assert tool.main(["export"], flag_values) == 2
    with pytest.raises(ValueError, match="Did you mean: fcn_resnet50_ade"):
        tool.export("fcn_resnet50_adee", "none", tmp_path)
    with pytest.raises(FileNotFoundError, match="--weights: no file"):
        tool.export("fcn_resnet50_ade", str(tmp_path / "missing.weights.h5"), tmp_path)


def test_metadata_of_first_format_exports_is_read(tmp_path):
    """SavedModels exported before the shared schema ("kseg-saved-model/1", semantic only) still read."""
    (tmp_path / "assets").mkdir()
    old = {"format": "kseg-saved-model/1", "model": "psp_resnet101_ade", "num_classes": 150, "classes": None,
           "input": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}, "signatures": {}}
    (tmp_path / "assets" / METADATA_FILE).write_text(json.dumps(old))
    metadata = read_metadata(tmp_path)
    assert metadata["task"] == "semantic_segmentation" and metadata["num_classes"] == 150


def test_export_refuses_a_model_of_another_task(tmp_path):
    backbone = ResNetV1Backbone(18, "v1b", base_width=8)
    with pytest.raises(ValueError, match="exports semantic_segmentation, instance_segmentation"):
        export_saved_model(kseg_backbone_with_metadata(backbone), tmp_path)
    assert list(tmp_path.iterdir()) == []


def kseg_backbone_with_metadata(backbone):
    from kseg.presets import BACKBONE, ModelMetadata, Preprocessing

    backbone.metadata = ModelMetadata(BACKBONE, (), Preprocessing())
    return backbone
