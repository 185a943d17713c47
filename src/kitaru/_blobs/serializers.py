"""Turning checkpoint values into bytes and back, plus stable fingerprints of values.

Every stored value records which serializer wrote it (and, for model classes, where the
class lives), so that it can be read back by any later process. Plain data is stored as
JSON, which stays readable across Python versions and without Kitaru; cloudpickle is only
the last resort, for values none of the others can hold, and it can be turned off
(``allow_pickle``, see :mod:`kitaru._blobs.pickle_policy`): loading a pickled value runs
code, so with it off such values are neither written nor loaded.

pydantic and cloudpickle are imported lazily: this module is on the hot path of every
checkpoint and on the import path of ``kitaru``.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import importlib
import json
import sys
import warnings
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, cast

from kitaru import _digest
from kitaru.errors import (
    KitaruBackendError,
    KitaruError,
    KitaruPlainDataWarning,
    KitaruUsageError,
)

JSON = "json"
BYTES = "bytes"
PYDANTIC = "pydantic"
DATACLASS = "dataclass"
TUPLE = "tuple"
PICKLE = "pickle"
#: A value described but not stored (a checkpoint input that would need pickle):
#: the data is the description, and loading it says so.
NOT_STORED = "not_stored"

# The only type_path a "bytes" value carries: without it a bytearray would come back as bytes.
_BYTEARRAY_PATH = "builtins:bytearray"

_JSON_SCALARS: frozenset[type] = frozenset({str, int, float, bool, type(None)})
_SEPARATORS = (",", ":")
# Reused encoders: json.dumps with non-default options builds a new one on every call.
_COMPACT = json.JSONEncoder(separators=_SEPARATORS, ensure_ascii=False)
_COMPACT_ASCII = json.JSONEncoder(separators=_SEPARATORS)
_SORTED = json.JSONEncoder(separators=_SEPARATORS, sort_keys=True)
_NON_FINITE = {"inf": "Infinity", "-inf": "-Infinity", "nan": "NaN"}

_WHAT_TO_RETURN = (
    "Return plain data (dict, list, str, numbers), a Pydantic model, a dataclass or bytes."
)
_SUPPORTED_KINDS = (
    "JSON-able data (dict with str keys, list, str, int, float, bool, None), Pydantic "
    "models and dataclasses defined at module level whose fields round-trip through JSON, "
    "tuples of these, and bytes/bytearray"
)


class Serialized:
    """A serialized value: the bytes and what is needed to turn them back into the value.

    Compared by value. A plain class: building a dataclass costs ~1 ms at import, and
    one is made per checkpoint result.
    """

    __slots__ = ("data", "serializer", "type_path")

    def __init__(self, serializer: str, type_path: str | None, data: bytes) -> None:
        self.serializer, self.type_path, self.data = serializer, type_path, data

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Serialized):
            return NotImplemented
        return (self.serializer, self.type_path, self.data) == (
            other.serializer,
            other.type_path,
            other.data,
        )

    def __hash__(self) -> int:
        return hash((self.serializer, self.type_path, self.data))

    def __repr__(self) -> str:
        return f"Serialized({self.serializer!r}, {self.type_path!r}, {self.data!r})"


class SerializationError(KitaruUsageError):
    """A value cannot be serialized by any of Kitaru's serializers."""


class PickleNotAllowedError(SerializationError):
    """A value needs cloudpickle to be stored, and ``allow_pickle`` is off."""


class PickleLoadNotAllowedError(KitaruUsageError):
    """A stored value was pickled, and ``allow_pickle`` is off: loading it would run code."""


_NULL = Serialized(JSON, None, b"null")
_TRUE = Serialized(JSON, None, b"true")
_FALSE = Serialized(JSON, None, b"false")


# ---------------------------------------------------------------------------- helpers


def _type_name(tp: type) -> str:
    """A readable dotted name of a type, without the noise of ``builtins.``."""
    if tp.__module__ == "builtins":
        return tp.__qualname__
    return f"{tp.__module__}.{tp.__qualname__}"


def _type_path(tp: type) -> str:
    return f"{tp.__module__}:{tp.__qualname__}"


# Class -> its type path if the class can be found again by importing it, else None.
_IMPORTABLE: dict[type, str | None] = {}


def _importable_path(tp: type) -> str | None:
    """The ``module:QualName`` of ``tp`` if importing it by that path gives ``tp`` back.

    Classes defined inside functions, or created dynamically, cannot be loaded by path in
    another process; those values go to (cloud)pickle, which stores such classes by value.
    """
    try:
        return _IMPORTABLE[tp]
    except KeyError:
        pass
    path: str | None = None
    # Parametrized generic models ("Model[int]") are only findable by name where they
    # happened to be created at module level; do not rely on that.
    if "<locals>" not in tp.__qualname__ and "[" not in tp.__qualname__:
        obj: Any = sys.modules.get(tp.__module__)
        for part in tp.__qualname__.split("."):
            obj = getattr(obj, part, None)
        if obj is tp:
            path = _type_path(tp)
    _IMPORTABLE[tp] = path
    return path


#: Modules that name a class defined in a script run as ``python script.py`` (the
#: second one when the script was loaded by a worker, see kitaru._runtime.loader).
SCRIPT_MODULES = ("__main__", "__mp_main__")

#: Set around a user-facing load (kitaru.load, ArtifactRef.load): finds a script's class
#: by qualified name (None: it cannot be found here). While set, a value whose script
#: class cannot be found comes back as its plain JSON data, with a warning.
script_classes: ContextVar[Callable[[str], type | None] | None] = ContextVar(
    "kitaru_script_classes", default=None
)


def _resolve(s: Serialized) -> type | None:
    """Import the class named by ``s.type_path``; failure is a backend error.

    None only while :data:`script_classes` is set and the class, defined in a script,
    cannot be found: the caller then returns the stored data as it is.
    """
    type_path = s.type_path
    if not type_path or ":" not in type_path:
        raise KitaruBackendError(
            f"A stored value written by serializer {s.serializer!r} has no valid class path "
            f"(type_path={type_path!r}); the stored record is damaged."
        )
    module_name, _, qualname = type_path.partition(":")
    find = script_classes.get() if module_name in SCRIPT_MODULES else None
    if find is not None:
        # The flow's recorded script first: this process's __main__ may be another script.
        found = find(qualname)
        if found is not None:
            return found
    if module_name == "__mp_main__" and "__mp_main__" not in sys.modules:
        # Written where the flow's script was loaded again (a resume, an isolated call's
        # process); here it runs as the script itself.
        module_name = "__main__"
    try:
        obj: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except Exception as exc:
        if find is not None:
            return None
        hint = (
            " It was defined in a script run as __main__: load it with kitaru.load() or "
            "KitaruClient().artifacts.get(ID).load(), which read the flow's recorded script "
            "(or give the stored data as plain JSON when that script is gone)."
            if module_name in SCRIPT_MODULES
            else ""
        )
        raise KitaruBackendError(
            f"Cannot load a value written by serializer {s.serializer!r}: class "
            f"{type_path!r} cannot be imported ({type(exc).__name__}: {exc}). Make sure the "
            "module that defines it is importable in this process (installed or on "
            f"PYTHONPATH) and that the class was not renamed or moved.{hint}"
        ) from exc
    if not isinstance(obj, type):
        raise KitaruBackendError(
            f"Cannot load a value written by serializer {s.serializer!r}: {type_path!r} is "
            f"no longer a class (it is a {_type_name(type(obj))})."
        )
    return obj


def _plain(s: Serialized) -> Any:
    """The stored JSON of a value whose script class cannot be found here, with a warning."""
    data = json.loads(s.data)
    module_name, _, qualname = (s.type_path or "").partition(":")
    warnings.warn(
        KitaruPlainDataWarning(
            f"A stored {qualname} (a {s.serializer} class defined in the script run as "
            f"{module_name}) is returned as plain data ({type(data).__name__}): the flow's "
            "script cannot be loaded in this process (it is gone, or it failed to load). "
            "Restore the script at its recorded path, or move the class into an importable "
            "module, to get the object back."
        ),
        stacklevel=4,
    )
    return data


def _same(a: object, b: object) -> bool:
    """Whether ``b`` is a faithful copy of ``a`` (same type, equal); never raises."""
    try:
        return type(a) is type(b) and bool(a == b)
    except Exception:
        # e.g. fields holding arrays whose == is elementwise: we cannot prove equality.
        return False


def _is_json(value: object) -> bool:
    """Whether ``value`` is plain JSON data that json.loads gives back with the same types."""
    tp = type(value)
    if tp in _JSON_SCALARS:
        return True
    if tp is list:
        return all(map(_is_json, cast("list[object]", value)))
    if tp is dict:
        mapping = cast("dict[object, object]", value)
        return all(type(key) is str for key in mapping) and all(map(_is_json, mapping.values()))
    return False


def _dump_json(value: object) -> bytes:
    try:
        return _COMPACT.encode(value).encode("utf-8")
    except UnicodeEncodeError:
        # Lone surrogates cannot be UTF-8 encoded; \u escapes keep them intact.
        return _COMPACT_ASCII.encode(value).encode("ascii")


def _pydantic_base() -> type | None:
    """pydantic's BaseModel if pydantic is loaded; if it is not, no value can be a model."""
    if "pydantic.main" not in sys.modules:
        return None
    from pydantic import BaseModel

    return BaseModel


# Dataclass -> a TypeAdapter for it, or None when pydantic cannot handle the class.
_ADAPTERS: dict[type, Any] = {}


def _adapter(tp: type) -> Any:
    try:
        return _ADAPTERS[tp]
    except KeyError:
        pass
    from pydantic import TypeAdapter

    adapter: Any
    try:
        adapter = TypeAdapter(tp)
    except Exception:
        adapter = None
    _ADAPTERS[tp] = adapter
    return adapter


# ---------------------------------------------------------------------------- serialize


def serialize(value: object, *, pickle: bool = True) -> Serialized:
    """Serialize ``value`` with the most portable serializer that round-trips it.

    ``pickle=False``: never fall back to cloudpickle (``PickleNotAllowedError`` instead).

    Raises:
        SerializationError: nothing, not even cloudpickle, can serialize the value.
    """
    tp = type(value)
    # Fast paths: most checkpoint outputs are strings, numbers or None.
    if tp is str:
        return Serialized(JSON, None, _dump_json(value))
    if tp is float:
        text = float.__repr__(cast(float, value))
        # json's own (non-standard) tokens for the non-finite floats.
        text = _NON_FINITE.get(text, text)
        return Serialized(JSON, None, text.encode("ascii"))
    if value is None:
        return _NULL
    if tp is bool:
        return _TRUE if value else _FALSE
    if tp is int:
        try:
            return Serialized(JSON, None, int.__repr__(cast(int, value)).encode("ascii"))
        except ValueError:
            # Beyond the int/str conversion limit, which json.loads would refuse too.
            return _serialize_pickle(value, pickle)
    if tp is bytes:
        return Serialized(BYTES, None, value)  # type: ignore[arg-type]
    if tp is bytearray:
        return Serialized(BYTES, _BYTEARRAY_PATH, bytes(cast(bytearray, value)))
    if tp is dict or tp is list:
        result = _try_json(value)
        if result is not None:
            return result
    elif tp is tuple:
        return _serialize_tuple(value, pickle)  # type: ignore[arg-type]
    else:
        result = _try_model(value)
        if result is not None:
            return result
    return _serialize_pickle(value, pickle)


def _try_json(value: object) -> Serialized | None:
    try:
        if _is_json(value):
            return Serialized(JSON, None, _dump_json(value))
    except (ValueError, RecursionError):
        # Ints beyond the int/str conversion limit, or nesting too deep (or cyclic).
        pass
    return None


def _try_model(value: object) -> Serialized | None:
    """JSON via pydantic for BaseModel and dataclass instances, if that round-trips."""
    tp = type(value)
    base = _pydantic_base()
    if base is not None and isinstance(value, base):
        path = _importable_path(tp)
        if path is None:
            return None
        try:
            data: bytes = value.model_dump_json().encode("utf-8")  # type: ignore[attr-defined]
            loaded = tp.model_validate_json(data)  # type: ignore[attr-defined]
        except Exception:
            return None
        # Private attributes, excluded fields or lossy validators do not survive JSON.
        return Serialized(PYDANTIC, path, data) if _same(value, loaded) else None
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        path = _importable_path(tp)
        if path is None:
            return None
        adapter = _adapter(tp)
        if adapter is None:
            return None
        try:
            data = adapter.dump_json(value)
            loaded = adapter.validate_json(data)
        except Exception:
            return None
        return Serialized(DATACLASS, path, data) if _same(value, loaded) else None
    return None


def _serialize_tuple(value: tuple[object, ...], pickle: bool) -> Serialized:
    # A JSON list of per-item envelopes, so a tuple of plain data and models needs no pickle.
    parts: list[str] = []
    for item in value:
        inner = serialize(item, pickle=pickle)
        if inner.serializer == JSON:
            data = inner.data.decode("utf-8")
        else:
            data = '"' + base64.b64encode(inner.data).decode("ascii") + '"'
        type_path = "null" if inner.type_path is None else json.dumps(inner.type_path)
        parts.append(f'{{"serializer":"{inner.serializer}","type_path":{type_path},"data":{data}}}')
    return Serialized(TUPLE, None, ("[" + ",".join(parts) + "]").encode("utf-8"))


def _serialize_pickle(value: object, pickle: bool) -> Serialized:
    from kitaru._blobs.pickle_policy import HOW_TO_ALLOW, pickle_setting

    if not pickle:
        raise PickleNotAllowedError(
            f"a value of type {_type_name(type(value))!r} can only be stored with cloudpickle"
        )
    allowed, source = pickle_setting()
    if not allowed:
        raise PickleNotAllowedError(
            f"Cannot store a value of type {_type_name(type(value))!r}: only cloudpickle can "
            f"serialize it, and pickle is turned off ({source}). Kitaru stores without pickle: "
            f"{_SUPPORTED_KINDS}. Return one of those, or allow pickle with {HOW_TO_ALLOW}."
        )
    import cloudpickle

    try:
        data: bytes = cloudpickle.dumps(value)
    except Exception as exc:
        raise SerializationError(
            f"Cannot serialize a value of type {_type_name(type(value))!r}: "
            f"{type(exc).__name__}: {exc}. {_WHAT_TO_RETURN}"
        ) from exc
    # The type path is only shown (e.g. by the CLI) so a value is described without
    # unpickling it; loading ignores it.
    return Serialized(PICKLE, _type_path(type(value)), data)


# ---------------------------------------------------------------------------- deserialize


def deserialize(s: Serialized) -> Any:
    """Turn a :class:`Serialized` back into the value it was made from.

    Raises:
        KitaruBackendError: the data is damaged, the serializer is unknown or the class
            it names cannot be imported or no longer accepts the data.
    """
    serializer = s.serializer
    if serializer == NOT_STORED:
        raise KitaruBackendError(
            f"This value was not stored, only described: {s.data.decode('utf-8', 'replace')}"
        )
    try:
        if serializer == JSON:
            return json.loads(s.data)
        if serializer == BYTES:
            if s.type_path == _BYTEARRAY_PATH:
                return bytearray(s.data)
            return bytes(s.data)
        if serializer == PYDANTIC:
            cls = _resolve(s)
            if cls is None:
                return _plain(s)
            base = _pydantic_base()
            if base is None or not issubclass(cls, base):
                raise KitaruBackendError(
                    f"Cannot load a value written by serializer 'pydantic': {s.type_path!r} "
                    "is no longer a Pydantic model class."
                )
            return cls.model_validate_json(s.data)  # type: ignore[attr-defined]
        if serializer == DATACLASS:
            cls = _resolve(s)
            if cls is None:
                return _plain(s)
            adapter = _adapter(cls) if dataclasses.is_dataclass(cls) else None
            if adapter is None:
                raise KitaruBackendError(
                    f"Cannot load a value written by serializer 'dataclass': {s.type_path!r} "
                    "is no longer a dataclass that Pydantic can validate."
                )
            return adapter.validate_json(s.data)
        if serializer == TUPLE:
            return _deserialize_tuple(s.data)
        if serializer == PICKLE:
            _check_pickle_load(s)
            import pickle  # cloudpickle's output: most stores never hold one

            return pickle.loads(s.data)
    except KitaruError:
        raise
    except Exception as exc:
        raise KitaruBackendError(
            f"Cannot load a stored value written by serializer {serializer!r}"
            f"{f' for class {s.type_path!r}' if s.type_path else ''}: "
            f"{type(exc).__name__}: {exc}. The stored data is damaged, or the class (or a "
            "library it uses) changed incompatibly since the value was written."
        ) from exc
    raise KitaruBackendError(
        f"Cannot load a stored value: unknown serializer {serializer!r}. It was probably "
        "written by a newer version of Kitaru; upgrade Kitaru in this environment."
    )


def _check_pickle_load(s: Serialized) -> None:
    from kitaru._blobs.pickle_policy import HOW_TO_ALLOW, pickle_setting

    allowed, source = pickle_setting()
    if not allowed:
        what = f" of type {s.type_path!r}" if s.type_path else ""
        raise PickleLoadNotAllowedError(
            f"Refusing to load a stored value{what}: it was stored with cloudpickle, and "
            f"loading it would run code chosen by whoever wrote it; pickle is turned off "
            f"({source}). If you trust the store it came from, allow pickle with "
            f"{HOW_TO_ALLOW}."
        )


def _deserialize_tuple(data: bytes) -> tuple[Any, ...]:
    envelopes = json.loads(data)
    if type(envelopes) is not list:
        raise ValueError("a tuple is stored as a JSON list of items")
    items: list[Any] = []
    for env in envelopes:
        serializer = env["serializer"]
        if serializer == JSON:
            items.append(env["data"])
        else:
            raw = base64.b64decode(env["data"], validate=True)
            items.append(deserialize(Serialized(serializer, env["type_path"], raw)))
    return tuple(items)


# ---------------------------------------------------------------------------- fingerprint


def fingerprint(value: object) -> str | None:
    """A stable SHA-256 hex digest of ``value``, for cache keys of checkpoint inputs.

    Equal values give the same digest in every process (dict key order and set iteration
    order do not matter); values of different types (``1``, ``1.0``, ``True``; a tuple and
    a list) give different ones. Returns None if the value cannot be serialized at all.
    """
    try:
        if _is_json(value):
            canonical = _SORTED.encode(value)
            return _digest.sha256(b"kitaru-fp-1:json:" + canonical.encode("ascii")).hexdigest()
    except (ValueError, RecursionError):
        pass
    try:
        canonical = _COMPACT_ASCII.encode(_canonical(value))
    except _Unserializable:
        return None
    except (ValueError, RecursionError):
        # Cyclic or very deep structures: hash the whole value's pickle instead.
        leaf = _pickle_digest(value)
        if leaf is None:
            return None
        canonical = json.dumps(["pickle", leaf])
    return _digest.sha256(b"kitaru-fp-1:tagged:" + canonical.encode("ascii")).hexdigest()


class _Unserializable(Exception):
    """Raised inside :func:`_canonical` when some part of the value cannot be pickled."""


def _key(encoded: object) -> str:
    return _COMPACT_ASCII.encode(encoded)


def _canonical(value: object) -> Any:
    """A JSON-able, order-independent, type-tagged description of ``value``.

    Scalars stand for themselves; every container is a ``[tag, ...]`` list, so a JSON list
    in the output always is a tag and never plain data, which keeps encodings unambiguous.
    """
    tp = type(value)
    if tp in _JSON_SCALARS:
        if tp is int and value.bit_length() > 10_000:  # type: ignore[attr-defined]
            # Near the int/str conversion limit, where json.dumps would refuse it.
            return ["bigint", hex(value)]  # type: ignore[arg-type]
        return value
    if tp is list or tp is tuple:
        return [tp.__name__, [_canonical(item) for item in value]]  # type: ignore[attr-defined]
    if tp is dict:
        entries = [[_canonical(k), _canonical(v)] for k, v in value.items()]  # type: ignore[attr-defined]
        entries.sort(key=lambda entry: _key(entry[0]))
        return ["dict", entries]
    if tp is set or tp is frozenset:
        # Set iteration order depends on hash randomization: sort the encodings.
        return [tp.__name__, sorted((_canonical(item) for item in value), key=_key)]  # type: ignore[attr-defined]
    if tp is bytes or tp is bytearray:
        return [tp.__name__, base64.b64encode(value).decode("ascii")]  # type: ignore[arg-type]
    if isinstance(value, enum.Enum):
        return ["enum", _type_path(tp), value.name]
    base = _pydantic_base()
    if base is not None and isinstance(value, base):
        fields = [[name, _canonical(getattr(value, name))] for name in tp.model_fields]  # type: ignore[attr-defined]
        extra = value.__pydantic_extra__ or {}  # type: ignore[attr-defined]
        extras = sorted(([name, _canonical(v)] for name, v in extra.items()), key=_key)
        # Private attributes take part in model equality, so in the fingerprint too.
        private = getattr(value, "__pydantic_private__", None) or {}
        privates = sorted(([name, _canonical(v)] for name, v in private.items()), key=_key)
        return ["pydantic", _type_path(tp), fields, extras, privates]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = [[f.name, _canonical(getattr(value, f.name))] for f in dataclasses.fields(value)]
        return ["dataclass", _type_path(tp), fields]
    leaf = _pickle_digest(value)
    if leaf is None:
        raise _Unserializable
    return ["pickle", leaf]


def _pickle_digest(value: object) -> str | None:
    import cloudpickle

    try:
        return _digest.sha256(cloudpickle.dumps(value)).hexdigest()
    except Exception:
        return None


__all__ = [
    "PickleLoadNotAllowedError",
    "PickleNotAllowedError",
    "SerializationError",
    "Serialized",
    "deserialize",
    "fingerprint",
    "serialize",
]
