"""What a careful reader trips on in a chart, found on the rendered figure: matplotlib's
renderer gives every text's and legend's bounding box, and the data's display coordinates.

    problems = figure_problems(fig)     # [] when the chart is fit to publish

Checked: every numeric axis has a label with a unit (a categorical one, a label); no two tick
labels of an axis overlap; no legend box covers plotted data (lines, points, bars, error bars);
no title, label or legend text falls outside the figure; no label inside a panel sits on a
line or an error bar; no two markers of a scatter (stars, points) overlap; a line through
fewer than 3 points shows its markers; a point declared to rest on fewer samples than its
line's minimum (`style.declare_samples`, `style.plot_points`) is drawn hollow.
"""

from __future__ import annotations

import re

import numpy as np
from matplotlib.collections import LineCollection, PathCollection
from matplotlib.colors import to_rgba
from matplotlib.patches import Rectangle
from matplotlib.transforms import Bbox

from bdh_pl.charts.style import DPI

UNIT = re.compile(
    r"\(.+\)|\bper\b|/|%|\b(bytes?|tokens?|seconds?|s|FLOPs|parameters|params|steps|epochs?|"
    r"MiB|MB|GiB|GB|nats|bits|bpb)\b"
)
NUMERIC = re.compile(
    r"[-+]?(\d[\d,]*\.?\d*|\.\d+)([eE][-+]?\d+)?[kMGTPEmμunpf]?%?|[-+]?(\d+(\.\d+)?×)?10\^[-+]?\d+"
)
PAD = 0.5  # pixels: boxes that merely touch do not overlap


def figure_problems(fig, dpi: float = DPI) -> list[str]:
    """Each problem a reader would see, as one sentence naming the panel; [] when none.
    Checked as saved (at `dpi`, `save_figure`'s)."""
    fig.set_dpi(dpi)
    fig.canvas.draw()  # final layout: every extent below is what the PNG shows
    renderer = fig.canvas.get_renderer()
    problems = _outside_figure(fig, renderer)
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]
    for ax in fig.axes:
        if not ax.get_visible() or not ax.has_data():
            continue
        name = _panel(ax)
        for axis in (ax.xaxis, ax.yaxis):
            problems += [f"{name}: {p}" for p in _axis_problems(axis, renderer)]
        for legend in legends:
            if _covers_data(ax, legend.get_window_extent(renderer)):
                problems.append(f"{name}: the legend covers plotted data")
        problems += [f"{name}: {p}" for p in _labels_on_lines(ax, renderer)]
        problems += [f"{name}: {p}" for p in _overlapping_marks(ax)]
        problems += [f"{name}: {p}" for p in _bare_short_lines(ax)]
        problems += [f"{name}: {p}" for p in _thin_points_filled(ax)]
    return problems


def _panel(ax) -> str:
    title = ax.get_title().replace("\n", " ")
    return f"panel '{title}'" if title else f"panel {ax.get_figure().axes.index(ax) + 1}"


def _drawn_texts(fig) -> list:
    texts = [*fig.texts, *(t for t in (fig._suptitle, fig._supxlabel, fig._supylabel) if t)]
    for legend in [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]:
        texts += [*legend.get_texts(), legend.get_title()]
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        texts += [ax.title, ax._left_title, ax._right_title, *ax.texts]
        for axis in (ax.xaxis, ax.yaxis):
            texts += [axis.label, axis.get_offset_text(), *_tick_labels(axis)]
        for child in ax.child_axes:  # secondary axes
            for axis in (child.xaxis, child.yaxis):
                texts += [axis.label, *_tick_labels(axis)]
    return [t for t in texts if t.get_visible() and t.get_text().strip()]


def _tick_labels(axis) -> list:
    """The tick labels drawn (inside the view limits, visible, not empty)."""
    ticks = axis._update_ticks()  # what Axis.draw draws; get_ticklabels also has hidden ones
    labels = [t.label1 for t in ticks if t.label1.get_visible()]
    labels += [t.label2 for t in ticks if t.label2.get_visible()]
    return [t for t in labels if t.get_text().strip()]


def _outside_figure(fig, renderer) -> list[str]:
    frame = fig.bbox.padded(1)
    return [
        f"text '{_short(t.get_text())}' falls outside the figure"
        for t in _drawn_texts(fig)
        if not _inside(t.get_window_extent(renderer), frame)
    ]


def _inside(box: Bbox, frame: Bbox) -> bool:
    return box.x0 >= frame.x0 and box.y0 >= frame.y0 and box.x1 <= frame.x1 and box.y1 <= frame.y1


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= 40 else text[:37] + "..."


def _axis_problems(axis, renderer) -> list[str]:
    which = axis.axis_name
    labels = _tick_labels(axis)
    problems = []
    label = axis.label.get_text().strip()
    categorical = labels and not all(_numeric(t.get_text()) for t in labels)
    if not label:
        problems.append(f"the {which} axis has no label")
    elif not categorical and not UNIT.search(label):
        problems.append(f"the {which} axis label '{_short(label)}' names no unit")
    boxes = [(t.get_text(), t.get_window_extent(renderer).padded(-PAD)) for t in labels]
    for i, (text_a, a) in enumerate(boxes):
        for text_b, b in boxes[i + 1 :]:
            if a.overlaps(b):
                problems.append(f"{which} tick labels '{text_a}' and '{text_b}' overlap")
    return problems


def _numeric(text: str) -> bool:
    """A tick label such as 0.5, 1,200, -3, 2 T, 1e-3, 10^4 (mathtext stripped)."""
    plain = text.replace("\\mathdefault", "").replace("−", "-")
    plain = "".join(c for c in plain if c not in "${}\\ ")
    return bool(NUMERIC.fullmatch(plain))


def _polyline_hits(points: np.ndarray, box: Bbox, joined: bool) -> bool:
    if joined and len(points) > 1:  # sample along each segment
        t = np.linspace(0, 1, 33)[:, None, None]
        points = (points[:-1] * (1 - t) + points[1:] * t).reshape(-1, 2)
    inside = (
        (points[:, 0] > box.x0) & (points[:, 0] < box.x1)
        & (points[:, 1] > box.y0) & (points[:, 1] < box.y1)
    )  # fmt: skip
    return bool(inside.any())


def _covers_data(ax, box: Bbox) -> bool:
    box = box.padded(-PAD)
    if not box.overlaps(ax.bbox):
        return False
    for line in ax.get_lines():
        xy = np.asarray(line.get_xydata(), dtype=float)
        if len(xy):
            points = line.get_transform().transform(xy)
            points = points[np.isfinite(points).all(axis=1)]
            joined = line.get_linestyle() not in ("None", "", " ")
            if len(points) and _polyline_hits(points, box, joined):
                return True
    for coll in ax.collections:
        if isinstance(coll, LineCollection):
            if any(_polyline_hits(s, box, True) for s in _segments_of(coll)):
                return True
        elif isinstance(coll, PathCollection) and len(coll.get_offsets()):
            offsets = coll.get_offset_transform().transform(coll.get_offsets())
            if _polyline_hits(offsets, box, False):
                return True
    return any(p.get_window_extent().overlaps(box) for p in ax.patches if isinstance(p, Rectangle))


def _segments_of(coll: LineCollection) -> list[np.ndarray]:
    return [coll.get_transform().transform(s) for s in coll.get_segments() if len(s)]


def _labels_on_lines(ax, renderer) -> list[str]:
    problems = []
    segments = []
    for line in ax.get_lines():
        if line.get_linestyle() not in ("None", "", " ") or line.get_marker() not in ("None", ""):
            xy = np.asarray(line.get_xydata(), dtype=float)
            if len(xy):
                segments.append(line.get_transform().transform(xy))
    for coll in ax.collections:
        if isinstance(coll, LineCollection):
            segments += _segments_of(coll)
    for text in ax.texts:
        if not text.get_visible() or not text.get_text().strip():
            continue
        box = text.get_window_extent(renderer).padded(-PAD)
        if any(_polyline_hits(s[np.isfinite(s).all(axis=1)], box, True) for s in segments):
            problems.append(f"the label '{_short(text.get_text())}' sits on a line or error bar")
    return problems


def _overlapping_marks(ax) -> list[str]:
    """Markers of different colours (models, settings) drawn on top of each other; one
    model's seeds may touch."""
    dpi = ax.get_figure().dpi
    marks = []  # (x, y, radius in pixels, colour)
    for coll in ax.collections:
        if isinstance(coll, PathCollection) and len(coll.get_offsets()):
            xy = coll.get_offset_transform().transform(coll.get_offsets())
            sizes = np.resize(coll.get_sizes() if len(coll.get_sizes()) else [36.0], len(xy))
            faces = coll.get_facecolors()
            colors = [tuple(faces[i % len(faces)]) if len(faces) else None for i in range(len(xy))]
            marks += [
                (x, y, np.sqrt(s) / 2 * dpi / 72, c)
                for (x, y), s, c in zip(xy, sizes, colors, strict=True)
            ]
    for i, (x, y, r, c) in enumerate(marks):
        for x2, y2, r2, c2 in marks[i + 1 :]:
            if c != c2 and np.hypot(x - x2, y - y2) < 0.8 * (r + r2):
                return ["markers of different series overlap (one hides the other)"]
    return []


def _bare_short_lines(ax) -> list[str]:
    problems = []
    for line in ax.get_lines():
        xy = np.asarray(line.get_xydata(), dtype=float)
        finite = int(np.isfinite(xy).all(axis=1).sum()) if len(xy) else 0
        drawn = line.get_linestyle() not in ("None", "", " ")
        marked = line.get_marker() not in ("None", "", None) and line.get_markevery() != []
        if line.get_transform() == ax.transData and 1 < finite < 3 and drawn and not marked:
            label = line.get_label()
            name = f"'{label}'" if not label.startswith("_") else "a line"
            problems.append(f"{name} is drawn through {finite} points without markers")
    return problems


def _thin_points_filled(ax) -> list[str]:
    """Every point declared to rest on too few samples has a hollow marker on it."""
    hollow = []
    for line in ax.get_lines():
        face = to_rgba(line.get_markerfacecolor())
        if line.get_marker() not in ("None", "", None) and (face[3] == 0 or face[:3] == (1, 1, 1)):
            every = line.get_markevery()
            xy = np.asarray(line.get_xydata(), dtype=float)
            keep = range(len(xy)) if every is None else every
            hollow += [tuple(xy[i]) for i in keep]
    problems = []
    for line in ax.get_lines():
        declared = getattr(line, "bdh_samples", None)
        if declared is None:
            continue
        samples, minimum = declared
        for (x, y), n in zip(line.get_xydata(), samples, strict=True):
            if n < minimum and not any(np.isclose([x, y], h).all() for h in hollow):
                problems.append(
                    f"the point ({x:.4g}, {y:.4g}) of '{line.get_label()}' rests on {n} samples "
                    f"(< {minimum}) and is not marked"
                )
    return problems
