"""Every departure from a book's data is said once on its tab (a "**Data.**" note) and listed once in the
README's table of departures, so a reader never mistakes the stand-in for the book's own data set."""
from pathlib import Path

import gradio as gr
import pytest

from studio import parts
from studio.app import TABS

README = Path(__file__).resolve().parents[1] / "README.md"
NOTED = [t for t in TABS if getattr(t, "DATA_NOTE", None)]


def departures() -> str:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("### Where the data departs from the books"):]
    return section[:section.index("\n## ")]


def test_the_tabs_that_depart_from_a_books_data_say_so():
    assert {t.TITLE for t in NOTED} >= {"VAE", "GAN", "Diffusion", "Paint", "Text", "Music",
                                        "Encoder–decoder & QA", "Gaussians & EM"}


@pytest.mark.parametrize("tab", NOTED, ids=lambda t: t.TITLE)
def test_a_data_note_is_shown_once_on_its_tab_and_listed_in_the_readme(tab):
    with gr.Blocks() as demo:
        tab.build(parts.Page(demo, tab=tab.TITLE))
    shown = [b.value for b in demo.blocks.values()
             if isinstance(b, gr.Markdown) and isinstance(b.value, str) and "**Data.**" in b.value]
    assert shown == [tab.DATA_NOTE]
    assert departures().count(f"| {tab.TITLE} |") == 1
