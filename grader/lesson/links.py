"""The lesson's internal links: every [text](#anchor) must scroll to its heading in every viewer."""

from __future__ import annotations

import difflib
import html.parser
import urllib.parse

import nbformat


class LinkError(ValueError):
    """An internal link that leads nowhere, or to more than one place; the message says which."""


# Internal links ([text](#anchor)) must land where a reader expects in every viewer. JupyterLab 4,
# Notebook 7 and `jupyter nbconvert --to html` all name a heading's anchor after its text, case
# kept and each space turned into "-": `## Does it work?` gets #Does-it-work? (JupyterLab and
# Notebook 7 keep it in a data-jupyter-id attribute and follow such links themselves; the export
# sets the id). Lowercase, GitHub-style anchors such as #does-it-work reach nothing in any of them.
# An explicit <a id="..."></a> in the markdown also works in all three (JupyterLab's sanitizer
# keeps it, moving the id to data-jupyter-id), so it counts as well. Measured with JupyterLab 4.6,
# Notebook 7.6 and nbconvert 7.17; tests/test_browser.py clicks every link of the lesson in each.


class _MarkdownAnchors(html.parser.HTMLParser):
    """The headings, explicit <a id> anchors and internal links of one markdown cell, read from
    the HTML that nbconvert renders for it."""

    HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.headings: list[tuple[str, str | None]] = []  # (text, the export's id or None)
        self.explicit: list[str] = []  # ids of <a id="..."> written in the markdown
        self.links: list[tuple[str, str]] = []  # (anchor without "#", link text)
        self._heading: tuple[str | None, list[str]] | None = None
        self._link: tuple[str, list[str]] | None = None
        self._pilcrow = 0  # inside the export's own "¶" link after a heading's text

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        if tag in self.HEADINGS:
            self._heading = (attr.get("id"), [])
        elif tag == "a":
            if "anchor-link" in (attr.get("class") or "").split():
                self._pilcrow += 1
                return
            if attr.get("id"):
                self.explicit.append(attr["id"])
            href = attr.get("href") or ""
            if href.startswith("#"):
                # The renderer percent-encodes what a URL may not hold; compare the text itself.
                self._link = (urllib.parse.unquote(href[1:]), [])

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._pilcrow:
            self._pilcrow -= 1
        elif tag == "a" and self._link is not None:
            self.links.append((self._link[0], "".join(self._link[1]).strip()))
            self._link = None
        elif tag in self.HEADINGS and self._heading is not None:
            self.headings.append(("".join(self._heading[1]), self._heading[0]))
            self._heading = None

    def handle_data(self, data: str) -> None:
        if self._pilcrow:
            return
        for open_element in (self._heading, self._link):
            if open_element is not None:
                open_element[1].append(data)


def _viewer_anchor(text: str) -> str:
    """The anchor that JupyterLab and Notebook 7 give a heading with this text."""
    return text.replace(" ", "-")


def _anchors_and_links(nb: nbformat.NotebookNode) -> tuple[dict[str, list[int]], dict[str, str], list[dict]]:
    """The anchors every viewer generates (anchor -> cells that carry it), the headings whose
    anchor differs between the notebook viewers and the export (viewer anchor -> export anchor),
    and the internal links (cell index, text, anchor without "#"), in order."""
    from nbconvert.filters.markdown_mistune import markdown2html_mistune

    anchors: dict[str, list[int]] = {}
    disagreeing: dict[str, str] = {}
    links: list[dict] = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        parsed = _MarkdownAnchors()
        parsed.feed(markdown2html_mistune(cell.source))
        parsed.close()
        for text, export_id in parsed.headings:
            anchor = _viewer_anchor(text)
            if export_id == anchor:
                anchors.setdefault(anchor, []).append(index)
            else:
                disagreeing[anchor] = export_id or "(none)"
        for anchor in parsed.explicit:
            anchors.setdefault(anchor, []).append(index)
        links += [{"cell": index, "text": text, "anchor": anchor} for anchor, text in parsed.links]
    return anchors, disagreeing, links


def internal_links(nb: nbformat.NotebookNode) -> list[dict]:
    """Every internal link in the markdown cells, in order: cell (index), text, anchor (without
    "#") and targets, the cells whose heading or <a id> carries that anchor in every viewer."""
    anchors, _, links = _anchors_and_links(nb)
    return [{**link, "targets": anchors.get(link["anchor"], [])} for link in links]


def check_internal_links(nb: nbformat.NotebookNode) -> None:
    """Raise LinkError unless every internal link leads to exactly one heading (or <a id>)."""
    anchors, disagreeing, links = _anchors_and_links(nb)
    for link in links:
        anchor, targets = link["anchor"], anchors.get(link["anchor"], [])
        first = nb.cells[link["cell"]].source.strip().splitlines()[0]
        where = f"cell {link['cell']} ({first[:60]!r}): the link [{link['text']}](#{anchor})"
        if len(targets) > 1:
            raise LinkError(
                f"{where} is ambiguous: cells {targets} all carry that anchor and the viewers jump to the "
                "first; give the target a heading of its own or an explicit <a id=...></a>"
            )
        if targets:
            continue
        if anchor in disagreeing:
            raise LinkError(
                f"{where}: JupyterLab and Notebook 7 give that heading this anchor, but the HTML export gives it "
                f"#{disagreeing[anchor]}; reword the heading or link to an explicit <a id=...></a> instead"
            )
        close = [a for a in anchors if a.lower() == anchor.lower()] or difflib.get_close_matches(
            anchor, list(anchors), n=1, cutoff=0.6
        )
        raise LinkError(
            f"{where} points at no heading. JupyterLab, Notebook 7 and the HTML export name a heading's "
            "anchor after its text with the case kept and every space turned into '-' "
            "(`## The U-Net` -> #The-U-Net), so a renamed heading needs its links renamed too."
            + (f" Did you mean #{close[0]}?" if close else "")
        )
