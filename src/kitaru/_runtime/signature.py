"""Flow arguments checked against the flow's signature and type hints.

``my_flow.run(...)`` and replay's ``flow_overrides`` both go through here, so a
value is validated (and coerced, in Pydantic's lax mode: ``"3"`` → ``3`` for
``int``, a dict → the Pydantic model a parameter names) the same way wherever it
enters a flow. The per-parameter validators are built once per flow, on first
use, and a flow with no annotated parameter is never validated at all.
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kitaru.errors import KitaruUsageError

_VAR = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


def did_you_mean(word: str, options: Sequence[str]) -> str:
    import difflib  # not at import time: `import kitaru` stays cheap

    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""


def describe_type(tp: Any) -> str:
    if typing.get_origin(tp) is not None:  # tuple[Plan, int], Plan | None, ...
        return re.sub(r"\b[\w.]+\.(\w+)", r"\1", repr(tp))
    return getattr(tp, "__name__", None) or repr(tp)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _adapter(tp: Any) -> Any:
    """A pydantic TypeAdapter for ``tp``; None when pydantic cannot validate it."""
    from pydantic import ConfigDict, TypeAdapter

    try:
        return TypeAdapter(tp)
    except Exception:
        pass
    try:  # a plain class: checked with isinstance
        return TypeAdapter(tp, config=ConfigDict(arbitrary_types_allowed=True))
    except Exception:
        return None


#: Builtin types a value of exactly that type passes unchanged (no Pydantic needed).
_PLAIN = frozenset({int, float, str, bool, bytes})
_PLAIN_NAMES = {t.__name__: t for t in _PLAIN}


class FlowSignature:
    """Binds and validates the arguments of one flow (``what`` names it in errors)."""

    def __init__(self, func: Callable[..., Any], what: str) -> None:
        self.func = func
        self.what = what
        self.signature = inspect.signature(func)
        self.params = self.signature.parameters
        self.names = [p.name for p in self.params.values() if p.kind not in _VAR]
        self.var_keyword = next(
            (p.name for p in self.params.values() if p.kind is inspect.Parameter.VAR_KEYWORD),
            None,
        )
        self.annotated = any(
            p.annotation is not inspect.Parameter.empty for p in self.params.values()
        )
        self._adapters: dict[str, Any] | None = None
        self._plain: dict[str, Any] | None = None

    # -- validators, built on first use ------------------------------------------------

    def _hints(self) -> dict[str, Any]:
        try:
            return typing.get_type_hints(self.func)
        except Exception:  # unresolvable string annotations: nothing to validate against
            return {}

    def _plain_hint(self, name: str) -> Any:
        if self._plain is None:
            self._plain = {}
            for param in self.params.values():
                hint = param.annotation
                if isinstance(hint, str):  # postponed annotations: the common spellings
                    hint = _PLAIN_NAMES.get(hint)
                if hint in _PLAIN:
                    self._plain[param.name] = hint
        return self._plain.get(name)

    def adapters(self) -> dict[str, Any]:
        if self._adapters is None:
            hints = self._hints() if self.annotated else {}
            built: dict[str, Any] = {}
            for name, tp in hints.items():
                if name == "return" or name not in self.params or tp is Any:
                    continue
                adapter = _adapter(tp)
                if adapter is not None:
                    built[name] = (tp, adapter)
            self._adapters = built
        return self._adapters

    def convert(self, name: str, value: Any, *, where: str | None = None) -> Any:
        """``value`` for parameter ``name`` validated into its annotated type."""
        if self.annotated and type(value) in _PLAIN and self._plain_hint(name) is type(value):
            # Already exactly the annotated builtin type: Pydantic would return it as
            # is, so it need not be imported (tens of ms at a script's start).
            return value
        entry = self.adapters().get(name)
        if entry is None:
            return value
        from pydantic import ValidationError

        tp, adapter = entry
        try:
            return adapter.validate_python(value)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, err['loc'])) or 'value'}: {err['msg']}" for err in exc.errors()
            )
            raise KitaruUsageError(
                f"{where or self.what}: parameter {name!r} expects {describe_type(tp)}, got "
                f"{_short(value)} ({problems}). Give a value of that type (or data that "
                "Pydantic can validate into it)."
            ) from None

    # -- whole calls -------------------------------------------------------------------

    def bind(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> inspect.BoundArguments:
        """The bound arguments; KitaruUsageError naming an unknown or missing parameter."""
        if self.var_keyword is None:
            for key in kwargs:
                if key not in self.params or self.params[key].kind in _VAR:
                    raise KitaruUsageError(
                        f"{self.what} got an unexpected keyword argument {key!r}; its "
                        f"signature is {self.signature}.{did_you_mean(key, self.names)}"
                    )
        try:
            return self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            missing = re.search(r"missing a required argument: '(\w+)'", str(exc))
            if missing:
                raise KitaruUsageError(
                    f"{self.what} is missing the required argument {missing.group(1)!r}; its "
                    f"signature is {self.signature}."
                ) from None
            raise KitaruUsageError(
                f"Invalid arguments for {self.what}{self.signature}: {exc}."
            ) from None

    def validate(
        self, args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """``(args, kwargs)`` validated and coerced to the annotated types, same shape."""
        self.bind(args, kwargs)
        if not self.annotated:
            return tuple(args), dict(kwargs)
        # Converted where the caller put them, so the recorded inputs keep their shape.
        positional = [
            p.name
            for p in self.params.values()
            if p.kind
            in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        ]
        var_positional = next(
            (p.name for p in self.params.values() if p.kind is inspect.Parameter.VAR_POSITIONAL),
            None,
        )
        new_args = tuple(
            self.convert(positional[i] if i < len(positional) else str(var_positional), value)
            for i, value in enumerate(args)
        )
        new_kwargs = {
            key: self.convert(key if key in self.names else str(self.var_keyword), value)
            for key, value in kwargs.items()
        }
        return new_args, new_kwargs

    def overrides(self, changes: Mapping[str, Any], *, where: str) -> dict[str, Any]:
        """Replacement values for some parameters (replay's ``flow_overrides``)."""
        unknown = [name for name in changes if name not in self.names]
        if unknown and self.var_keyword is None:
            raise KitaruUsageError(
                f"{where} names {', '.join(map(repr, unknown))}, which {self.what} has no "
                f"parameter for; its signature is {self.signature}."
                f"{did_you_mean(str(unknown[0]), self.names)}"
            )
        converted: dict[str, Any] = {}
        for name, value in changes.items():
            param = name if name in self.names else self.var_keyword
            converted[name] = self.convert(str(param), value, where=f"{where}[{name!r}]")
        return converted
