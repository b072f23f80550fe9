"""YAML names -> engine classes and functions, read from their ``spec`` (see ``nnback.spec``).

A layer, loss or optimizer class is listed here as soon as it declares a ``spec`` of
its own and its module is imported (``nnback.layers`` imports every layer module);
nothing here needs editing to add one. Schedules and initialisers are functions, listed
in ``nnback.schedules.SCHEDULES`` and ``nnback.init.INITIALIZERS``. Every table is in
alphabetical order of the names (the order of the choices in config errors).
"""

from nnback import init, layers, losses, optim, schedules


def _named(classes) -> dict:
    """``{spec.name: class}`` for the classes that declare their own ``spec``, by name."""
    return _sorted({cls.spec.name: cls for cls in classes if "spec" in vars(cls)})


def _sorted(named: dict) -> dict:
    return dict(sorted(named.items()))


def _descendants(base) -> list[type]:
    """Every subclass of ``base``, however indirect."""
    direct = base.__subclasses__()
    return direct + [cls for sub in direct for cls in _descendants(sub)]


def _loss_classes() -> list[type]:
    return [obj for obj in vars(losses).values() if isinstance(obj, type)]


LAYERS = _named(_descendants(layers.Layer))
LOSSES = _named(_loss_classes())
OPTIMIZERS = _named(_descendants(optim.Optimizer))
SCHEDULES = _sorted(schedules.SCHEDULES)
INITIALIZERS = _sorted(init.INITIALIZERS)
