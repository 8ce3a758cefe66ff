"""Typer options made from a config dataclass: a setting's type, default and help are declared once, on its field.

``@config_command(Config)`` turns ``func(*, ..., config: dict, ...)`` into a typer command whose options are
``func``'s own parameters plus one option per field of ``Config``, in the place of ``config``; the command
receives the fields' values as the dict ``config``. A field's ``metadata`` gives:

* ``help`` (required), and ``panel``: the option's help and ``rich_help_panel``;
* ``flags``: option names other than the field's own (``("--bf16/--no-bf16",)`` for ``use_bf16``);
* ``min``: the smallest value of a number option;
* ``cli``: ``False`` keeps the field off the command line; a tuple names parameters of ``func`` that give the field
  in another shape (``("snr_low", "snr_high")`` for ``snr_db``); these stand in the field's place in ``--help``.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable
from typing import Annotated, Any

import typer

CONFIG = "config"
"""The parameter of a command that receives the generated options' values (field name -> value)."""


def generated_fields(config_cls: type) -> list[dataclasses.Field]:
    """The fields that become options of their own (``cli`` left at ``True``)."""
    return [f for f in dataclasses.fields(config_cls) if f.metadata.get("cli", True) is True]


def field_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return inspect.Parameter.empty  # a required option


def field_parameter(f: dataclasses.Field, annotation: Any) -> inspect.Parameter:
    """The typer option of one field: ``str | None`` fields (``None`` default) are optional options."""
    if "help" not in f.metadata:
        raise TypeError(f"field {f.name!r} is on the command line but has no metadata['help']")
    option = typer.Option(*f.metadata.get("flags", ()), help=f.metadata["help"], rich_help_panel=f.metadata.get("panel"),
                          min=f.metadata.get("min"))
    return inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=field_default(f), annotation=Annotated[annotation, option])


def config_command(config_cls: type) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a command so that typer sees the options of ``config_cls``'s fields (see the module's docstring)."""
    field_types = typing.get_type_hints(config_cls)

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        own_types = typing.get_type_hints(func, include_extras=True)  # resolves `from __future__` string annotations
        own = {
            name: parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=own_types.get(name, parameter.annotation))
            for name, parameter in inspect.signature(func).parameters.items()
        }
        if CONFIG not in own:
            raise TypeError(f"{func.__name__} needs a parameter {CONFIG!r} for the options of {config_cls.__name__}")
        in_fields_place: list[inspect.Parameter] = []
        claimed: set[str] = set()
        for f in dataclasses.fields(config_cls):
            cli = f.metadata.get("cli", True)
            if cli is True:
                in_fields_place.append(field_parameter(f, field_types[f.name]))
            elif cli:
                missing = [name for name in cli if name not in own]
                if missing:
                    raise TypeError(f"{func.__name__} lacks {missing}, which give {config_cls.__name__}.{f.name}")
                in_fields_place.extend(own[name] for name in cli)
                claimed.update(cli)
        parameters = []
        for name, parameter in own.items():
            if name == CONFIG:
                parameters.extend(in_fields_place)
            elif name not in claimed:
                parameters.append(parameter)
        names = [f.name for f in generated_fields(config_cls)]

        @functools.wraps(func)
        def command(**values: Any) -> Any:
            return func(**split_values(values, names))

        command.__signature__ = inspect.Signature(parameters)
        command.__annotations__ = {parameter.name: parameter.annotation for parameter in parameters}
        command.config_fields = names
        return command

    return decorate


def split_values(values: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """typer's keyword arguments -> the command's: the generated options' values gathered in ``config``."""
    own = {name: value for name, value in values.items() if name not in names}
    return {**own, CONFIG: {name: values[name] for name in names}}
