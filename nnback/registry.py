"""YAML ``type:`` names -> classes and functions: adding a layer, loss, optimizer or
schedule is one definition plus one line here."""

from nnback import layers, losses, optim, schedules

LAYERS = {
    "linear": layers.Linear,
    "relu": layers.ReLU,
    "leaky_relu": layers.LeakyReLU,
    "sigmoid": layers.Sigmoid,
    "tanh": layers.Tanh,
    "gelu": layers.GELU,
    "softplus": layers.Softplus,
    "dropout": layers.Dropout,
    "batchnorm": layers.BatchNorm1d,
    "layernorm": layers.LayerNorm,
    "conv2d": layers.Conv2d,
    "maxpool2d": layers.MaxPool2d,
    "avgpool2d": layers.AvgPool2d,
    "global_avgpool2d": layers.GlobalAvgPool2d,
    "flatten": layers.Flatten,
    "batchnorm2d": layers.BatchNorm2d,
}

# Layers that work on images (N, C, H, W): a network with one of them gets data with
# an image shape as images, others get flat feature rows.
IMAGE_LAYERS = {"conv2d", "maxpool2d", "avgpool2d", "global_avgpool2d", "flatten", "batchnorm2d"}

# YAML option names that differ from the engine's argument names.
LAYER_ARGUMENTS = {"channels": "out_channels", "kernel": "kernel_size"}

LOSSES = {
    "softmax_cross_entropy": losses.SoftmaxCrossEntropy,
    "mse": losses.MSE,
    "hinge": losses.Hinge,
    "bce_with_logits": losses.BCEWithLogits,
}

OPTIMIZERS = {
    "sgd": optim.SGD,
    "adam": optim.Adam,
    "adamw": optim.AdamW,
    "rmsprop": optim.RMSprop,
}

SCHEDULES = schedules.SCHEDULES
