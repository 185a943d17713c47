"""Serializers: round-trips, fallbacks, errors on damaged data and stable fingerprints."""

from __future__ import annotations

import base64
import collections
import dataclasses
import datetime as dt
import enum
import json
import os
import pickle
import subprocess
import sys
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any, Generic, NamedTuple, TypeVar

import pytest
from pydantic import BaseModel, PrivateAttr

from kitaru._blobs import SerializationError, Serialized, deserialize, fingerprint, serialize
from kitaru.errors import KitaruBackendError, KitaruUsageError

# ----------------------------------------------------------------- importable test types

T = TypeVar("T")


class Point(BaseModel):
    x: int
    y: float


class Route(BaseModel):
    name: str
    points: list[Point]
    tags: dict[str, int] = {}
    when: dt.datetime | None = None


class Secretive(BaseModel):
    x: int
    _token: str = PrivateAttr(default="")


@dataclasses.dataclass
class Inner:
    a: int
    b: str


@dataclasses.dataclass
class Outer:
    inner: Inner
    items: list[Inner]
    pair: tuple[int, str]
    when: dt.date
    model: Point | None = None


@dataclasses.dataclass(frozen=True)
class Frozen:
    values: frozenset[int]


@dataclasses.dataclass
class Loose:
    value: Any


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Pair(NamedTuple):
    left: int
    right: str


class Custom:
    def __init__(self, value: object) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return type(other) is Custom and other.value == self.value

    def __hash__(self) -> int:
        return hash(("Custom", repr(self.value)))


def short_id(value: object) -> str:
    try:
        text = repr(value)
    except ValueError:  # ints past the int/str conversion limit
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 40 else text[:37] + "..."


def roundtrip(value: object) -> Any:
    result = deserialize(serialize(value))
    assert type(result) is type(value)
    assert result == value
    return result


# ----------------------------------------------------------------- round-trips


@pytest.mark.parametrize(
    ("value", "serializer"),
    [
        (None, "json"),
        (True, "json"),
        (False, "json"),
        (0, "json"),
        (-(2**80), "json"),
        (2.5, "json"),
        (-0.0, "json"),
        ("", "json"),
        ("héllo wörld — 世界 🎉", "json"),
        ("lone \ud800 surrogate", "json"),
        ([], "json"),
        ({}, "json"),
        ({"a": [1, 2.0, True, None, "x"], "b": {"c": {"d": []}}}, "json"),
        ([1, True, 1.0, "1", None], "json"),
        (b"", "bytes"),
        (b"\x00\xff raw", "bytes"),
        (bytearray(b"abc"), "bytes"),
        (Point(x=1, y=2.5), "pydantic"),
        (
            Route(
                name="r",
                points=[Point(x=1, y=0.5), Point(x=2, y=1.5)],
                tags={"k": 3},
                when=dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.UTC),
            ),
            "pydantic",
        ),
        (Secretive(x=1), "pydantic"),
        (Inner(a=1, b="b"), "dataclass"),
        (
            Outer(
                inner=Inner(1, "x"),
                items=[Inner(2, "y"), Inner(3, "z")],
                pair=(4, "w"),
                when=dt.date(2024, 1, 2),
                model=Point(x=5, y=6.0),
            ),
            "dataclass",
        ),
        (Frozen(values=frozenset({1, 2, 3})), "dataclass"),
        (Loose(value=[1, "a"]), "dataclass"),
        ((), "tuple"),
        (("a", 1, Point(x=1, y=2.0)), "tuple"),
        ((1, (2, (3, (b"four", None))), [5]), "tuple"),
        ((Inner(1, "a"), {"k": (1, 2)}, {1, 2}), "tuple"),
        ({1, 2, 3}, "pickle"),
        (frozenset({"a"}), "pickle"),
        ({1: "int keys"}, "pickle"),
        ({"nested": (1, 2)}, "pickle"),
        ([1, {2}], "pickle"),
        (collections.OrderedDict(a=1), "pickle"),
        (Custom({"x": 1}), "pickle"),
        (Color.RED, "pickle"),
        (Pair(1, "x"), "pickle"),
        (Decimal("1.10"), "pickle"),
        (dt.datetime(2024, 1, 1, 0, 0), "pickle"),
        (Path("/tmp/x"), "pickle"),
        (10**5000, "pickle"),
    ],
    ids=short_id,
)
def test_round_trip(value: object, serializer: str) -> None:
    s = serialize(value)
    assert s.serializer == serializer
    assert isinstance(s.data, bytes)
    roundtrip(value)


def test_non_finite_floats_use_json_tokens() -> None:
    assert serialize(float("inf")).data == b"Infinity"
    assert deserialize(serialize(float("-inf"))) == float("-inf")
    nan = deserialize(serialize(float("nan")))
    assert type(nan) is float
    assert nan != nan


def test_bool_stays_bool_and_int_stays_int() -> None:
    assert serialize(True).data == b"true"
    assert serialize(1).data == b"1"
    result = deserialize(serialize([True, 1, 1.0, {"b": False, "i": 0}]))
    assert [type(x) for x in result[:3]] == [bool, int, float]
    assert type(result[3]["b"]) is bool
    assert type(result[3]["i"]) is int


def test_json_is_compact_utf8() -> None:
    assert serialize({"a": [1, 2]}).data == b'{"a":[1,2]}'
    assert serialize("é").data == '"é"'.encode()


def test_model_type_path_names_the_class() -> None:
    s = serialize(Point(x=1, y=2.0))
    assert s.type_path == f"{__name__}:Point"
    assert json.loads(s.data) == {"x": 1, "y": 2.0}
    assert serialize(Inner(1, "a")).type_path == f"{__name__}:Inner"
    assert serialize({"a": 1}).type_path is None


def test_large_values() -> None:
    text = "x" * 5_000_000
    assert roundtrip(text) == text
    big = {f"key{i}": [i, str(i), i / 3] for i in range(20_000)}
    roundtrip(big)
    blob = os.urandom(3_000_000)
    assert serialize(blob).data is blob
    roundtrip(blob)
    roundtrip(tuple(range(2_000)))


def test_tuple_items_use_their_own_serializers() -> None:
    s = serialize(("a", Point(x=1, y=2.0), b"raw", (1, 2)))
    envelopes = json.loads(s.data)
    assert [e["serializer"] for e in envelopes] == ["json", "pydantic", "bytes", "tuple"]
    assert envelopes[0]["data"] == "a"
    assert envelopes[1]["type_path"] == f"{__name__}:Point"
    assert base64.b64decode(envelopes[2]["data"]) == b"raw"
    assert b"pickle" not in s.data


def test_model_fields_of_nested_tuples_survive() -> None:
    value = (("x", (Point(x=1, y=1.0),)), Route(name="r", points=[]))
    result = roundtrip(value)
    assert type(result[0][1][0]) is Point


def test_private_attributes_force_pickle() -> None:
    model = Secretive(x=1)
    model._token = "secret"
    assert serialize(model).serializer == "pickle"
    assert deserialize(serialize(model))._token == "secret"


def test_dataclass_that_does_not_round_trip_falls_back_to_pickle() -> None:
    # Any-typed field holding a tuple would come back from JSON as a list.
    value = Loose(value=(1, 2))
    assert serialize(value).serializer == "pickle"
    assert roundtrip(value).value == (1, 2)


def test_local_classes_use_pickle() -> None:
    class LocalModel(BaseModel):
        x: int

    @dataclasses.dataclass
    class LocalData:
        x: int

    for value in (LocalModel(x=1), LocalData(x=2)):
        s = serialize(value)
        assert s.serializer == "pickle"
        result = deserialize(s)
        assert type(result) is type(value)
        assert result == value


def test_classes_themselves_are_not_treated_as_instances() -> None:
    assert serialize(Inner).serializer == "pickle"
    assert deserialize(serialize(Inner)) is Inner
    assert deserialize(serialize(Point)) is Point


def test_cyclic_list_uses_pickle() -> None:
    value: list[Any] = [1]
    value.append(value)
    result = deserialize(serialize(value))
    assert result[0] == 1
    assert result[1] is result


# ----------------------------------------------------------------- serialization errors


@pytest.mark.parametrize(
    ("make", "type_name"),
    [
        (threading.Lock, "_thread.lock"),
        (lambda: (i for i in range(3)), "generator"),
    ],
    ids=["lock", "generator"],
)
def test_unserializable_values_raise(make: Any, type_name: str) -> None:
    with pytest.raises(SerializationError) as info:
        serialize(make())
    message = str(info.value)
    assert f"Cannot serialize a value of type {type_name!r}" in message
    assert "Return plain data" in message
    assert isinstance(info.value, KitaruUsageError)
    assert isinstance(info.value, ValueError)


def test_unserializable_item_in_tuple_names_the_item_type() -> None:
    with pytest.raises(SerializationError, match=r"'_thread\.lock'"):
        serialize(("ok", threading.Lock()))


# ----------------------------------------------------------------- damaged data


@pytest.mark.parametrize(
    ("damaged", "expected"),
    [
        (Serialized("json", None, b"{not json"), "'json'"),
        (Serialized("json", None, b"\xff\xfe\x00"), "'json'"),
        (Serialized("pickle", None, b"garbage"), "'pickle'"),
        (Serialized("pickle", None, pickle.dumps([1, 2])[:-3]), "'pickle'"),
        (Serialized("pydantic", f"{__name__}:Point", b'{"x": "nope"}'), f"'{__name__}:Point'"),
        (Serialized("pydantic", f"{__name__}:Point", b"{"), f"'{__name__}:Point'"),
        (Serialized("pydantic", "no_such_module_xyz:Thing", b"{}"), "'no_such_module_xyz:Thing'"),
        (Serialized("pydantic", f"{__name__}:Gone", b"{}"), f"'{__name__}:Gone'"),
        (Serialized("pydantic", f"{__name__}:Inner", b"{}"), f"'{__name__}:Inner'"),
        (Serialized("pydantic", f"{__name__}:roundtrip", b"{}"), f"'{__name__}:roundtrip'"),
        (Serialized("pydantic", None, b"{}"), "'pydantic'"),
        (Serialized("dataclass", f"{__name__}:Inner", b'{"a": []}'), f"'{__name__}:Inner'"),
        (Serialized("dataclass", f"{__name__}:Point", b"{}"), f"'{__name__}:Point'"),
        (Serialized("tuple", None, b'[{"serializer": "bytes", "data": "!!"}]'), "'tuple'"),
        (Serialized("tuple", None, b'{"a": 1}'), "'tuple'"),
        (Serialized("tuple", None, b"[1]"), "'tuple'"),
        (Serialized("msgpack", None, b""), "'msgpack'"),
    ],
    ids=short_id,
)
def test_damaged_data_raises_backend_error(damaged: Serialized, expected: str) -> None:
    with pytest.raises(KitaruBackendError) as info:
        deserialize(damaged)
    assert expected in str(info.value)


def test_damaged_item_inside_tuple_is_reported() -> None:
    good = serialize(("a", Point(x=1, y=2.0)))
    bad = good.data.replace(b'"pydantic"', b'"pickle"')
    with pytest.raises(KitaruBackendError, match="'pickle'"):
        deserialize(Serialized("tuple", None, bad))


# ----------------------------------------------------------------- cross-process


def _module_root() -> str:
    """The sys.path entry this test module is importable from, for subprocesses."""
    depth = len(__name__.split("."))
    return str(Path(__file__).resolve().parents[depth - 1])


def _run_python(code: str, hash_seed: str) -> str:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([_module_root(), env.get("PYTHONPATH", "")])
    env["PYTHONHASHSEED"] = hash_seed
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def fingerprint_samples() -> list[object]:
    """Values whose fingerprints must not change between processes."""
    return [
        None,
        "text",
        12,
        {"b": 1, "a": [1.5, None, True]},
        {"set": {"alpha", "beta", "gamma", "delta", "epsilon"}},
        frozenset({"x", "y", "z", "w"}),
        ("a", 1, Point(x=1, y=2.0)),
        Route(name="r", points=[Point(x=1, y=0.5)], tags={"z": 1, "a": 2}),
        Outer(Inner(1, "a"), [Inner(2, "b")], (3, "c"), dt.date(2024, 1, 1)),
        {Color.RED: Decimal("1.5"), "when": dt.datetime(2024, 1, 1)},
        b"bytes",
        Custom([1, 2]),
    ]


def test_fingerprints_are_stable_across_processes() -> None:
    code = (
        "import importlib, json\n"
        "from kitaru._blobs import fingerprint\n"
        f"m = importlib.import_module({__name__!r})\n"
        "print(json.dumps([fingerprint(v) for v in m.fingerprint_samples()]))\n"
    )
    here = [fingerprint(v) for v in fingerprint_samples()]
    assert all(isinstance(fp, str) and len(fp) == 64 for fp in here)
    # Different hash seeds change set iteration order; fingerprints must not change.
    for seed in ("1", "2"):
        assert json.loads(_run_python(code, seed)) == here


def test_values_load_in_another_process() -> None:
    s = serialize(("a", Point(x=1, y=2.0), Inner(3, "c"), {1, 2}))
    code = (
        "import base64, sys\n"
        "from kitaru._blobs import Serialized, deserialize\n"
        f"m = __import__({__name__!r}, fromlist=['x'])\n"
        f"data = base64.b64decode({base64.b64encode(s.data)!r})\n"
        f"v = deserialize(Serialized({s.serializer!r}, None, data))\n"
        "assert v == ('a', m.Point(x=1, y=2.0), m.Inner(3, 'c'), {1, 2}), v\n"
        "assert type(v[1]) is m.Point and type(v[2]) is m.Inner\n"
        "print('ok')\n"
    )
    assert _run_python(code, "0").strip() == "ok"


# ----------------------------------------------------------------- fingerprints


def test_fingerprint_is_deterministic_and_order_independent() -> None:
    a = {"x": 1, "y": [1, 2], "z": {"q": None, "p": "s"}}
    b = {"z": {"p": "s", "q": None}, "y": [1, 2], "x": 1}
    assert fingerprint(a) == fingerprint(a) == fingerprint(b)
    assert fingerprint({1: "a", "k": {2}}) == fingerprint({"k": {2}, 1: "a"})
    assert fingerprint({"x", "y", "z"}) == fingerprint({"z", "y", "x"})
    assert fingerprint(Route(name="r", points=[], tags={"a": 1, "b": 2})) == fingerprint(
        Route(name="r", points=[], tags={"b": 2, "a": 1})
    )
    assert fingerprint(Inner(1, "a")) == fingerprint(Inner(1, "a"))


def test_fingerprint_distinguishes_values_and_types() -> None:
    values: list[object] = [
        1,
        1.0,
        True,
        "1",
        [1],
        (1,),
        {1},
        frozenset({1}),
        {"1": 1},
        {1: 1},
        b"1",
        bytearray(b"1"),
        None,
        [],
        (),
        {},
        "list",
        ["list", [1]],
        Point(x=1, y=2.0),
        Point(x=1, y=3.0),
        Inner(1, "a"),
        Inner(1, "b"),
        Color.RED,
        Color.BLUE,
        Custom(1),
        Custom(2),
        {"a": 1},
        {"a": 2},
        10**5000,
        10**5000 + 1,
    ]
    prints = [fingerprint(v) for v in values]
    assert None not in prints
    assert len(set(prints)) == len(values)


def test_fingerprint_covers_private_attributes() -> None:
    plain, secret = Secretive(x=1), Secretive(x=1)
    secret._token = "t"
    assert fingerprint(plain) == fingerprint(Secretive(x=1))
    assert fingerprint(plain) != fingerprint(secret)


def test_generic_model_parametrizations_use_pickle() -> None:
    class Box(BaseModel, Generic[T]):
        item: T

    value = Box[int](item=1)
    assert serialize(value).serializer == "pickle"
    roundtrip(value)


def test_fingerprint_of_unserializable_value_is_none() -> None:
    assert fingerprint(threading.Lock()) is None
    assert fingerprint({"lock": threading.Lock()}) is None
    assert fingerprint((1, (i for i in range(2)))) is None


def test_fingerprint_of_cyclic_value() -> None:
    value: list[Any] = [1]
    value.append(value)
    fp = fingerprint(value)
    assert fp is not None
    assert fp == fingerprint(value)
