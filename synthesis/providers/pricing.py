"""What a model call costs: a price table per model, overridable by ``HILAPP_PRICES``.

Default prices are list prices in USD as published by the vendors (checked 2025-10-01):
per million input tokens, per million output tokens, per output image. Self-hosted diffusers
models cost what their GPU time costs: set it with ``HILAPP_PRICES``. The simulator is priced as
the model it stands in for, so that budgets and cost figures behave as in a real run.

Image models that bill their output as tokens (gpt-image-1, gemini-2.5-flash-image report
the image's output tokens in their usage) are charged by those tokens; the per-image price is
charged only when a call reports no output tokens (diffusers, a provider that omits usage) and
is what a call's estimate reserves, so it should be the price of the most expensive quality.

``HILAPP_PRICES`` format: ``model=in/out/image;model=in/out/image`` (USD), e.g.
``gpt-4o=2.5/10/0;flux=0/0/0.002``.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from functools import cache

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from synthesis.providers.base import Usage

PRICES_DATE = "2025-10-01"
MILLION = Decimal(1_000_000)


@dataclass(frozen=True)
class Price:
    per_million_in: Decimal
    per_million_out: Decimal
    per_image_out: Decimal


DEFAULT_PRICES: dict[str, Price] = {
    "gpt-4o": Price(Decimal("2.50"), Decimal("10.00"), Decimal(0)),
    "gemini-2.5-pro": Price(Decimal("1.25"), Decimal("10.00"), Decimal(0)),
    # gpt-image-1: image output tokens are billed; ~USD 0.167 for a high-quality 1024x1024.
    "gpt-image-1": Price(Decimal("5.00"), Decimal("40.00"), Decimal("0.167")),
    # Output images are 1290 tokens at USD 30 per million, i.e. USD 0.039 per image.
    "gemini-2.5-flash-image": Price(Decimal("0.30"), Decimal("30.00"), Decimal("0.039")),
    # Hosted list prices of the open models (self-hosting: override with your GPU cost).
    "flux.1-dev": Price(Decimal(0), Decimal(0), Decimal("0.025")),
    "flux": Price(Decimal(0), Decimal(0), Decimal("0.025")),
    "qwen-image-edit": Price(Decimal(0), Decimal(0), Decimal("0.030")),
}
FREE = Price(Decimal(0), Decimal(0), Decimal(0))


def _parse_overrides(spec: str) -> dict[str, Price]:
    prices = {}
    for item in filter(None, (part.strip() for part in spec.split(";"))):
        model, _, numbers = item.partition("=")
        parts = numbers.split("/")
        if not model or len(parts) != 3:
            raise ImproperlyConfigured(f"HILAPP_PRICES item {item!r}: expected model=in/out/image")
        try:
            values = [Decimal(p.strip()) for p in parts]
        except ArithmeticError:
            raise ImproperlyConfigured(f"HILAPP_PRICES item {item!r}: not numbers") from None
        prices[model.strip()] = Price(*values)
    return prices


@cache
def price_table() -> dict[str, Price]:
    return {**DEFAULT_PRICES, **_parse_overrides(settings.HILAPP_PRICE_OVERRIDES)}


def price_of(model: str) -> Price:
    return price_table().get(model, FREE)


def cost_usd(model: str, usage: Usage) -> Decimal:
    price = price_of(model)
    # Output images billed as output tokens are in tokens_out already.
    per_image = price.per_image_out if usage.tokens_out == 0 else Decimal(0)
    return (
        price.per_million_in * usage.tokens_in / MILLION
        + price.per_million_out * usage.tokens_out / MILLION
        + per_image * usage.images_out
    ).quantize(Decimal("0.000001"))


def estimate_usd(model: str, *, prompt_chars: int, images_out: int) -> Decimal:
    """A pessimistic estimate reserved against the budget while the call is in flight."""
    tokens_in = prompt_chars // 3 + 1000
    if images_out:  # the per-image list price stands for the output
        return cost_usd(model, Usage(tokens_in=tokens_in, images_out=images_out))
    return cost_usd(model, Usage(tokens_in=tokens_in, tokens_out=2000))
