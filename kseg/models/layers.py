"""Small Keras layers and builders shared by the backbones and heads.

MXNet pads convolutions and pools symmetrically; Keras' ``"same"`` puts the odd
pixel at the bottom/right for strided windows. These builders pad explicitly
whenever the two would differ.
"""

import contextlib

import keras
import tensorflow as tf

from kseg.ops import adaptive_average_pool2d, resize_like
from kseg.ops.conv import conv2d_1x1, conv2d_1x1_into, conv2d_3x3, fast_convolutions_enabled, kernel_after
from kseg.ops.runtime import inside_xla

BN_EPSILON = 1e-5  # MXNet's BatchNorm default
BN_MOMENTUM = 0.9  # MXNet and Keras share this convention


@contextlib.contextmanager
def dtype_policy_scope(dtype):
    """Build layers under the dtype policy ``dtype`` (a name or policy; None: the global one).

    A functional model's layers take the policy in force when they are made,
    so a model rebuilt from its config (``from_config``, ``.keras``) is built
    under the policy it recorded, whatever the global policy is then.
    """
    if dtype is None:
        yield
        return
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(keras.dtype_policies.get(dtype))
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def policy_name(layer):
    """The name of ``layer``'s dtype policy, for configs (``float32``, ``mixed_bfloat16``)."""
    return layer.dtype_policy.name


@keras.saving.register_keras_serializable(package="kseg")
class ResizeLike(keras.layers.Layer):
    """Bilinearly resize ``inputs[0]`` (align_corners) to the size of ``inputs[1]``; at CPU inference on static
    shapes, in one XLA-fused pass (:func:`kseg.ops.resize_like`)."""

    def call(self, inputs, training=None):
        images, reference = inputs
        return resize_like(images, reference, compiled=not training and fast_convolutions_enabled())

    def compute_output_shape(self, input_shapes):
        images, reference = input_shapes
        return (images[0], reference[1], reference[2], images[3])


@keras.saving.register_keras_serializable(package="kseg")
class After(keras.layers.Layer):
    """``inputs[0]``, passed on once ``inputs[1]`` has been computed, at CPU inference.

    Where kseg's fast convolutions run, branches that read one large map (DeepLab's ASPP) would otherwise
    run side by side on TensorFlow's inter-op threads, each holding its working set; chained by this layer
    they run one after another (deeplab_resnet101 at Cityscapes' 1024x2048, 2 threads: the first call's peak
    2245-2395 MiB before, 2170-2199 after).
    Elsewhere (training, export, GPUs) it is the identity without the ordering.
    """

    def call(self, inputs, training=None):
        value, predecessor = inputs
        if training or not fast_convolutions_enabled():
            return value
        with tf.control_dependencies([predecessor]):
            return tf.identity(value)

    def compute_output_shape(self, input_shapes):
        return input_shapes[0]


@keras.saving.register_keras_serializable(package="kseg")
class ResidualAdd(keras.layers.Add):
    """Keras' ``Add`` of a residual block's last convolution and its shortcut (in that order).

    At float32 CPU inference, where that convolution is a kseg 1x1 one (its BatchNormalization folded in), the
    sum is :func:`kseg.ops.conv.conv2d_1x1_into`: on large maps its product goes into the shortcut's buffer a
    block of rows at a time, and neither the whole product nor a new sum is held (fcn_resnet101 at 1024x2048:
    the 268 MB of layer4's). The shortcut is overwritten: nothing else may read it after the block (a ResNet's
    shortcut is read only by the block's first convolution, before). Elsewhere it is Keras' ``Add``.

    Example:

    >>> a, b = keras.Input((8, 8, 4)), keras.Input((8, 8, 4))
    >>> ResidualAdd(name="add")([a, b]).shape
    (None, 8, 8, 4)
    """

    def call(self, inputs, training=None):
        source = getattr(inputs[0], "_kseg_product", None) if len(inputs) == 2 else None
        if source is None or training:
            return super().call(inputs)
        return conv2d_1x1_into(inputs[1], *source, product=inputs[0])


@keras.saving.register_keras_serializable(package="kseg")
class AdaptiveAveragePooling2D(keras.layers.Layer):
    """Average pooling to a fixed number of bins, with MXNet's bin edges."""

    def __init__(self, output_size, **kwargs):
        super().__init__(**kwargs)
        if isinstance(output_size, int):
            output_size = (output_size, output_size)
        self.output_size = tuple(int(s) for s in output_size)

    def call(self, inputs):
        return adaptive_average_pool2d(inputs, self.output_size)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self.output_size, input_shape[3])

    def get_config(self):
        return {**super().get_config(), "output_size": self.output_size}


@keras.saving.register_keras_serializable(package="kseg")
class PaddedMaxPooling2D(keras.layers.Layer):
    """Max pooling with symmetric padding by ``-inf`` (MXNet ``MaxPool2D``, floor mode).

    At CPU inference, where kseg's fast convolutions run, TensorFlow's pool pads by itself. Elsewhere (training,
    export, XLA, GPUs) the map is padded first: where the padding is at most half the window (ResNet's 3x3/2 pool,
    padding 1), every window that reaches a padded cell also holds the real cell that cell mirrors, so mirror
    padding gives the very same maxima. It is used there: ``-inf`` would become the range of an int8 LiteRT
    model's quantised pool.
    """

    def __init__(self, pool_size=3, strides=2, padding=1, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = int(pool_size)
        self.strides = int(strides)
        self.padding = int(padding)

    def call(self, inputs, training=None):
        p = self.padding
        if p and not training and fast_convolutions_enabled() and not inside_xla():
            # TensorFlow's CPU pool pads by -inf itself: no padded copy of the map (the stem's, at 1024x2048, is
            # 270 MB) and twice as fast (240x240x128: 3.0 ms against 5.8-7.6). XLA has no such pool.
            return tf.nn.max_pool2d(inputs, self.pool_size, self.strides, [[0, 0], [p, p], [p, p], [0, 0]])
        if p and 2 * p <= self.pool_size:
            inputs = tf.pad(inputs, [[0, 0], [p, p], [p, p], [0, 0]], mode="SYMMETRIC")
        elif p:
            lowest = tf.constant(float("-inf"), inputs.dtype)
            inputs = tf.pad(inputs, [[0, 0], [p, p], [p, p], [0, 0]], constant_values=lowest)
        return tf.nn.max_pool2d(inputs, self.pool_size, self.strides, "VALID")

    def compute_output_shape(self, input_shape):
        def out(n):
            if n is None:
                return None
            return (n + 2 * self.padding - self.pool_size) // self.strides + 1

        return (input_shape[0], out(input_shape[1]), out(input_shape[2]), input_shape[3])

    def get_config(self):
        return {
            **super().get_config(),
            "pool_size": self.pool_size,
            "strides": self.strides,
            "padding": self.padding,
        }


@keras.saving.register_keras_serializable(package="kseg")
class Conv2D(keras.layers.Conv2D):
    """Keras' ``Conv2D`` whose float32 and bfloat16 inference on a CPU takes kseg's fast forms
    (:mod:`kseg.ops.conv`): 3x3 stride-1 convolutions :func:`~kseg.ops.conv.conv2d_3x3`, float32 1x1 ones
    :func:`~kseg.ops.conv.conv2d_1x1` (a matrix multiply). At float32 inference in a graph its output
    carries a mark by which a kseg :class:`BatchNormalization` reading it folds itself in.

    The same weights and configuration; training, other dtypes, GPUs, TPUs and
    distribution strategies keep Keras' own convolution.
    """

    def _fast_form(self, training):
        """``"3x3"``, ``"1x1"`` or None: which of kseg's fast convolutions this call takes."""
        if (
            training
            or self.groups != 1
            or self.data_format != "channels_last"
            or self.compute_dtype not in ("float32", "bfloat16")
            or not fast_convolutions_enabled()
        ):
            return None
        if (
            self.kernel_size == (3, 3)
            and self.strides == (1, 1)
            and self.padding == "same"
            and self.dilation_rate[0] == self.dilation_rate[1]
        ):
            return "3x3"
        if (
            self.kernel_size == (1, 1)
            and self.strides[0] == self.strides[1]
            and self.padding == "valid"
            and self.compute_dtype == "float32"
        ):
            return "1x1"
        return None

    def _convolve(self, inputs, kernel, training):
        form = self._fast_form(training)
        if form == "3x3":
            return conv2d_3x3(inputs, kernel, self.dilation_rate[0])
        if form == "1x1":
            return conv2d_1x1(inputs, kernel, self.strides[0])
        return self.convolution_op(inputs, kernel)

    def _inference(self, inputs, kernel, bias, scale=None):
        """The fast path: ``inputs`` convolved with ``kernel``, times ``scale`` (None: 1), plus ``bias`` (None: 0),
        per output channel. The 3x3 form scales in Winograd's output transform; the others scale the kernel."""
        form = self._fast_form(False)
        if form == "3x3":
            return conv2d_3x3(inputs, kernel, self.dilation_rate[0], scale, bias)
        if scale is not None:
            kernel = kernel_after(inputs, kernel, scale)
        if form == "1x1":
            outputs = conv2d_1x1(inputs, kernel, self.strides[0], bias)
            if self.strides == (1, 1) and not tf.executing_eagerly():
                outputs._kseg_product = (inputs, kernel, bias)  # for a ResidualAdd reading it
            return outputs
        outputs = self._convolve(inputs, kernel, training=False)
        return outputs if bias is None else tf.nn.bias_add(outputs, bias)

    def _takes_own_path(self, training):
        """kseg's fast forms, or at float32 inference any convolution: a BatchNormalization may fold into it."""
        if self._fast_form(training) is not None:
            return True
        return not training and self.compute_dtype == "float32" and self.groups == 1 and fast_convolutions_enabled()

    def call(self, inputs, training=None):
        if not self._takes_own_path(training):
            return super().call(inputs)
        return self._fast_call(inputs)

    def _fast_call(self, inputs):
        outputs = self._inference(inputs, self.kernel, self.bias if self.use_bias else None)
        if self.activation is not keras.activations.linear:
            return self.activation(outputs)
        if self.compute_dtype == "float32" and not tf.executing_eagerly():
            # A BatchNormalization reading this output at inference may fold itself into this convolution
            # (BatchNormalization.call); the unfolded ops then feed nothing and the graph prunes them.
            outputs._kseg_convolution = (self, inputs)
        return outputs

    def folded(self, inputs, scale, offset):
        """This convolution of ``inputs`` followed by ``y * scale + offset`` per output channel, done as one
        convolution: scaled (its kernel, or its Winograd output), the bias ``offset`` (plus its own, scaled)."""
        bias = offset + self.bias * scale if self.use_bias else offset
        return self._inference(inputs, self.kernel, bias, scale)


def _concatenated_shape(input_shapes):
    if not isinstance(input_shapes[0], (list, tuple)):  # one shape: Conv2D's own checks pass it on
        return tuple(input_shapes)
    channels = [shape[-1] for shape in input_shapes]
    return (*input_shapes[0][:-1], None if None in channels else sum(channels))


@keras.saving.register_keras_serializable(package="kseg")
class ConcatConv2D(Conv2D):
    """kseg's ``Conv2D`` of the channel concatenation of its inputs (a list), with that convolution's
    weights and config.

    At float32 inference on a CPU (where kseg's fast convolutions run) the concatenation is never made:
    convolution is linear in the input channels, so each input meets its own rows of the kernel and the
    products are summed one input at a time, the next product waiting for the sum so far. DeepLab's ASPP
    concatenates five 256-channel maps before its 1x1 projection, PSPNet ``c5`` and four pooled maps (4096
    channels) before its 3x3 block: at Cityscapes' 1024x2048 those copies are 168 and 537 MiB (DeepLab's
    first-call peak: 2426 MiB with it, 2245-2395 without; PSPNet's peak is its 150-class logits and did not
    move). Elsewhere (training, bfloat16, export, GPUs) it concatenates and convolves, as Keras would, with
    one rounding.

    Example:

    >>> a, b = keras.Input((8, 8, 3)), keras.Input((8, 8, 5))
    >>> ConcatConv2D(4, 1, name="project")([a, b]).shape
    (None, 8, 8, 4)
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.input_spec = None  # Conv2D's spec describes one input; the kernel's shape checks the channels

    def build(self, input_shape):
        super().build(_concatenated_shape(input_shape))
        self.input_spec = None

    def compute_output_shape(self, input_shape):
        return super().compute_output_shape(_concatenated_shape(input_shape))

    def _sums_inputs(self, training):
        return not training and self.compute_dtype == "float32" and fast_convolutions_enabled()

    def _inference(self, inputs, kernel, bias, scale=None):
        if not isinstance(inputs, (list, tuple)):  # bfloat16: Conv2D's call of the concatenation
            return super()._inference(inputs, kernel, bias, scale)
        # A BatchNormalization's scale goes where it costs less: on the kernel or on the summed output.
        pixels = inputs[0].shape[1:-1].num_elements()
        scale_kernel = scale is not None and (pixels is None or kernel.shape.num_elements() <= pixels * self.filters)
        if scale_kernel:
            kernel = kernel_after(inputs[0], kernel, scale)
        kernels = tf.split(kernel, [x.shape[-1] for x in inputs], axis=2)
        outputs = None
        for x, part_kernel in zip(inputs, kernels, strict=True):
            with tf.control_dependencies([] if outputs is None else [outputs]):
                part = self._convolve(x, part_kernel, training=False)
            outputs = part if outputs is None else outputs + part
        if scale is not None and not scale_kernel:
            outputs = outputs * scale
        return outputs if bias is None else tf.nn.bias_add(outputs, bias)

    def call(self, inputs, training=None):
        inputs = list(inputs)
        if not self._sums_inputs(training):
            return super().call(tf.concat(inputs, axis=-1), training=training)
        return self._fast_call(inputs)


@keras.saving.register_keras_serializable(package="kseg")
class Conv2DTranspose(keras.layers.Conv2DTranspose):
    """Keras' ``Conv2DTranspose``; when the kernel equals the stride (the mask heads' 2x2/2), as one matmul.

    Such windows never overlap, so the transposed convolution is a 1x1
    convolution to ``k * k * filters`` channels followed by ``depth_to_space``:
    the same products, but TF's CPU kernel for the general case is about 6x
    slower than the matmul. Same weights (``[k, k, filters, in]``) and config.
    """

    def _is_pixel_shuffle(self):
        k = self.kernel_size[0]
        return (
            self.kernel_size == (k, k)
            and self.strides == (k, k)
            and self.padding == "valid"
            and self.output_padding is None
            and self.dilation_rate == (1, 1)
            and self.data_format == "channels_last"
        )

    def call(self, inputs):
        if not self._is_pixel_shuffle():
            return super().call(inputs)
        k, filters = self.kernel_size[0], self.filters
        kernel = tf.cast(self.kernel, self.compute_dtype)
        # [k, k, out, in] -> [in, (dy * k + dx) * out + o]: depth_to_space's channel order.
        weights = tf.reshape(tf.transpose(kernel, [3, 0, 1, 2]), [-1, k * k * filters])
        outputs = tf.nn.depth_to_space(tf.einsum("bhwc,cd->bhwd", inputs, weights), k)
        if self.use_bias:
            outputs = tf.nn.bias_add(outputs, tf.cast(self.bias, self.compute_dtype))
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs


@keras.saving.register_keras_serializable(package="kseg")
class BatchNormalization(keras.layers.BatchNormalization):
    """Keras' ``BatchNormalization`` that, at float32 CPU inference, folds itself into the kseg ``Conv2D`` whose
    output it normalises.

    At inference the normalisation is ``y * scale + offset`` per channel, which the convolution can do itself
    with its kernel scaled (a Winograd 3x3: its output transform scaled) and a bias: the two elementwise passes
    over the map go (TensorFlow fuses the bias, and a ReLU after it, into the matrix multiply). It folds only
    when its input is that convolution's output in the graph being traced (kseg's Conv2D marks it); otherwise,
    and in training, it is Keras' layer. The same weights and config.

    Example:

    >>> x = keras.Input((8, 8, 3))
    >>> BatchNormalization(name="bn")(Conv2D(4, 1, use_bias=False, name="conv")(x)).shape
    (None, 8, 8, 4)
    """

    def call(self, inputs, training=None, mask=None):
        source = getattr(inputs, "_kseg_convolution", None)
        if (
            source is None
            or (training and self.trainable)
            or mask is not None
            or self.compute_dtype != "float32"
            or self.axis not in (-1, len(inputs.shape) - 1)
        ):
            return super().call(inputs, training=training, mask=mask)
        convolution, convolution_inputs = source
        scale = tf.math.rsqrt(tf.convert_to_tensor(self.moving_variance) + self.epsilon)
        if self.scale:
            scale = scale * self.gamma
        offset = -tf.convert_to_tensor(self.moving_mean) * scale
        if self.center:
            offset = offset + self.beta
        return convolution.folded(convolution_inputs, scale, offset)


def conv2d(x, filters, kernel_size, name, strides=1, dilation=1, use_bias=False):
    """A convolution padded as MXNet's ``Conv2D(padding=dilation*(k-1)//2)``; of a list of tensors, of
    their channel concatenation (:class:`ConcatConv2D`, which need not make it)."""
    pad = dilation * (kernel_size - 1) // 2
    concatenated = isinstance(x, (list, tuple))
    if concatenated and strides > 1 and pad:
        raise ValueError(f"{name}: a padded strided convolution of a list of tensors is not supported")
    if strides > 1 and pad:
        x = keras.layers.ZeroPadding2D(pad, name=f"{name}_pad")(x)
        padding = "valid"
    else:
        # Stride 1 with an odd kernel: "same" pads symmetrically.
        padding = "same" if pad else "valid"
    return (ConcatConv2D if concatenated else Conv2D)(
        filters,
        kernel_size,
        strides=strides,
        dilation_rate=dilation,
        padding=padding,
        use_bias=use_bias,
        name=name,
    )(x)


def batch_norm(x, name, sync=False):
    return BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, synchronized=sync, name=name)(x)


def relu(x, name):
    return keras.layers.ReLU(name=name)(x)


def conv_bn_relu(x, filters, kernel_size, name, strides=1, dilation=1, sync_bn=False):
    """Conv (no bias), BN, ReLU: the unit every GluonCV head is made of (of a list: of its concatenation)."""
    x = conv2d(x, filters, kernel_size, f"{name}_conv", strides=strides, dilation=dilation)
    x = batch_norm(x, f"{name}_bn", sync=sync_bn)
    return relu(x, f"{name}_relu")
