"""Argument checks shared by the keras_rnn layers, with errors that name the
argument."""

import numbers

import keras


def check_positive_int(name, value):
    """Returns `value` as an int, or raises a `ValueError` naming `name`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(
            f"Argument `{name}` must be a positive integer, got {value!r}."
        )
    return int(value)


def check_units(units):
    """Returns `units` as an int, or raises a `ValueError` naming it."""
    return check_positive_int("units", units)


def check_rate(name, value):
    """Returns a probability in [0, 1) as a float, or raises `ValueError`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(
            f"Argument `{name}` must be a float in [0, 1), got {value!r}."
        )
    if not 0.0 <= value < 1.0:
        raise ValueError(
            f"Argument `{name}` must be a float in [0, 1), got {value!r}."
        )
    return float(value)


def get_activation(name, identifier):
    """`keras.activations.get` with an error that names the argument."""
    try:
        return keras.activations.get(identifier)
    except (ValueError, TypeError) as error:
        raise ValueError(
            f"Argument `{name}` is not a known activation: {identifier!r}. "
            "Pass a name such as 'tanh' or 'sigmoid', or a callable."
        ) from error


def get_initializer(name, identifier):
    """`keras.initializers.get` with an error that names the argument."""
    try:
        return keras.initializers.get(identifier)
    except (ValueError, TypeError) as error:
        raise ValueError(
            f"Argument `{name}` is not a known initializer: {identifier!r}."
        ) from error


def reject_option(cell_name, name, value, why):
    """Raises for an option that another cell has but this one does not."""
    if value:
        raise ValueError(
            f"Argument `{name}` is not supported by {cell_name}: {why} "
            f"Received: {name}={value!r}."
        )
