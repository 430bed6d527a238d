"""kseg.export.export_litert and ``kseg export --format tflite``: LiteRT files of a tiny model, run by
``ai-edge-litert``'s interpreter and compared with the Keras model."""

import json

import numpy as np
import pytest
import tensorflow as tf
from absl import flags
from test_export import REAL_IMAGES, SIZE, sample_image, tiny_model

from kseg.cli import export as export_command
from kseg.data.preprocessing import load_image, normalize_image
from kseg.export import LITERT_FORMAT, convert_litert, export_litert, read_litert_metadata

litert = pytest.importorskip("ai_edge_litert.interpreter", reason="ai-edge-litert is not installed")

BATCH = 2


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def images():
    image = sample_image()
    return np.stack([image, image[::-1]])


@pytest.fixture(scope="module")
def keras_probabilities(model, images):
    return tf.nn.softmax(model(normalize_image(images), training=False)["logits"]).numpy()


def calibration_set():
    """The real photos (of other sizes: resized on the way) when the shared data are here; else noise."""
    photos = sorted(REAL_IMAGES.glob("*.jpg"))[:4]
    if photos:
        return photos
    rng = np.random.default_rng(1)
    return [rng.integers(0, 256, (60, 80, 3), dtype=np.uint8) for _ in range(4)]


def run_litert(blob_or_path, images):
    source = {"model_content": blob_or_path} if isinstance(blob_or_path, bytes) else {"model_path": str(blob_or_path)}
    runner = litert.Interpreter(**source).get_signature_runner()
    return runner(images=images)


def decisive(probabilities, margin):
    """Pixels whose two best classes differ by more than ``margin`` (their argmax cannot flip by rounding)."""
    top = np.sort(probabilities, axis=-1)
    return top[..., -1] - top[..., -2] > margin


@pytest.fixture(scope="module")
def float32_file(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("litert") / "tiny_psp.tflite"
    return export_litert(model, path, input_size=SIZE, batch_size=BATCH, classes=("a", "b", "c", "d", "e"))


def test_float32_matches_keras(float32_file, images, keras_probabilities):
    outputs = run_litert(float32_file, images)
    assert outputs["class_map"].shape == (BATCH, *SIZE) and outputs["class_map"].dtype == np.int32
    error = np.abs(outputs["probabilities"] - keras_probabilities).max() / np.abs(keras_probabilities).max()
    assert error < 1e-5, error
    sure = decisive(keras_probabilities, 1e-4)
    np.testing.assert_array_equal(outputs["class_map"][sure], keras_probabilities.argmax(-1)[sure])


def test_metadata_beside_the_file(float32_file):
    metadata = read_litert_metadata(float32_file)
    assert float32_file.with_suffix(".json").is_file()
    assert metadata["format"] == LITERT_FORMAT and metadata["quantization"] == "float32"
    assert metadata["classes"] == ["a", "b", "c", "d", "e"] and metadata["num_classes"] == 5
    assert metadata["input"]["shape"] == [BATCH, *SIZE, 3] and metadata["input"]["dtype"] == "uint8"
    assert metadata["outputs"]["probabilities"]["shape"] == [BATCH, *SIZE, 5]
    assert metadata["preprocessing"]["mean"] == [0.485, 0.456, 0.406]


@pytest.mark.parametrize("quantization", ["float16", "int8"])
def test_quantized_files(model, images, keras_probabilities, float32_file, quantization):
    blob = convert_litert(model, SIZE, quantization, calibration_images=calibration_set(), batch_size=BATCH)
    assert len(blob) < 0.6 * float32_file.stat().st_size  # float16 halves the weights, int8 quarters them
    outputs = run_litert(blob, images)
    agreement = np.mean(outputs["class_map"] == keras_probabilities.argmax(-1))
    error = np.abs(outputs["probabilities"] - keras_probabilities).max()
    print(f"{quantization}: pixel agreement with float32 {agreement:.4f}, largest probability error {error:.2e}")
    if quantization == "float16":
        assert error < 1e-2 and agreement > 0.99
    else:  # a random tiny net's logits are close together: the share stated is the random net's, not a zoo model's
        assert error < 0.1 and agreement > 0.85


def test_refusals(model, tmp_path, float32_file):
    with pytest.raises(ValueError, match="int8 quantization needs calibration_images"):
        convert_litert(model, SIZE, "int8")
    with pytest.raises(ValueError, match="quantization must be one of float32, float16, int8"):
        convert_litert(model, SIZE, "int4")
    with pytest.raises(ValueError, match="input_size sides must be 1..4096"):
        convert_litert(model, (0, 61))
    with pytest.raises(ValueError, match="calibration images must be uint8"):
        convert_litert(model, SIZE, "int8", calibration_images=[np.zeros((8, 8), np.uint8)])
    with pytest.raises(ValueError, match=r"named \*.tflite"):
        export_litert(model, tmp_path / "model.lite")
    with pytest.raises(FileExistsError, match="already exists"):
        export_litert(model, float32_file, input_size=SIZE)


def test_failed_conversion_leaves_nothing(model, tmp_path, monkeypatch):
    def fail(self):
        raise RuntimeError("converter crashed")

    monkeypatch.setattr(tf.lite.TFLiteConverter, "convert", fail)
    with pytest.raises(RuntimeError, match="converter crashed"):
        export_litert(model, tmp_path / "tiny.tflite", input_size=SIZE)
    assert list(tmp_path.iterdir()) == []


def test_refuses_instance_models():
    from kseg.presets import INSTANCE, ModelMetadata, Preprocessing

    class Detector:
        name = "detector"
        metadata = ModelMetadata(INSTANCE, ("person",), Preprocessing())

    with pytest.raises(ValueError, match="LiteRT export covers semantic segmentation models"):
        convert_litert(Detector())


def command(argv):
    flag_values = flags.FlagValues()
    export_command.define_flags(flag_values)
    remaining = flag_values(["kseg export", *argv])
    return export_command.main(remaining, flag_values)


def test_command_writes_an_int8_file(model, tmp_path, monkeypatch, capsys):
    import kseg

    monkeypatch.setattr(kseg.models, "get", lambda name, **options: model)
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, image in enumerate(calibration_set()):
        pixels = load_image(image) if not isinstance(image, np.ndarray) else image
        tf.io.write_file(str(photos / f"{i}.png"), tf.io.encode_png(pixels))
    out = tmp_path / "tiny_int8.tflite"
    argv = ["--model=fcn_resnet50_ade", "--weights=none", "--format=tflite", "--quantization=int8",
            f"--calibration-images={photos}", f"--input-size={SIZE[0]}x{SIZE[1]}", "--noprobabilities", f"--out={out}"]
    assert command(argv) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "int8" in printed
    metadata = json.loads(out.with_suffix(".json").read_text())
    assert metadata["quantization"] == "int8" and list(metadata["outputs"]) == ["class_map"]
    outputs = run_litert(out, sample_image()[None])
    assert set(outputs) == {"class_map"} and outputs["class_map"].shape == (1, *SIZE)


@pytest.mark.parametrize(
    ("argv", "message", "status"),
    [
        (["--quantization=int8"], "--quantization=int8 needs --calibration-images", 1),
        (["--calibration-images=photos"], "--calibration-images applies to --format=tflite", 2),
        (["--format=tflite", "--xla"], "--xla, --version and --precision apply to SavedModels", 2),
        (["--format=tflite", "--input-size=12y4"], "--input-size: expected HEIGHTxWIDTH", 1),
        (["--format=tflite", "--quantization=int8", "--calibration-images=/nonexistent/*.jpg"], "no images in", 1),
    ],
)
def test_command_usage_errors(tmp_path, capsys, argv, message, status):
    if "--quantization=int8" in argv and not any(a.startswith("--format") for a in argv):
        argv = ["--format=tflite", *argv]
    assert command(["--model=fcn_resnet50_ade", "--weights=none", f"--out={tmp_path / 'm.tflite'}", *argv]) == status
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
