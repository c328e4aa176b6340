"""The registry of config templates: how a model family is given a description and a text."""

from __future__ import annotations

from dataclasses import dataclass

from scoring.exceptions import PrecheckError


@dataclass(frozen=True)
class Template:
    """How a voice description and a text become model inputs.

    Families with two inputs (Parler-style: description → encoder, text → prompt) use
    ``description_format`` and ``prompt_format``; families with a single text encoder
    (Musicgen) get ``joined_format``.
    """

    name: str
    description_format: str
    prompt_format: str
    joined_format: str

    def description(self, description: str, text: str) -> str:
        """The encoder input of a two-input family."""
        return self.description_format.format(description=description, text=text)

    def prompt(self, description: str, text: str) -> str:
        """The prompt input of a two-input family."""
        return self.prompt_format.format(description=description, text=text)

    def joined(self, description: str, text: str) -> str:
        """The single encoder input of a one-input family."""
        return self.joined_format.format(description=description, text=text)


TEMPLATES: dict[str, Template] = {
    "default": Template(
        name="default",
        description_format="{description}",
        prompt_format="{text}",
        joined_format="{description} Says: {text}",
    ),
    "text_only": Template(
        name="text_only",
        description_format="",
        prompt_format="{text}",
        joined_format="{text}",
    ),
}


def get_template(name: str) -> Template:
    """The template called ``name``; an unknown one is a precheck failure."""
    try:
        return TEMPLATES[name]
    except KeyError as exc:
        known = ", ".join(sorted(TEMPLATES))
        raise PrecheckError(
            "UNKNOWN_TEMPLATE", f"config_template {name!r} is not one of: {known}"
        ) from exc
