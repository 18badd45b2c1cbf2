"""Maths rendered to MathML on the server, so that feedback and the formgrader need no MathJax.

nbconvert's `markdown2html` leaves `$...$` and `$$...$$` in the HTML for MathJax, which the
classic and nbgrader templates load from a CDN: offline, readers see raw TeX. The filter here
renders markdown the same way (nbconvert's parser and renderer) except that each formula becomes a
`<math>` element that browsers draw by themselves. `course/nbgrader_config.py` registers it:

    c.HTMLExporter.filters = {"markdown2html": "grader.course.maths.markdown2html"}

Formulas can come from a student (markdown cells they add are kept), so the MathML is parsed and
written out again from an allow-list of MathML elements and attributes, every text escaped. A
formula that latex2mathml cannot convert, or whose output is not plain MathML (`\\text{<b>}`
passes HTML through), is shown as its TeX, escaped, in a `<code>`.
"""

from __future__ import annotations

import html
import xml.etree.ElementTree as ET

from jinja2 import pass_context
from latex2mathml.converter import convert
from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath

MATHML_NS = "{http://www.w3.org/1998/Math/MathML}"
ELEMENTS = frozenset(
    "math mrow mi mn mo ms mtext mspace msub msup msubsup mfrac msqrt mroot mstyle mtable mtr mtd "
    "munder mover munderover menclose mpadded mphantom merror mmultiscripts mprescripts none "
    "semantics annotation mlabeledtr maligngroup malignmark".split()
)
ATTRIBUTES = frozenset(
    "display mathvariant stretchy fence separator accent accentunder columnalign columnspacing "
    "columnlines rowalign rowspacing rowlines frame framespacing displaystyle scriptlevel lspace "
    "rspace minsize maxsize movablelimits notation linethickness symmetric largeop form mathsize "
    "mathcolor mathbackground width height depth voffset align equalrows equalcolumns encoding "
    "bevelled numalign denomalign".split()
)


class NotMathML(ValueError):
    """latex2mathml's output holds something other than allowed MathML."""


def _write(element: ET.Element, out: list[str]) -> None:
    tag = element.tag.removeprefix(MATHML_NS)
    if tag not in ELEMENTS:
        raise NotMathML(tag)
    attributes = ""
    for name, value in element.attrib.items():
        if name not in ATTRIBUTES:
            raise NotMathML(name)
        attributes += f' {name}="{html.escape(value, quote=True)}"'
    out.append(f"<{tag}{attributes}>{html.escape(element.text or '', quote=False)}")
    for child in element:
        _write(child, out)
        out.append(html.escape(child.tail or "", quote=False))
    out.append(f"</{tag}>")


def tex_to_mathml(tex: str, display: bool) -> str:
    """One formula as a `<math>` element (HTML5 needs no xmlns), or its TeX in a `<code>`."""
    try:
        markup = convert(tex, display="block" if display else "inline")
        if "<!" in markup or "<?" in markup:  # no comments, CDATA or processing instructions
            raise NotMathML(markup)
        out: list[str] = []
        _write(ET.fromstring(markup), out)
        return "".join(out)
    except Exception:  # noqa: BLE001 - any failure of the converter shows the TeX instead
        delimiter = "$$" if display else "$"
        return f'<code class="tex">{html.escape(delimiter + tex + delimiter, quote=False)}</code>'


class MathMLRenderer(IPythonRenderer):
    """nbconvert's renderer, with the maths as MathML instead of TeX left for MathJax."""

    def block_math(self, body: str) -> str:
        return tex_to_mathml(body, display=True)

    def multiline_math(self, text: str) -> str:
        # Only older mistune versions call this, with the delimiters still on.
        return tex_to_mathml(text.strip().strip("$"), display=True)

    def latex_environment(self, name: str, body: str) -> str:
        return tex_to_mathml(f"\\begin{{{name}}}{body}\\end{{{name}}}", display=True)

    def inline_math(self, body: str) -> str:
        return tex_to_mathml(body, display=False)


@pass_context
def markdown2html(context, source: str) -> str:
    """Markdown to HTML, as nbconvert's HTMLExporter.markdown2html with its default settings (images
    not embedded, a "¶" anchor link on headings, cell attachments resolved), maths as MathML."""
    cell = context.get("cell", {})
    renderer = MathMLRenderer(
        escape=False,
        attachments=cell.get("attachments", {}),
        path=context.get("resources", {}).get("metadata", {}).get("path", ""),
    )
    return MarkdownWithMath(renderer=renderer).render(source)
