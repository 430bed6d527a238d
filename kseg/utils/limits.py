"""Size limits shared by the library and the commands (plain constants: ``--help`` needs no TensorFlow)."""

# The largest image predicted at once by default: a ResNet-101 model takes about 2.3 GB a megapixel in float32.
PREDICT_MAX_PIXELS = 2048 * 2048
