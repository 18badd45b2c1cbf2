"""The committed figures are up to date, and what they show agrees with torch.

The figures are drawn by `figures/`, and figures/inputs.json records what each file was drawn from:
its code, its data and its renderer (figures/inputs.py). These tests check that the recorded inputs
are those of today's code, without drawing; that a change marks exactly the figures it affects and
that `python -m figures` redraws those and touches nothing else; that what is redrawn comes out as
committed; and, independently of the drawing code, that the U-Net figure shows a real Unet's
tensors, the transposed convolution figure shows torch's numbers, and each block diagram shows
every label of its mermaid text.

The block diagrams are drawn by mermaid in Chromium; the one test that draws them is skipped, with
the reason, where Chromium or the mermaid library (`npm ci --prefix figures/mermaid`) is missing.
"""

import json
import os
import re
import shutil
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from itertools import combinations
from pathlib import Path

import pytest
import torch as t
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.text import Text

import figures
from figures import __main__ as cli
from figures import architecture, diagrams, groupnorm, inputs, lesson, style, trans_conv
from grader import paths
from grader.lesson.build import IMAGE_REF, source_notebook

SVG = "{http://www.w3.org/2000/svg}"
NO_DIAGRAMS = diagrams.unavailable()
needs_diagrams = pytest.mark.skipif(NO_DIAGRAMS is not None, reason=f"block diagrams not drawn: {NO_DIAGRAMS}")
FIRST_DIAGRAM = next(iter(figures.DIAGRAMS))
PLOTS = ["w3d4_silu.png", "w3d4_pos_embedding_heatmap.png", "w3d4_pos_embedding_dots.png"]
LONG_AGO = 1_000_000_000  # seconds since 1970: an mtime no redraw can leave behind


def copy_figures(folder: Path, names=figures.ALL) -> Path:
    """The committed figures and figures/inputs.json, copied into folder with an old mtime."""
    for name in [*names, inputs.MANIFEST]:
        shutil.copyfile(figures.FOLDER / name, folder / name)
        os.utime(folder / name, (LONG_AGO, LONG_AGO))
    return folder


def files(folder: Path) -> dict[str, tuple[int, bytes]]:
    """(mtime in ns, bytes) of every file in folder."""
    return {path.name: (path.stat().st_mtime_ns, path.read_bytes()) for path in sorted(folder.iterdir())}


def without_chromium_version(svg: bytes) -> bytes:
    """A diagram file less the full Chromium version in its stamp comment."""
    return re.sub(rb"Chromium [\d.]+ -->", b"Chromium -->", svg)


# (a) the committed files are up to date, and only changed inputs redraw a figure


@pytest.mark.parametrize("name", figures.ALL)
def test_committed_figure_is_up_to_date(name):
    """Compares the recorded inputs with today's: no drawing, no browser."""
    reasons = inputs.check(names=[name]).get(name)
    assert not reasons, f"figures/{name} is stale: {'; '.join(reasons)}: run `python -m figures` and commit"


def test_the_manifest_is_sorted_json_naming_every_figure_and_no_machine_path():
    text = (figures.FOLDER / inputs.MANIFEST).read_text(encoding="utf-8")
    manifest = inputs.load()
    assert text == json.dumps(manifest, indent=1, sort_keys=True) + "\n"
    assert sorted(manifest) == sorted(figures.ALL)
    for name, entry in manifest.items():
        assert set(entry) <= {"code", "data", "renderer", "file"}, name
        for key in [*entry["code"], *entry.get("data", {})]:
            assert key == "mermaid text" or re.fullmatch(r"(figures|solutions)/\w+\.py", key), (name, key)


def test_the_lesson_sources_are_the_files_the_figures_import():
    assert Path(lesson.solution().__file__).resolve() in lesson.SOURCES
    part1 = sys.modules["w3d4_part1_diffusion_training_solution"]
    assert Path(part1.__file__).resolve() in lesson.SOURCES


def test_a_chromium_patch_release_leaves_the_diagrams_fresh_and_a_new_major_does_not(monkeypatch):
    major = inputs.load()[FIRST_DIAGRAM]["renderer"]["chromium"]
    monkeypatch.setattr(diagrams, "chromium_version", lambda: f"{major}.0.9999.999")
    assert inputs.check() == {}
    monkeypatch.setattr(diagrams, "chromium_version", lambda: f"{int(major) + 1}.0.1000.1")
    changed = [f"renderer changed (chromium {major} -> {int(major) + 1})"]
    assert inputs.check() == {name: changed for name in figures.DIAGRAMS}


def copy_sources(root: Path) -> Path:
    """The files the digests read (figures/*.py and the lesson solution), copied under root."""
    for path in [*figures.FOLDER.glob("*.py"), *lesson.SOURCES]:
        target = root / path.relative_to(lesson.ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    return root


SOLUTION = lesson.SOURCES[0].relative_to(lesson.ROOT).as_posix()


@pytest.mark.parametrize("path, old, new, stale, reason", [
    ("figures/trans_conv.py", "STRIDE = 1", "STRIDE = 2", ["w3d4_unet_trans_conv.png"],
     "code changed (figures/trans_conv.py)"),
    ("figures/plots.py", "STEPS = 50", "STEPS = 60", PLOTS, "code changed (figures/plots.py)"),
    ("figures/style.py", '"font.size": 9,', '"font.size": 10,', list(figures.DRAWINGS),
     "code changed (figures/style.py)"),
    ("figures/diagrams.py", "SCALE = 0.75", "SCALE = 0.8", list(figures.DIAGRAMS),
     "code changed (figures/diagrams.py)"),
    # The mermaid texts are each diagram's data, not the code of all six.
    ("figures/diagrams.py", "Attention Block", "Attention", [], None),
    (SOLUTION, "def swish(", "def swish_(", ["w3d4_unet_architecture.svg", *PLOTS],
     f"data changed ({SOLUTION})"),
    ("figures/inputs.py", "MANIFEST = ", "MANIFEST=", [], None),  # bookkeeping draws nothing
    # The lesson's prose (its markdown cells are comments) is in no figure.
    (SOLUTION, "# **How to work through this notebook.**", "# **How to work through the notebook.**", [], None),
])
def test_an_edit_marks_exactly_the_figures_it_draws_stale(tmp_path, path, old, new, stale, reason):
    root = copy_sources(tmp_path)
    assert inputs.check(root=root) == {}
    source = (root / path).read_text(encoding="utf-8")
    assert old in source
    (root / path).write_text(source.replace(old, new), encoding="utf-8")
    assert inputs.check(root=root) == {name: [reason] for name in stale}


def test_editing_one_diagrams_text_marks_that_diagram_stale_and_check_says_why(monkeypatch, capsys):
    text = figures.DIAGRAMS[FIRST_DIAGRAM]
    monkeypatch.setitem(figures.DIAGRAMS, FIRST_DIAGRAM, text.replace("Output", "Result"))
    assert inputs.check() == {FIRST_DIAGRAM: ["data changed (mermaid text)"]}
    monkeypatch.setattr(sys, "argv", ["python -m figures", "--check"])
    assert cli.main() == 1
    assert f"{FIRST_DIAGRAM} is stale: data changed (mermaid text)" in capsys.readouterr().err


def test_an_unchanged_run_rewrites_no_file(tmp_path):
    folder = copy_figures(tmp_path)
    before = files(folder)
    done = figures.update(folder)
    assert (done.redrawn, done.cannot, done.left) == ({}, {}, figures.ALL)
    assert files(folder) == before


def test_only_the_stale_drawings_are_redrawn_and_they_come_out_as_committed(tmp_path):
    folder = copy_figures(tmp_path)
    trans_conv_png, silu = "w3d4_unet_trans_conv.png", "w3d4_silu.png"
    (folder / trans_conv_png).write_bytes(b"edited by hand")
    (folder / silu).unlink()
    before = files(folder)
    done = figures.update(folder)
    assert done.redrawn == {
        trans_conv_png: [f"the file is not the one drawn (its digest is not the one in {inputs.MANIFEST})"],
        silu: ["missing"],
    }
    after = files(folder)
    for name in figures.ALL:
        if name in done.redrawn:
            assert after[name][1] == (figures.FOLDER / name).read_bytes(), name
        else:
            assert after[name] == before[name], f"{name} was rewritten"
    assert after[inputs.MANIFEST][1] == (figures.FOLDER / inputs.MANIFEST).read_bytes()


def test_every_drawing_redrawn_here_is_byte_for_byte_the_committed_file(tmp_path):
    """What the recorded inputs promise for the matplotlib figures: the same inputs, the same bytes."""
    for path in figures.render(tmp_path, list(figures.DRAWINGS)):
        assert path.read_bytes() == (figures.FOLDER / path.name).read_bytes(), path.name


def test_without_chromium_fresh_diagrams_pass_and_stale_ones_are_left_and_named(monkeypatch, tmp_path):
    monkeypatch.setattr(diagrams, "CHROMIUM", Path("/nonexistent/chromium"))
    assert diagrams.chromium_version() is None and "/nonexistent/chromium is missing" in diagrams.unavailable()
    assert inputs.check() == {}
    folder = copy_figures(tmp_path)
    text = figures.DIAGRAMS[FIRST_DIAGRAM]
    monkeypatch.setitem(figures.DIAGRAMS, FIRST_DIAGRAM, text.replace("Output", "Result"))
    before = files(folder)
    done = figures.update(folder)
    assert (done.redrawn, done.cannot) == ({}, {FIRST_DIAGRAM: ["data changed (mermaid text)"]})
    assert files(folder) == before


@needs_diagrams
def test_diagrams_redrawn_in_chromium_are_svgs_with_every_label_as_committed(tmp_path):
    """Draws all six in this machine's Chromium, through `python -m figures`'s own path."""
    folder = copy_figures(tmp_path)
    for name in figures.DIAGRAMS:
        (folder / name).unlink()
    done = figures.update(folder)
    assert done.redrawn == {name: ["missing"] for name in figures.DIAGRAMS}
    assert done.left == list(figures.DRAWINGS)
    manifest = inputs.load(folder)
    for name in figures.DIAGRAMS:
        drawn = folder / name
        root = ET.parse(drawn).getroot()
        assert root.tag == f"{SVG}svg" and root.get("id") == diagrams.svg_id(name)
        missing = mermaid_labels(figures.DIAGRAMS[name]) - svg_words(drawn)
        assert not missing, f"{name} lacks the words {sorted(missing)}"
        assert manifest[name] == {**inputs.current(name), "file": inputs.digest(drawn.read_bytes())}
        # Drawn by a Chromium of the recorded major version, so the same picture (figures/inputs.py).
        assert manifest[name]["renderer"] == inputs.load()[name]["renderer"]
        committed = (figures.FOLDER / name).read_bytes()
        assert without_chromium_version(drawn.read_bytes()) == without_chromium_version(committed), name


def test_no_date_or_version_in_the_files():
    for name in figures.ALL:
        data = (figures.FOLDER / name).read_bytes()
        for marker in (b"Matplotlib v", b"<dc:date>", b"Software"):
            assert marker not in data, f"{name} contains {marker!r}"


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
