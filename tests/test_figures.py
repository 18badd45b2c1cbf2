"""The committed figures are up to date, and what they show agrees with torch.

The figures are drawn by `figures/` (`python -m figures` re-renders them all). These tests check
that the files in the repository are exactly what the code draws now, and, independently of the
drawing code, that the U-Net figure shows a real Unet's tensors, the transposed convolution
figure shows torch's numbers, and each block diagram shows every label of its mermaid text.

The block diagrams are drawn by mermaid in Chromium; their tests are skipped, with the reason,
where Chromium or the mermaid library (`npm ci --prefix figures/mermaid`) is missing.
"""

import re
import shutil
import xml.etree.ElementTree as ET
from collections import Counter
from itertools import combinations
from pathlib import Path

import pytest
import torch as t
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.text import Text

import figures
from figures import architecture, diagrams, groupnorm, style, trans_conv
from grader import paths
from grader.lesson.build import IMAGE_REF, source_notebook

SVG = "{http://www.w3.org/2000/svg}"
NO_DIAGRAMS = diagrams.unavailable()
needs_diagrams = pytest.mark.skipif(NO_DIAGRAMS is not None, reason=f"block diagrams not drawn: {NO_DIAGRAMS}")


def drawable(names) -> list:
    """pytest parameters, one per figure; a diagram's is skipped where diagrams cannot be drawn."""
    return [pytest.param(name, marks=needs_diagrams) if name in figures.DIAGRAMS else name for name in names]


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> Path:
    """Every figure rendered now, into a temporary folder."""
    folder = tmp_path_factory.mktemp("figures")
    figures.render_all(folder)
    return folder


# (a) the committed files are not stale


@pytest.mark.parametrize("name", drawable(figures.ALL))
def test_committed_figure_matches_a_fresh_render(fresh, name):
    committed = figures.FOLDER / name
    assert committed.exists(), f"figures/{name} is missing: run `python -m figures`"
    browser = name in figures.DIAGRAMS and diagrams.only_the_browser_differs(committed, fresh / name)
    if browser:  # the text is checked by test_diagram_file_was_drawn_from_the_current_mermaid_text
        pytest.skip(f"figures/{name}: {browser}")
    assert committed.read_bytes() == (fresh / name).read_bytes(), (
        f"figures/{name} is stale: run `python -m figures` and commit the result"
    )


def test_rendering_twice_gives_the_same_bytes(fresh, tmp_path):
    written = figures.render_all(tmp_path)
    assert len(written) == len(figures.DRAWINGS) + (0 if NO_DIAGRAMS else len(figures.DIAGRAMS))
    for path in written:
        assert path.read_bytes() == (fresh / path.name).read_bytes(), path.name


def test_check_names_stale_and_missing_files(fresh, tmp_path):
    for name in figures.DRAWINGS:
        shutil.copy(fresh / name, tmp_path / name)
    assert figures.stale(tmp_path, with_diagrams=False) == []
    names = list(figures.DRAWINGS)
    (tmp_path / names[0]).write_bytes((tmp_path / names[0]).read_bytes() + b"\n")
    (tmp_path / names[1]).unlink()
    assert figures.stale(tmp_path, with_diagrams=False) == [f"{names[0]} (stale)", f"{names[1]} (missing)"]


def test_no_date_or_version_in_the_files():
    for name in figures.ALL:
        data = (figures.FOLDER / name).read_bytes()
        for marker in (b"Matplotlib v", b"<dc:date>", b"Software"):
            assert marker not in data, f"{name} contains {marker!r}"


def test_without_chromium_the_diagrams_are_checked_against_their_mermaid_text(monkeypatch, tmp_path):
    monkeypatch.setattr(diagrams, "CHROMIUM", Path("/nonexistent/chromium"))
    assert "/nonexistent/chromium is missing" in diagrams.unavailable()
    drawn, committed = tmp_path / "drawn", tmp_path / "committed"
    drawn.mkdir(), committed.mkdir()
    assert [path.name for path in figures.render_all(drawn)] == list(figures.DRAWINGS)
    for name in figures.ALL:
        shutil.copy(figures.FOLDER / name, committed / name)
    assert figures.check(committed, fresh=drawn) == ([], [])
    first = next(iter(figures.DIAGRAMS))
    monkeypatch.setitem(figures.DIAGRAMS, first, figures.DIAGRAMS[first].replace("Output", "Result"))
    assert figures.check(committed, fresh=drawn) == ([f"{first} (stale: drawn from other mermaid text)"], [])


@needs_diagrams
def test_a_diagram_drawn_by_another_chromium_is_a_note_not_a_problem(fresh, tmp_path):
    for name in figures.ALL:
        shutil.copy(fresh / name, tmp_path / name)
    name = next(iter(figures.DIAGRAMS))
    text = (tmp_path / name).read_text()
    version = diagrams.stamp(tmp_path / name)["chromium"]
    moved = text.replace(f"Chromium {version}", "Chromium 1.2.3").replace('x="', 'x="1', 1)
    (tmp_path / name).write_text(moved)
    problems, notes = figures.check(tmp_path, fresh=fresh)
    assert problems == [] and len(notes) == 1 and "drawn with Chromium 1.2.3" in notes[0]
    (tmp_path / name).write_text(moved.replace("mermaid 11.", "mermaid 10."))  # not only the browser
    assert figures.check(tmp_path, fresh=fresh)[0] == [f"{name} (stale)"]


# (b) the architecture figure shows the tensors of a real Unet


def real_tensors() -> list[tuple[str, int, int]]:
    """(kind, channels, height) of every drawn tensor, by calling the blocks of a Unet by hand.

    Kind is "tensor", or "copy" for the skip appended by a concatenation (its own channels).
    """
    unet = architecture.build_unet()
    shape = lambda kind, x: (kind, x.shape[1], x.shape[2])  # noqa: E731
    with t.no_grad():
        emb = unet.step_mlp(t.tensor([10]))
        h = t.randn(1, *architecture.IMAGE_SHAPE)
        drawn = [shape("tensor", h)]
        h = unet.in_conv(h)
        drawn.append(shape("tensor", h))
        skips = []
        for down in unet.downs:
            h = down.res1(h, emb)
            drawn.append(shape("tensor", h))
            h = down.res2(h, emb)
            drawn.append(shape("tensor", h))
            skips.append(down.attention(h))
            h = down.down(skips[-1])
            if down.downsample:
                drawn.append(shape("tensor", h))
        h = unet.mid.res1(h, emb)
        drawn.append(shape("tensor", h))
        h = unet.mid.res2(unet.mid.attention(h), emb)
        drawn.append(shape("tensor", h))
        for up in unet.ups:
            skip = skips.pop()
            drawn.append(shape("copy", skip))
            h = up.res1(t.cat([h, skip], dim=1), emb)
            drawn.append(shape("tensor", h))
            h = up.res2(h, emb)
            drawn.append(shape("tensor", h))
            h = up.up(up.attention(h))
            drawn.append(shape("tensor", h))
        h = unet.out_block(h, emb)
        drawn.append(shape("tensor", h))
        out = unet.out_conv(h)
        drawn.append(shape("tensor", out))
    assert out.shape[1:] == architecture.IMAGE_SHAPE
    return drawn


def svg_boxes(path: Path) -> list[tuple[str, int, float, float]]:
    """(kind, index, width, height) of each rectangle with a tensor-<i> or copy-<i> id."""
    boxes = []
    for group in ET.parse(path).iter(f"{SVG}g"):
        match = re.fullmatch(r"(tensor|copy)-(\d+)", group.get("id", ""))
        if match:
            path = group.find(f"{SVG}path").get("d")
            numbers = [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?", path)]
            xs, ys = numbers[0::2], numbers[1::2]
            boxes.append((match[1], int(match[2]), max(xs) - min(xs), max(ys) - min(ys)))
    return sorted(boxes, key=lambda box: box[1])


def test_architecture_boxes_are_sized_like_a_real_unets_tensors():
    expected = real_tensors()
    boxes = svg_boxes(figures.FOLDER / "w3d4_unet_architecture.svg")
    assert [kind for kind, *_ in boxes] == [kind for kind, *_ in expected]
    # One scale for all: height proportional to the spatial size, width to the channels.
    height_scale = boxes[0][3] / expected[0][2]
    width_scale = boxes[0][2] / expected[0][1]
    for (kind, i, width, height), (_, channels, size) in zip(boxes, expected):
        assert height == pytest.approx(size * height_scale, rel=1e-3), f"{kind}-{i} height"
        assert width == pytest.approx(channels * width_scale, rel=1e-3), f"{kind}-{i} width"


def test_architecture_labels_give_channels_and_height():
    expected = real_tensors()
    with style.house_style():
        texts = {text.get_gid(): text.get_text() for text in architecture.draw().axes[0].texts}
    labelled = 0
    for i, (kind, channels, size) in enumerate(expected):
        if f"channels-{i}" not in texts:
            continue
        labelled += 1
        if kind == "copy":  # the concatenation is labelled with all of its channels
            channels += expected[i - 1][1]
        assert (texts[f"channels-{i}"], texts[f"height-{i}"]) == (str(channels), str(size))
    # Every tensor is labelled, except the first half of each concatenation.
    assert labelled == len(expected) - sum(kind == "copy" for kind, *_ in expected)


# (c) the transposed convolution figure shows torch's numbers


def drawn_grids() -> dict[str, t.Tensor]:
    """The numbers written in the figure, by grid name; blank cells read as 0."""
    with style.house_style():
        texts = trans_conv.draw().axes[0].texts
    cells = {}
    for text in texts:
        if text.get_gid():
            name, position = text.get_gid().split(":")
            cells[name, tuple(int(v) for v in position.split(","))] = float(text.get_text())
    def grid(name: str, rows: int, cols: int) -> t.Tensor:
        values = [[cells.get((name, (r, c)), 0.0) for c in range(cols)] for r in range(rows)]
        return t.tensor(values)

    def size(name: str) -> tuple[int, int]:
        positions = [position for n, position in cells if n == name]
        return 1 + max(r for r, _ in positions), 1 + max(c for _, c in positions)

    grids = {name: grid(name, *size(name)) for name in ("input", "kernel", "output")}
    for name in {name for name, _ in cells if name.startswith("stamp")}:
        grids[name] = grid(name, *grids["output"].shape)  # a stamp is as large as the output
    return grids


def test_trans_conv_output_is_torchs():
    grids = drawn_grids()
    kernel_size = grids["kernel"].shape[0]
    layer = t.nn.ConvTranspose2d(1, 1, kernel_size, stride=trans_conv.STRIDE, bias=False)
    with t.no_grad():
        layer.weight.copy_(grids["kernel"][None, None])
        expected = layer(grids["input"][None, None])[0, 0]
    assert t.equal(grids["output"], expected)


def test_trans_conv_stamps_are_scaled_kernels_that_add_up_to_the_output():
    grids = drawn_grids()
    x, kernel, stride = grids["input"], grids["kernel"], trans_conv.STRIDE
    k = kernel.shape[0]
    total = t.zeros_like(grids["output"])
    for row in range(x.shape[0]):
        for col in range(x.shape[1]):
            stamp = grids[f"stamp{row}{col}"]
            expected = t.zeros_like(stamp)
            top, left = row * stride, col * stride
            expected[top : top + k, left : left + k] = x[row, col] * kernel
            assert t.equal(stamp, expected), f"stamp of input cell ({row}, {col})"
            total += stamp
    assert t.equal(total, grids["output"])


# Readability of the hand-placed figures


@pytest.mark.parametrize("module", [architecture, trans_conv, groupnorm])
def test_labels_neither_overlap_nor_leave_the_figure(module):
    with style.house_style():
        fig = module.draw()
        renderer = FigureCanvasAgg(fig).get_renderer()
        boxes = [
            (text.get_text(), text.get_window_extent(renderer))
            for text in fig.findobj(Text)
            if text.get_visible() and text.get_text().strip()
        ]
    page = fig.bbox
    for label, box in boxes:
        inside = page.x0 <= box.x0 and box.x1 <= page.x1 and page.y0 <= box.y0 and box.y1 <= page.y1
        assert inside, f"{label!r} is cut off at the edge of the figure"
    for (a, box_a), (b, box_b) in combinations(boxes, 2):
        assert not box_a.overlaps(box_b), f"{a!r} overlaps {b!r}"


# The block diagrams: drawn from their mermaid text, shown by the lesson as files


def mermaid_labels(text: str) -> Counter:
    """The words of every node label ([...]) and edge label (|...|) of a mermaid flowchart."""
    labels = re.findall(r"\[([^\]]+)\]|\|([^|]+)\|", text)
    words = Counter()
    for node, edge in labels:
        words.update((node or edge).replace("<br/>", " ").split())
    return words


def svg_words(path: Path) -> Counter:
    """The words written in an SVG drawn by mermaid: one <tspan class="... row"> per line."""
    words = Counter()
    for line in ET.parse(path).iter(f"{SVG}tspan"):
        if "row" in line.get("class", "").split():
            words.update("".join(line.itertext()).split())
    return words


@pytest.mark.parametrize("name", list(figures.DIAGRAMS))
def test_diagram_shows_every_label_of_its_mermaid_text(name):
    missing = mermaid_labels(figures.DIAGRAMS[name]) - svg_words(figures.FOLDER / name)
    assert not missing, f"{name} lacks the words {sorted(missing)} (did mermaid draw an error?)"


@pytest.mark.parametrize("name", list(figures.DIAGRAMS))
def test_diagram_file_was_drawn_from_the_current_mermaid_text(name):
    """Runs without a browser: catches mermaid text edited but not redrawn."""
    assert not diagrams.drawn_from_other_text(figures.FOLDER / name), (
        f"figures/{name} was drawn from other mermaid text: run `python -m figures`"
    )


@pytest.mark.parametrize("name", list(figures.DIAGRAMS))
def test_diagram_file_has_a_pixel_size_for_img_tags(name):
    root = ET.parse(figures.FOLDER / name).getroot()
    _, _, width, height = (float(v) for v in root.get("viewBox").split())
    assert root.get("id") == diagrams.svg_id(name)
    assert (int(root.get("width")), int(root.get("height"))) == (
        round(width * diagrams.SCALE), round(height * diagrams.SCALE)
    )


def test_the_lesson_shows_each_diagram_once_as_a_file_and_has_no_mermaid_block():
    nb = source_notebook(paths.LESSON_SOURCE)
    markdown = [cell.source for cell in nb.cells if cell.cell_type == "markdown"]
    shown = Counter(name for source in markdown for name in IMAGE_REF.findall(source))
    assert {name: shown[name] for name in figures.DIAGRAMS} == {name: 1 for name in figures.DIAGRAMS}
    fenced = [source[:60] for source in markdown if "```mermaid" in source]
    assert not fenced, (
        "a ```mermaid block is hidden in an offline HTML export and shown as text on git hosts: "
        f"add it to figures/diagrams.py and show the SVG file instead ({fenced})"
    )
