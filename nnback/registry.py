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
}

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
