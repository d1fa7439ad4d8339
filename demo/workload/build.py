"""Generate the bundled prompt set from the hand-written knowledge base, deterministically.

``python -m demo.workload.build`` writes ``demo/workload/data/prompts.jsonl`` (``--check`` only
compares). Every choice (phrasing, opener, which other passages retrieval adds as distractors, their
order, the held-out flag) is a function of the prompt's id through SHA-256, never of a random generator
or the Python version, so a rebuild reproduces the committed file byte for byte.

- Products: one prompt per (product, attribute) from ``PRODUCT_TEMPLATES``, a second phrasing for
  weight and price, and a comparison of neighbouring products of a category. Contexts: the
  product's spec passage (plus the warranty terms for warranty questions).
- Documents: one prompt per phrasing of each hand-written question; context: the answering passage.
- Retrieval noise: 0, 1 or 2 further passages from the same source or category, up to 3 contexts in
  all, in a shuffled order.
- Held out: about 15% of the ids (SHA-256 of the id below 0.15 of the range).
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated

import typer

from demo.workload.knowledge import (
    COMPARISON_TEMPLATES,
    DOCUMENTS,
    PERSONAS,
    PRODUCT_TEMPLATES,
    PRODUCTS,
    Document,
    Product,
)
from demo.workload.prompts import DEFAULT_PROMPTS, Prompt, to_jsonl

HELD_OUT_SHARE = 0.15
MAX_CONTEXTS = 3
_LOWER_OPENERS = {
    "How",
    "What",
    "What's",
    "Is",
    "Can",
    "Do",
    "Does",
    "Which",
    "Where",
    "When",
    "Why",
    "Will",
    "Are",
    "Any",
    "Should",
    "Tell",
    "If",
    "My",
    "Please",
}


def unit(*parts: str) -> float:
    """A number in [0, 1) that depends only on the given strings."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def pick(items: tuple[str, ...], *parts: str) -> str:
    return items[int(unit(*parts) * len(items))]


def is_held_out(prompt_id: str) -> bool:
    return unit("held-out", prompt_id) < HELD_OUT_SHARE


def with_persona(prompt_id: str, question: str) -> str:
    persona = pick(PERSONAS, "persona", prompt_id)
    first, _, rest = question.partition(" ")
    if persona.endswith((", ", ": ")) and first in _LOWER_OPENERS:
        question = f"{first[0].lower()}{first[1:]} {rest}"
    return persona + question


def weight_text(grams: int) -> str:
    return f"{grams / 1000:g} kg" if grams >= 1000 else f"{grams} g"


# ---------------------------------------------------------------------------------------------
# Passages: (key, text) with a key unique over the whole knowledge base.


def spec_passage(product: Product) -> str:
    return (
        f"The {product.name} {product.spec}. It weighs {weight_text(product.weight_g)}, costs "
        f"{product.price_eur} euros and is made of {product.material}."
    )


def care_passage(product: Product) -> str:
    return f"{product.name}: {product.feature} Care: {product.care}"


def all_passages() -> dict[str, tuple[str, str]]:
    """Every passage by key, with the category its retrieval neighbours come from."""
    passages: dict[str, tuple[str, str]] = {}
    for product in PRODUCTS:
        passages[f"product/{product.slug}/spec"] = (product.category, spec_passage(product))
        passages[f"product/{product.slug}/care"] = (product.category, care_passage(product))
    for document in DOCUMENTS:
        for key, text in document.passages.items():
            passages[f"{document.slug}/{key}"] = (document.category, text)
    return passages


def distractors(prompt_id: str, answering: list[str], passages: dict[str, tuple[str, str]]) -> list[str]:
    """Passages retrieval brings along: from the same source first, then the same category."""
    room = min(MAX_CONTEXTS - len(answering), int(unit("noise", prompt_id) * 3))
    if room <= 0:
        return []
    sources = {key.rsplit("/", 1)[0] for key in answering}
    categories = {passages[key][0] for key in answering}
    candidates = [key for key in passages if key not in answering]
    same_source = [key for key in candidates if key.rsplit("/", 1)[0] in sources]
    same_category = [key for key in candidates if passages[key][0] in categories and key not in same_source]
    ranked = sorted(same_source, key=lambda key: unit("near", prompt_id, key)) + sorted(
        same_category, key=lambda key: unit("far", prompt_id, key)
    )
    return ranked[:room]


def make_prompt(
    prompt_id: str,
    category: str,
    source: str,
    question: str,
    answering: list[str],
    reference: str | None,
    passages: dict[str, tuple[str, str]],
) -> Prompt:
    keys = answering + distractors(prompt_id, answering, passages)
    keys.sort(key=lambda key: unit("order", prompt_id, key))
    return Prompt.model_validate(
        {
            "id": prompt_id,
            "category": category,
            "source": source,
            "held_out": is_held_out(prompt_id),
            "prompt": with_persona(prompt_id, question),
            "contexts": [passages[key][1] for key in keys],
            "reference": reference,
        }
    )


# ---------------------------------------------------------------------------------------------
# Questions


def product_prompts(passages: dict[str, tuple[str, str]]) -> Iterable[Prompt]:
    second_phrasing = ("weight", "price")
    for product in PRODUCTS:
        spec_key = f"product/{product.slug}/spec"
        answers: dict[str, tuple[list[str], str]] = {
            "weight": ([spec_key], f"The {product.name} weighs {weight_text(product.weight_g)}."),
            "price": ([spec_key], f"The {product.name} costs {product.price_eur} euros."),
            "spec": (
                [spec_key],
                f"The {product.name} {product.spec}; it weighs {weight_text(product.weight_g)} and costs "
                f"{product.price_eur} euros.",
            ),
            "material": ([spec_key], f"It is made of {product.material}."),
            "care": ([f"product/{product.slug}/care"], product.care),
            "warranty": (
                [spec_key, "warranty/terms"],
                f"The {product.name} is guaranteed for {product.warranty_years} years against faults in "
                "materials and workmanship.",
            ),
        }
        for attribute, templates in PRODUCT_TEMPLATES.items():
            answering, reference = answers[attribute]
            variants = [f"product-{product.slug}-{attribute}"]
            if attribute in second_phrasing:
                variants.append(f"{variants[0]}-2")
            first = int(unit("phrasing", variants[0]) * len(templates))
            for offset, prompt_id in enumerate(variants):
                question = templates[(first + offset) % len(templates)].format(name=product.name)
                yield make_prompt(
                    prompt_id, "product", product.slug, question, list(answering), reference, passages
                )
    for category in sorted({product.category for product in PRODUCTS}):
        members = [product for product in PRODUCTS if product.category == category]
        for a, b in itertools.pairwise(members):
            prompt_id = f"product-{a.slug}-vs-{b.slug}"
            template = pick(COMPARISON_TEMPLATES, "phrasing", prompt_id)
            lighter: str | None = None
            if template.startswith("Which is lighter"):
                light, heavy = sorted((a, b), key=lambda product: product.weight_g)
                lighter = (
                    f"The {light.name} is lighter: {weight_text(light.weight_g)} against "
                    f"{weight_text(heavy.weight_g)}."
                )
            yield make_prompt(
                prompt_id,
                "product",
                a.slug,
                template.format(a=a.name, b=b.name),
                [f"product/{a.slug}/spec", f"product/{b.slug}/spec"],
                lighter,
                passages,
            )


def document_prompts(document: Document, passages: dict[str, tuple[str, str]]) -> Iterable[Prompt]:
    counts: dict[str, int] = {}
    for question in document.questions:
        for phrasing in question.phrasings:
            counts[question.passage] = counts.get(question.passage, 0) + 1
            prompt_id = f"{document.slug}-{question.passage}-{counts[question.passage]}"
            yield make_prompt(
                prompt_id,
                document.category,
                document.slug,
                phrasing,
                [f"{document.slug}/{question.passage}"],
                question.reference,
                passages,
            )


def build_prompts() -> list[Prompt]:
    """The whole prompt set, in a fixed order (products, then documents in knowledge-base order)."""
    passages = all_passages()
    prompts = list(product_prompts(passages))
    for document in DOCUMENTS:
        prompts.extend(document_prompts(document, passages))
    ids = [prompt.id for prompt in prompts]
    duplicates = sorted({prompt_id for prompt_id in ids if ids.count(prompt_id) > 1})
    if duplicates:
        raise ValueError(f"duplicate prompt ids in the knowledge base: {duplicates}")
    return prompts


def main(
    output: Annotated[Path, typer.Option(help="Where to write the prompts file.")] = DEFAULT_PROMPTS,
    check: Annotated[
        bool, typer.Option(help="Only check that the file is up to date (exit 1 if not).")
    ] = False,
) -> None:
    """Write the bundled prompt set (or check it is up to date)."""
    text = to_jsonl(build_prompts())
    if check:
        current = output.read_text(encoding="utf-8") if output.exists() else ""
        if current != text:
            typer.echo(f"{output} is out of date: run python -m demo.workload.build", err=True)
            raise typer.Exit(1)
        typer.echo(f"{output} is up to date")
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    count = text.count("\n")
    typer.echo(f"wrote {count} prompts to {output}")


if __name__ == "__main__":
    typer.run(main)
