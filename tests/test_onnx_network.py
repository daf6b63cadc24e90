"""The CPU twin follows TensorRT's documented semantics for each call the builder makes."""

import numpy as np
import pytest

from jetson_detect.backends import onnx_network as trt
from jetson_detect.backends.onnxruntime_backend import OnnxRuntimeEngine
from jetson_detect.errors import JetsonDetectError


def run(network, x):
    return OnnxRuntimeEngine(network, threads=1).run_graph(x)


def network_with_input(shape):
    net = trt.OnnxNetwork()
    return net, net.add_input("images", trt.float32, shape)


def test_convolution_uses_gkcrs_weights_stride_and_symmetric_padding():
    net, x = network_with_input((1, 2, 5, 5))
    w = np.arange(3 * 2 * 3 * 3, dtype=np.float32).reshape(3, 2, 3, 3) / 10
    b = np.array([1, 2, 3], np.float32)
    conv = net.add_convolution_nd(x, 3, (3, 3), w.reshape(-1), b)
    conv.stride_nd, conv.padding_nd = (2, 2), (1, 1)
    y = conv.get_output(0)
    y.name = "y"
    net.mark_output(y)
    assert y.shape == (1, 3, 3, 3)
    data = np.random.default_rng(0).normal(size=(1, 2, 5, 5)).astype(np.float32)
    padded = np.pad(data[0], ((0, 0), (1, 1), (1, 1)))
    expected = np.zeros((3, 3, 3), np.float32)
    for o in range(3):
        for i in range(3):
            for j in range(3):
                expected[o, i, j] = (padded[:, 2 * i:2 * i + 3, 2 * j:2 * j + 3] * w[o]).sum() + b[o]
    assert np.allclose(run(net, data)["y"][0], expected, atol=1e-5)


def test_max_pool_padding_counts_as_minus_infinity():
    net, x = network_with_input((1, 1, 3, 3))
    pool = net.add_pooling_nd(x, trt.PoolingType.MAX, (3, 3))
    pool.stride_nd, pool.padding_nd = (1, 1), (1, 1)
    pool.get_output(0).name = "y"
    net.mark_output(pool.get_output(0))
    data = -np.arange(1, 10, dtype=np.float32).reshape(1, 1, 3, 3)
    out = run(net, data)["y"]
    assert out.shape == (1, 1, 3, 3) and out.max() < 0  # a zero pad would have won every window
    assert out[0, 0, 0, 0] == -1.0


def test_nearest_resize_by_scales_repeats_pixels():
    net, x = network_with_input((1, 1, 2, 3))
    resize = net.add_resize(x)
    resize.resize_mode = trt.InterpolationMode.NEAREST
    resize.scales = [1.0, 1.0, 2.0, 2.0]
    resize.get_output(0).name = "y"
    net.mark_output(resize.get_output(0))
    data = np.arange(6, dtype=np.float32).reshape(1, 1, 2, 3)
    assert np.array_equal(run(net, data)["y"], data.repeat(2, axis=2).repeat(2, axis=3))


def test_concatenation_defaults_to_the_channel_axis():
    net, x = network_with_input((1, 2, 2, 2))
    cat = net.add_concatenation([x, x])
    assert cat.axis == 1
    assert cat.get_output(0).shape == (1, 4, 2, 2)


def test_slice_takes_start_shape_and_stride():
    net, x = network_with_input((1, 6, 2, 2))
    piece = net.add_slice(x, (0, 1, 0, 0), (1, 2, 2, 2), (1, 2, 1, 1))
    piece.get_output(0).name = "y"
    net.mark_output(piece.get_output(0))
    data = np.arange(24, dtype=np.float32).reshape(1, 6, 2, 2)
    assert np.array_equal(run(net, data)["y"], data[:, 1:5:2])


def test_properties_set_after_adding_a_layer_change_downstream_shapes():
    net, x = network_with_input((1, 3, 8, 8))
    conv = net.add_convolution_nd(x, 4, (3, 3), np.zeros(4 * 3 * 9, np.float32), None)
    act = net.add_activation(conv.get_output(0), trt.ActivationType.SIGMOID)
    assert act.get_output(0).shape == (1, 4, 6, 6)
    conv.padding_nd = (1, 1)
    conv.stride_nd = (2, 2)
    assert act.get_output(0).shape == (1, 4, 4, 4)


def test_wrong_kernel_size_is_reported_with_the_layer():
    net, x = network_with_input((1, 3, 8, 8))
    conv = net.add_convolution_nd(x, 4, (3, 3), np.zeros(10, np.float32), None)
    conv.name = "model.0.conv"
    net.mark_output(conv.get_output(0))
    with pytest.raises(JetsonDetectError, match="layer 'model.0.conv': kernel has 10 values, expected 108"):
        net.to_onnx()


def test_the_plugin_registry_knows_yolo_decode_nms_by_tensorrt_10_lookup():
    creator = trt.get_plugin_registry().get_creator("YoloDecodeNMS", "1", "")
    assert creator is not None and creator.name == "YoloDecodeNMS"
