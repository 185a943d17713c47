"""The module-level functions take their arguments as 0.21 declared them (contract §5):
the same names, kinds and defaults, so 0.21 code calling them by keyword runs unchanged."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

import kitaru

_EMPTY = inspect.Parameter.empty
KEYWORD = inspect.Parameter.KEYWORD_ONLY
EITHER = inspect.Parameter.POSITIONAL_OR_KEYWORD

# name -> [(parameter, kind, default)], as contract §5 lists them.
CONTRACT: dict[str, list[tuple[str, Any, Any]]] = {
    "flow": [
        ("func", EITHER, None),
        ("stack", KEYWORD, None),
        ("image", KEYWORD, None),
        ("cache", KEYWORD, None),
        ("retries", KEYWORD, None),
    ],
    "checkpoint": [
        ("func", EITHER, None),
        ("retries", KEYWORD, 0),
        ("type", KEYWORD, None),
        ("runtime", KEYWORD, None),
        ("cache", KEYWORD, None),
    ],
    "connect": [
        ("server_url", EITHER, _EMPTY),
        ("api_key", KEYWORD, None),
        ("refresh", KEYWORD, False),
        ("project", KEYWORD, None),
        ("no_verify_ssl", KEYWORD, False),
        ("ssl_ca_cert", KEYWORD, None),
        ("cloud_api_url", KEYWORD, None),
        ("timeout", KEYWORD, None),
    ],
}


@pytest.mark.parametrize("name", sorted(CONTRACT))
def test_the_contracts_parameters_are_taken_as_declared(name: str) -> None:
    parameters = inspect.signature(getattr(kitaru, name)).parameters
    for parameter, kind, default in CONTRACT[name]:
        assert parameter in parameters, f"{name}() has no {parameter!r}"
        assert parameters[parameter].kind is kind, (name, parameter)
        assert parameters[parameter].default == default, (name, parameter)


def test_flow_and_checkpoint_take_func_by_keyword() -> None:
    def body() -> int:
        return 1

    assert isinstance(kitaru.flow(func=body), kitaru.flow(body).__class__)
    assert isinstance(kitaru.checkpoint(func=body), kitaru.checkpoint(body).__class__)


def test_connect_accepts_cloud_api_url() -> None:
    # Accepted and unused (0.21's ZenML Pro control plane): the call gets as far as its
    # own checks, here the missing key, instead of failing on the argument.
    with pytest.raises(kitaru.KitaruUsageError, match="api_key"):
        kitaru.connect("http://127.0.0.1:9", cloud_api_url="https://cloud.example")


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((123,), {"api_key": "k"}, "starts with http"),
        (("http://127.0.0.1:9",), {"api_key": "k", "timeout": "5"}, "seconds > 0"),
        (("http://127.0.0.1:9",), {"api_key": 42}, "api_key"),
    ],
)
def test_connect_refuses_arguments_of_the_wrong_type_with_a_usage_error(
    args: tuple[Any, ...], kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(kitaru.KitaruUsageError, match=message):
        kitaru.connect(*args, **kwargs)
